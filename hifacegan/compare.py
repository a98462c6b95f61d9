"""PSNR / SSIM / MS-SSIM (and LPIPS) computed the way published tables compute them, per image: on
images rounded to 8 bits, optionally on the BT.601 Y channel with a border cropped (`MetricSpec`).
Used by `hifacegan eval` with a model, and to compare two folders of images matched by file name.

>>> # rows = compare_folders("restored/", "gt/", MetricSpec(y_channel=True, crop_border=4))
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facedeg.errors import ImageError
from facedeg.imread import read_image
from hifacegan.data import IMAGE_EXTS
from hifacegan.errors import HiFaceGANError
from hifacegan.lpips import LPIPS
from hifacegan.metrics import MetricSpec, ms_ssim, prepare, psnr, quantize, ssim

PSNR_CAP = 100.0  # identical images have infinite PSNR; means use this cap


def image_scores(x: torch.Tensor, ref: torch.Tensor, spec: MetricSpec,
                 lpips: LPIPS | None = None) -> dict[str, torch.Tensor]:
    """Per-image metrics of `x` against `ref` (B x 3 x H x W in [0, 1]); PSNR/SSIM/MS-SSIM follow `spec`,
    LPIPS sees the whole RGB image (rounded like the rest when `spec.quantize`)."""
    px, pr = prepare(x, spec), prepare(ref, spec)
    scores = {"psnr": psnr(px, pr).clamp(max=PSNR_CAP), "ssim": ssim(px, pr), "ms_ssim": ms_ssim(px, pr)}
    if lpips is not None:
        device = next(lpips.parameters()).device
        xl = quantize(x) if spec.quantize else x
        with torch.no_grad():
            scores["lpips"] = lpips(xl.to(device).float(), ref.to(device).float()).double().cpu()
    return {k: v.cpu() for k, v in scores.items()}


def _index(folder: Path, what: str) -> dict[str, Path]:
    """Image files under `folder` (recursive) by relative path without extension."""
    if not folder.is_dir():
        raise HiFaceGANError(f"{what} {folder}: not a folder")
    files: dict[str, Path] = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix.lower() in IMAGE_EXTS:
            key = f.relative_to(folder).with_suffix("").as_posix()
            if key in files:
                raise HiFaceGANError(f"{what} {folder}: {files[key].name} and {f.name} have the same name; "
                                     "keep one of them")
            files[key] = f
    if not files:
        raise HiFaceGANError(f"{what} {folder}: no image files found")
    return files


def match_folders(pred: str | Path, gt: str | Path) -> tuple[list[tuple[str, Path, Path]], dict[str, list[str]]]:
    """Pairs (name, pred file, gt file) matched by relative path without extension (restored/a.png goes
    with gt/a.jpg), and the names found on one side only."""
    p, g = _index(Path(pred), "--pred"), _index(Path(gt), "--gt")
    pairs = [(k, p[k], g[k]) for k in sorted(p.keys() & g.keys())]
    if not pairs:
        raise HiFaceGANError(f"--pred {pred} and --gt {gt}: no file names in common (files are matched by "
                             "their path relative to each folder, without the extension)")
    return pairs, {"pred_only": sorted(p.keys() - g.keys()), "gt_only": sorted(g.keys() - p.keys())}


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].double() / 255  # a writable copy


def compare_folders(pred: str | Path, gt: str | Path, spec: MetricSpec, lpips: LPIPS | None = None,
                    on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Metrics of every pred image against the gt image of the same name (both read as 8-bit RGB, so
    `spec.quantize` changes nothing here); images must have equal sizes."""
    pairs, unmatched = match_folders(pred, gt)
    rows: list[dict[str, Any]] = []
    for i, (name, pf, gf) in enumerate(pairs):
        try:
            x, ref = read_image(pf), read_image(gf)
        except ImageError as exc:
            raise HiFaceGANError(str(exc)) from None
        if x.shape != ref.shape:
            raise HiFaceGANError(f"{pf} is {x.shape[1]}x{x.shape[0]} but {gf} is {ref.shape[1]}x{ref.shape[0]}; "
                                 "compared images must have the same size")
        try:
            scores = image_scores(_tensor(x), _tensor(ref), spec, lpips)
        except ValueError as exc:
            raise HiFaceGANError(f"{pf}: {exc}") from None
        rows.append({"name": name, **{k: float(v[0]) for k, v in scores.items()}})
        if on_progress:
            on_progress(i + 1, len(pairs))
    return {"pred": str(pred), "gt": str(gt), "samples": len(rows), "spec": spec.to_dict(),
            "metrics": mean_rows(rows), "rows": rows, "unmatched": unmatched,
            "lpips": {"net": "alex", "version": "0.1"} if lpips is not None else None}


def mean_rows(rows: Iterable[dict[str, Any]], suffix: str = "") -> dict[str, float]:
    """Mean of every numeric column (4 decimals)."""
    rows = list(rows)
    keys = [k for k, v in rows[0].items() if isinstance(v, float)] if rows else []
    return {f"{k}{suffix}": round(math.fsum(r[k] for r in rows) / len(rows), 4) for k in keys}


def write_csv(rows: list[dict[str, Any]], path: str | Path) -> None:
    """One row per image, full precision; columns in the order of the first row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["name"])
        writer.writeheader()
        writer.writerows(rows)


def folder_table(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows (metric, value) for printing a folder comparison."""
    m = result["metrics"]
    labels = (("PSNR (dB)", "psnr", 2), ("SSIM", "ssim", 4), ("MS-SSIM", "ms_ssim", 4), ("LPIPS (alex)", "lpips", 4))
    return [(label, f"{m[key]:.{digits}f}") for label, key, digits in labels if key in m]
