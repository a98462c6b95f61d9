"""Helpers for the build/verify tests: small photo folders made from the bundled faces."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from facedeg.samples import sample_paths


def face(i: int, width: int, height: int) -> np.ndarray:
    """Bundled face ``i`` (cycled; odd rounds mirrored) area-resized to ``width x height`` RGB."""
    paths = sample_paths()
    bgr = cv2.imread(str(paths[i % len(paths)]), cv2.IMREAD_COLOR)
    if (i // len(paths)) % 2:
        bgr = bgr[:, ::-1]
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def save(img: np.ndarray, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, **kw)
    return path


def make_photos(root: Path, n: int, width: int = 96, height: int = 80) -> list[Path]:
    """``n`` photos of mixed formats in nested folders."""
    out = []
    for i in range(n):
        ext = (".jpg", ".png", ".webp")[i % 3]
        sub = "a" if i % 2 else "b/c"
        out.append(save(face(i, width, height), root / sub / f"p{i:03d}{ext}"))
    return out


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))}


def manifest_without_run(out: Path) -> dict:
    m = json.loads((out / "dataset.json").read_text())
    m.pop("run")
    return m


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}
