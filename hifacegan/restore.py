"""Use a trained generator: restore images of any size, and evaluate on paired shards.

>>> # G, info = load_generator("runs/x/checkpoints/latest.pt")
>>> # out = restore_image(G, rgb_uint8)            # same size as the input
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from facedeg.codec import encode_png
from facedeg.crop import resize
from facedeg.errors import ImageError
from facedeg.faces.paste import PhotoResult
from facedeg.files import file_problem, write_atomic
from facedeg.imread import read_image
from hifacegan.compare import image_scores, mean_rows
from hifacegan.data import IMAGE_EXTS, check_source, val_batches
from hifacegan.errors import HiFaceGANError
from hifacegan.export import build_from_weights, read_weights
from hifacegan.fid import FEATURES, MIN_SAMPLES, FeatureStats, InceptionV3Features, fid_from_stats
from hifacegan.infer import run_generator
from hifacegan.lpips import LPIPS
from hifacegan.metrics import MetricSpec, quantize

NO_BACKBONES = "not available without local backbone weight files (nothing is downloaded)"
LPIPS_HINT = "--lpips-alexnet and --lpips-linear for LPIPS"
FID_HINT = "--fid-inception for FID"
NO_LPIPS = f"LPIPS: {NO_BACKBONES}; pass {LPIPS_HINT}"
NO_FID = f"FID: {NO_BACKBONES}; pass {FID_HINT}"
NO_LPIPS_FID = f"LPIPS, FID: {NO_BACKBONES}; pass {LPIPS_HINT}, {FID_HINT}"
FID_TOO_FEW = f"FID not computed: it needs at least {MIN_SAMPLES} samples, got {{n}}"
FID_FEW = (f"FID from {{n}} samples: with fewer than {FEATURES} (the feature size) the covariances are "
           "rank-deficient and FID is biased upward; compare FIDs only over the same number of samples")


def pick_device(device: str = "auto") -> torch.device:
    if device not in ("auto", "cuda", "cpu"):
        raise HiFaceGANError(f"--device {device}: expected auto, cuda or cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise HiFaceGANError("--device cuda: no CUDA device is available")
    return torch.device("cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def load_generator(path: str | Path, device: str | torch.device = "cpu",
                   ema: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The generator of a run folder, a training checkpoint or an exported .safetensors file, in eval
    mode; the EMA weights when the checkpoint has them and `ema` is True. `info["weights"]` says which
    (ema | raw), `info["source"]` the file read."""
    w = read_weights(path, ema=ema)
    info = {"step": w.step, **w.arch, "weights": "ema" if w.ema else "raw", "source": str(w.source)}
    return build_from_weights(w, device), info


def restore_image(G: torch.nn.Module, rgb: np.ndarray) -> np.ndarray:
    """Restore one uint8 HxWx3 RGB image of any size: fit its longer side to the model size, pad the
    rest by reflection, run G, crop the padding off and resize back to the input size."""
    size = G.config["size"]
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    small = resize(rgb, (sh, sw))
    top, left = (size - sh) // 2, (size - sw) // 2
    mode = cv2.BORDER_REFLECT_101 if min(sh, sw) > 1 else cv2.BORDER_REPLICATE
    padded = cv2.copyMakeBorder(small, top, size - sh - top, left, size - sw - left, mode)
    out = run_generator(G, torch.from_numpy(padded)[None])[0]
    out = (out * 255).round().byte().permute(1, 2, 0).cpu().numpy()[top:top + sh, left:left + sw]
    return resize(np.ascontiguousarray(out), (h, w))


FACE_BATCH = 4  # aligned faces per forward pass in restore --align


def restore_crops(G: torch.nn.Module, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run G on aligned ``size x size`` uint8 crops, a few at a time; uint8 outputs."""
    out: list[np.ndarray] = []
    for i in range(0, len(crops), FACE_BATCH):
        batch = torch.from_numpy(np.stack(crops[i:i + FACE_BATCH]))
        y = run_generator(G, batch)
        out += list((y * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    return out


@dataclass(frozen=True)
class AlignRestore:
    """``restore --align``: restore every face of a wild photo (or only the largest), paste it back with
    a feathered mask; ``upscale`` resizes the whole photo (background by bicubic resize);
    ``save_faces``: also write each aligned LQ crop and its restored crop there; ``skip_no_face``: do
    not write photos without a face (default: written unrestored, resized by ``upscale``)."""

    only_largest: bool = False
    upscale: int = 1
    save_faces: Path | None = None
    skip_no_face: bool = False


def restore_wild(G: torch.nn.Module, rgb: np.ndarray, options: AlignRestore) -> PhotoResult:
    """One photo through detect -> align -> G -> paste back (see :func:`facedeg.faces.restore_photo`)."""
    from facedeg.faces import get_detector, restore_photo

    return restore_photo(rgb, get_detector(), G.config["size"], lambda crops: restore_crops(G, crops),
                         only_largest=options.only_largest, upscale=options.upscale)


def list_inputs(path: str | Path, exclude: Sequence[Path] = ()) -> tuple[Path, list[Path]]:
    """(root, files): one image file, or every image under a folder (recursive, sorted), leaving out the
    folders `exclude` that lie inside it (output folders inside the input folder)."""
    p = Path(path)
    if p.is_file():
        return p.parent, [p]
    if p.is_dir():
        skip = [e.resolve() for e in exclude]
        skip = [e for e in skip if e != p.resolve() and e.is_relative_to(p.resolve())]
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS
                       and not any(f.resolve().is_relative_to(e) for e in skip))
        if not files:
            raise HiFaceGANError(f"{p}: no image files found")
        return p, files
    problem = file_problem(p)
    if problem in (None, "no such file", "broken symbolic link"):
        raise HiFaceGANError(f"input not found: {p}")
    raise HiFaceGANError(f"{p}: cannot read input ({problem})")  # a FIFO, a link loop


def restore_files(G: torch.nn.Module, input_path: str | Path, out_dir: str | Path,
                  on_progress: Callable[[int, int, str], None] | None = None,
                  align: AlignRestore | None = None) -> dict[str, Any]:
    """Restore an image or a folder into out_dir (PNG, same relative names). Unreadable files are skipped.

    ``align``: treat inputs as ordinary photos (see :class:`AlignRestore`); the result then also lists
    ``faces`` (faces restored per written file) and ``no_face`` (files where none was found)."""
    out_dir = Path(out_dir)
    if align is not None:
        if align.upscale < 1 or align.upscale > 8:
            raise HiFaceGANError(f"--upscale must be an integer in [1, 8], got {align.upscale}")
        from facedeg.faces import get_detector

        get_detector()  # a missing 'faces' extra is one error before any work
    faces_per_file: dict[str, int] = {}
    no_face: list[str] = []
    crops_dir = Path(align.save_faces) if align is not None and align.save_faces is not None else None
    root, files = list_inputs(input_path, exclude=[out_dir] + ([crops_dir] if crops_dir else []))
    written, skipped = [], []
    names = Counter(f.relative_to(root).with_suffix("") for f in files)
    dests: dict[Path, Path] = {}  # file -> where its restored PNG goes; checked before anything is written
    sources = {f.resolve(): f for f in files}
    claimed: dict[Path, Path] = {}
    for f in files:
        rel = f.relative_to(root)  # a.jpg and a.png side by side: a.jpg.png and a.png.png
        dest = dests[f] = out_dir / (rel.with_suffix(".png") if names[rel.with_suffix("")] == 1 else f"{rel}.png")
        where = dest.resolve()
        if where in sources:
            raise HiFaceGANError(f"--out {out_dir}: restoring {f} would overwrite the input {sources[where]}; "
                                 "choose another --out (nothing was written)")
        if where in claimed:
            raise HiFaceGANError(f"--out {out_dir}: {claimed[where]} and {f} would both be restored to {dest}; "
                                 "rename one of them (nothing was written)")
        claimed[where] = f
    if crops_dir is not None:
        _check_crop_names(crops_dir, out_dir, sources, dests)
    for i, f in enumerate(files):
        try:
            rgb = read_image(f)
        except ImageError as exc:
            skipped.append({"file": str(f), "reason": str(exc)})
        else:
            dest = dests[f]
            if align is None:
                restored = restore_image(G, rgb)
            else:
                res = restore_wild(G, rgb, align)
                restored = res.image
                if not res.faces:
                    no_face.append(str(f))
                    if align.skip_no_face:
                        if on_progress:
                            on_progress(i + 1, len(files), f.name)
                        continue
                faces_per_file[str(dest)] = len(res.faces)
                if align.save_faces is not None and res.faces:
                    _save_faces(Path(align.save_faces), dest.relative_to(out_dir).with_suffix(""), res)
            png = encode_png(restored, 1)  # bytes, then Python's own file: any file name
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                write_atomic(dest, png, root=out_dir)  # nothing below out_dir is followed if it is a link
            except OSError as exc:
                raise HiFaceGANError(f"cannot write {dest}: {exc.strerror or exc}") from None
            written.append(str(dest))
        if on_progress:
            on_progress(i + 1, len(files), f.name)
    result: dict[str, Any] = {"written": written, "skipped": skipped}
    if align is not None:
        result.update(faces=faces_per_file, no_face=no_face)
    return result


_CROP_NAME = re.compile(r"(.+)_f\d+_(?:lq|restored)\.png")


def _check_crop_names(folder: Path, out_dir: Path, sources: dict[Path, Path], dests: dict[Path, Path]) -> None:
    """Refuse, before anything is written, a --save-faces folder where a crop name (``<name>_f<j>_lq.png``,
    ``_restored.png``) could land on an input or on a restored image."""
    stems = {d.relative_to(out_dir).with_suffix("") for d in dests.values()}
    base = folder.resolve()
    for path, what in [*((s, f"the input {f}") for s, f in sources.items()),
                       *((d.resolve(), f"the restored image {d}") for d in dests.values())]:
        if not path.is_relative_to(base):
            continue
        match = _CROP_NAME.fullmatch(path.relative_to(base).as_posix())
        if match and Path(match.group(1)) in stems:
            raise HiFaceGANError(f"--save-faces {folder}: a face crop of {match.group(1)} would be written over "
                                 f"{what}; choose another --save-faces (nothing was written)")


def _save_faces(folder: Path, stem: Path, res: PhotoResult) -> None:
    """``DIR/<name>_f<j>_lq.png`` (the aligned crop) and ``_restored.png`` for each face j."""
    for j, (lq, restored) in enumerate(zip(res.crops, res.restored, strict=True)):
        for tag, img in (("lq", lq), ("restored", restored)):
            path = folder / f"{stem}_f{j}_{tag}.png"
            try:  # encoded here and written by Python: any file name, never through a link below DIR
                folder.mkdir(parents=True, exist_ok=True)
                write_atomic(path, encode_png(img, 1), root=folder)
            except OSError as exc:
                raise HiFaceGANError(f"--save-faces: cannot write {path}: {exc.strerror or exc}") from None


def load_lpips(alexnet_path: str | Path, linear_path: str | Path) -> LPIPS:
    """LPIPS (AlexNet, v0.1) from two local files; HiFaceGANError naming the file and key on a bad one."""
    try:
        return LPIPS.from_files(alexnet_path, linear_path)
    except ValueError as exc:
        raise HiFaceGANError(f"LPIPS weights: {str(exc).splitlines()[0]}") from None


def load_fid(path: str | Path) -> InceptionV3Features:
    """pytorch-fid's InceptionV3 from a local weight file; HiFaceGANError naming the file and keys on a bad one."""
    try:
        return InceptionV3Features.from_file(path)
    except ValueError as exc:
        raise HiFaceGANError(f"FID Inception weights: {str(exc).splitlines()[0]}") from None


def _batches(spec: str, size: int, batch_size: int, limit: int | None) -> Iterator[dict[str, Any]]:
    check_source(spec, "val")
    yield from val_batches(spec, size, batch_size, limit=limit if limit is not None else 1 << 62)


def evaluate(G: torch.nn.Module, data: str, batch_size: int = 8, limit: int | None = None,
             on_progress: Callable[[int], None] | None = None, lpips: LPIPS | None = None,
             fid: InceptionV3Features | None = None, spec: MetricSpec | None = None) -> dict[str, Any]:
    """Mean PSNR / SSIM / MS-SSIM (and LPIPS when `lpips` is given) of LQ and of the restored output
    against HQ on paired shards (`data`: a dataset DIR (its val shards) or a shard pattern), computed as
    `spec` says (default: on the output rounded to uint8, RGB, no crop), one row per sample in "rows";
    and, when `fid` (the Inception feature net) is given, the FID of the LQ set and of the restored set
    against the HQ set, over all evaluated samples (features on the generator's device, statistics in
    float64)."""
    spec = spec or MetricSpec()
    device = next(G.parameters()).device
    if lpips is not None:
        lpips = lpips.to(device)
    if fid is not None:
        fid = fid.to(device)
    stats = {w: FeatureStats() for w in ("hq", "lq", "restored")} if fid is not None else {}
    rows: list[dict[str, Any]] = []
    for batch in _batches(data, G.config["size"], batch_size, limit):
        restored = run_generator(G, batch["lq"]).cpu().double()
        if spec.quantize:
            restored = quantize(restored)
        hq = batch["hq"].permute(0, 3, 1, 2).double() / 255
        images = {"lq": batch["lq"].permute(0, 3, 1, 2).double() / 255, "restored": restored}
        try:
            scores = {w: image_scores(img, hq, spec, lpips) for w, img in images.items()}
        except ValueError as exc:
            raise HiFaceGANError(f"{data}: {exc}") from None
        for i, key in enumerate(batch["keys"]):
            rows.append({"key": key, **{f"{n}_{w}": float(v[i]) for w, s in scores.items() for n, v in s.items()}})
        if fid is not None:
            with torch.no_grad():  # one pass over HQ, LQ and restored together
                feats = fid(torch.cat([hq, images["lq"], restored]).to(device).float())
            for which, f in zip(("hq", "lq", "restored"), feats.split(len(hq)), strict=True):
                stats[which].update(f)
        if on_progress:
            on_progress(len(rows))
    if not rows:
        raise HiFaceGANError(f"{data}: no usable samples to evaluate")
    fid_result = _fid_result(stats) if fid is not None else None
    missing = (lpips is None, fid is None)
    note = {(True, True): NO_LPIPS_FID, (True, False): NO_LPIPS, (False, True): NO_FID}.get(missing)
    return {"data": str(data), "samples": len(rows), "metrics": mean_rows(rows), "spec": spec.to_dict(),
            "lpips": {"net": "alex", "version": "0.1"} if lpips is not None else None, "fid": fid_result,
            "note": note, "rows": rows}


def _fid_result(stats: dict[str, FeatureStats]) -> dict[str, Any]:
    """FID of LQ and of restored against HQ (None values below MIN_SAMPLES); a warning when there are
    too few samples for FID or for an unbiased one."""
    n = stats["hq"].count
    ok = n >= MIN_SAMPLES
    values = {w: round(fid_from_stats(stats["hq"], stats[w]), 4) if ok else None for w in ("lq", "restored")}
    warning = FID_TOO_FEW.format(n=n) if not ok else FID_FEW.format(n=n) if n < FEATURES else None
    return {**values, "samples": n, "net": "pytorch-fid InceptionV3 pool3", "dims": FEATURES, "warning": warning}


def format_table(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows (metric, LQ, restored) for printing."""
    m = result["metrics"]
    rows = (("PSNR (dB)", "psnr", 2), ("SSIM", "ssim", 4), ("MS-SSIM", "ms_ssim", 4), ("LPIPS (alex)", "lpips", 4))
    table = [(label, f"{m[f'{key}_lq']:.{digits}f}", f"{m[f'{key}_restored']:.{digits}f}")
             for label, key, digits in rows if f"{key}_lq" in m]
    fid = result.get("fid")
    if fid:
        few = fid["lq"] is not None and fid["samples"] < FEATURES
        label = "FID vs HQ" + (f" ({fid['samples']} samples, biased)" if few else "")
        table.append((label, *("n/a" if fid[w] is None else f"{fid[w]:.2f}" for w in ("lq", "restored"))))
    return table


def write_json(result: dict[str, Any], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=1) + "\n")
