"""Write tiny shards in facedeg's v1 shard format (README) with `tarfile`, from the bundled face photos.

Independent of `facedeg build` on purpose: the trainer's tests must not depend on the builder. LQ is a
simple fixed degradation (4x down/up, noise, JPEG) made here with OpenCV.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
from pathlib import Path

import cv2
import numpy as np

from facedeg.samples import sample_paths


def face_crops(n: int, size: int) -> list[np.ndarray]:
    """n distinct uint8 RGB face crops of size x size: the bundled photos, each at a few crop offsets."""
    photos = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sample_paths()]
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        variant = i // len(photos)
        crop = 448 - 16 * (variant % 4)
        off = 8 * (variant % 5)
        img = photo[off:off + crop, off:off + crop]
        out.append(np.ascontiguousarray(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)))
    return out


def degrade(hq: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = hq.shape[0]
    small = cv2.resize(hq, (s // 4, s // 4), interpolation=cv2.INTER_AREA)
    lq = cv2.resize(small, (s, s), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    lq = (lq + rng.normal(0, 8, lq.shape)).clip(0, 255).astype(np.uint8)
    ok, enc = cv2.imencode(".jpg", cv2.cvtColor(lq, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 40])
    return cv2.cvtColor(cv2.imdecode(enc, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def png(img: np.ndarray) -> bytes:
    ok, enc = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok
    return enc.tobytes()


class _Boom:
    def __reduce__(self):  # unpickling this would create a file next to the shard: it must never happen
        return (Path.touch, (Path(self.path),))

    def __init__(self, path: str) -> None:
        self.path = path


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "", ""
    tar.addfile(info, io.BytesIO(data))


def write_shards(out: str | Path, n_train: int = 8, n_val: int = 4, *, size: int = 64, per_shard: int = 2,
                 hq_only: bool = False, corrupt: tuple[str, ...] = (), pickles: bool = False,
                 lq_shapes: dict[str, tuple[int, int]] | None = None) -> Path:
    """OUT/{split}-{i:06d}.tar + OUT/dataset.json. `corrupt`: keys whose lq.png is garbage bytes;
    `lq_shapes`: keys whose LQ is area-resized to (height, width);
    `pickles`: add a `{key}.pyd` member whose unpickling would create `OUT/PWNED`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    faces = face_crops(n_train + n_val, size)
    manifest: dict = {"format": "facedeg-shards", "format_version": 1, "size": size, "shards": [],
                      "counts": {sp: {"pairs": n, "shards": -(-n // per_shard)}
                                 for sp, n in (("train", n_train), ("val", n_val))}}
    index = 0
    for split, n in (("train", n_train), ("val", n_val)):
        for s, start in enumerate(range(0, n, per_shard)):
            path = out / f"{split}-{s:06d}.tar"
            count = min(per_shard, n - start)
            with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
                for _ in range(count):
                    key = f"{index:08d}"
                    hq = faces[index]
                    _add(tar, f"{key}.hq.png", png(hq))
                    if not hq_only:
                        lq_img = degrade(hq, index)
                        if lq_shapes and key in lq_shapes:
                            h, w = lq_shapes[key]
                            lq_img = cv2.resize(lq_img, (w, h), interpolation=cv2.INTER_AREA)
                        lq = b"not a png" if key in corrupt else png(lq_img)
                        _add(tar, f"{key}.lq.png", lq)
                    meta = {"key": key, "seed": index, "plan": {"seed": index, "steps": []}}
                    _add(tar, f"{key}.json", json.dumps(meta).encode())
                    if pickles:
                        _add(tar, f"{key}.pyd", pickle.dumps(_Boom(str(out / "PWNED"))))
                    index += 1
            data = path.read_bytes()
            manifest["shards"].append({"split": split, "name": path.name, "samples": count, "bytes": len(data),
                                       "sha256": hashlib.sha256(data).hexdigest(),
                                       "md5": hashlib.md5(data).hexdigest()})
    (out / "dataset.json").write_text(json.dumps(manifest, indent=1))
    return out


def write_folder(out: str | Path, n: int = 4, size: int = 80) -> Path:
    """A folder of HQ face images (not square-sized to the model: the loader crops/resizes)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for i, face in enumerate(face_crops(n, size)):
        cv2.imwrite(str(out / f"face_{i}.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    return out
