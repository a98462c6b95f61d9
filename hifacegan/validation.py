"""What the trainer shows while it runs: validation metrics on a fixed set of val pairs and a captioned
sample grid (LQ | output | HQ), both from the model that `restore` will use (the EMA generator unless
it is off).

The val pairs are read once and kept in memory as uint8. LQ's own metrics (and the HQ set's FID
statistics) do not change during a run: they are computed at the first validation only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from facedeg.codec import encode_png
from facedeg.files import write_atomic
from hifacegan import dist
from hifacegan.config import TrainConfig
from hifacegan.data import val_batches
from hifacegan.errors import ConfigError
from hifacegan.fid import MIN_SAMPLES, FeatureStats, InceptionV3Features, fid_from_stats
from hifacegan.infer import run_generator
from hifacegan.lpips import LPIPS
from hifacegan.metrics import psnr, quantize, ssim

ROWS = ("LQ", "output", "HQ")


def load_val(cfg: TrainConfig, val_spec: str | None, fallback: dict[str, Any]) -> list[dict[str, Any]]:
    """The first cfg.val_samples val pairs (kept in memory as uint8); without val data, one train batch."""
    if val_spec:
        cached = list(val_batches(val_spec, cfg.size, min(cfg.batch_size * 2, cfg.val_samples),
                                  limit=cfg.val_samples, seed=cfg.seed, degrade=cfg.degrade))
        if cached:
            return cached
        dist.print0(f"warning: no usable val samples in {val_spec}; the sample grid uses a train batch")
    return [{"lq": fallback["lq"].clone(), "hq": fallback["hq"].clone()}]


def load_metric_nets(cfg: TrainConfig) -> tuple[LPIPS | None, InceptionV3Features | None]:
    """LPIPS and the FID Inception network from the local files the config names (None without them)."""
    lpips = fid = None
    if cfg.lpips_alexnet and cfg.lpips_linear:
        try:
            lpips = LPIPS.from_files(cfg.lpips_alexnet, cfg.lpips_linear)
        except ValueError as exc:
            raise ConfigError(f"LPIPS weights: {str(exc).splitlines()[0]}") from None
    if cfg.fid_inception:
        try:
            fid = InceptionV3Features.from_file(cfg.fid_inception)
        except ValueError as exc:
            raise ConfigError(f"--fid-inception: {str(exc).splitlines()[0]}") from None
    return lpips, fid


class Validator:
    """`validate(G, step)`: mean PSNR / SSIM (and LPIPS, FID when their networks are given) of G's output
    on the val pairs against HQ, with LQ's as the reference; `grid(G, step, model)`: the sample grid (validate's output when it ran at the same step)."""

    def __init__(self, batches: list[dict[str, Any]], device: torch.device, bf16: bool,
                 lpips: LPIPS | None = None, fid: InceptionV3Features | None = None) -> None:
        self.batches, self.device, self.bf16 = batches, device, bf16
        self.lpips = lpips.to(device) if lpips is not None else None
        self.fid = fid.to(device) if fid is not None else None
        self.reference: dict[str, float] | None = None  # LQ's metrics, from the first validation
        self.hq_stats: FeatureStats | None = None
        self.shown: tuple[int, torch.Tensor] | None = None  # (step, output for the grid) from validate

    @torch.no_grad()
    def validate(self, G: torch.nn.Module, step: int) -> dict[str, Any]:
        first = self.reference is None
        sums: dict[str, float] = {}
        stats = {w: FeatureStats() for w in ("hq", "lq", "out")} if self.fid is not None else {}
        n = 0
        for b in self.batches:
            hq = b["hq"].permute(0, 3, 1, 2).double() / 255
            out = run_generator(G, b["lq"], self.bf16).cpu()
            if self.shown is None or self.shown[0] != step:  # the grid of this step needs no second pass
                self.shown = (step, out[:4].float())
            images = {"out": quantize(out)}  # scored as `hifacegan eval` scores by default: rounded to 8 bits
            if first:
                images["lq"] = b["lq"].permute(0, 3, 1, 2).double() / 255
            for which, img in images.items():
                scores = {"psnr": psnr(img, hq).clamp(max=100), "ssim": ssim(img, hq)}
                if self.lpips is not None:
                    scores["lpips"] = self.lpips(img.to(self.device).float(), hq.to(self.device).float())
                for name, v in scores.items():
                    key = f"val_{name}" + ("_lq" if which == "lq" else "")
                    sums[key] = sums.get(key, 0.0) + v.sum().item()
            if self.fid is not None:
                sets = {**images, **({"hq": hq} if first else {})}
                for which, img in sets.items():
                    stats[which].update(self.fid(img.to(self.device).float()))
            n += len(hq)
        means = {k: v / n for k, v in sums.items()}
        if self.fid is not None and n >= MIN_SAMPLES:
            if first:
                self.hq_stats = stats["hq"]
                means["val_fid_lq"] = fid_from_stats(self.hq_stats, stats["lq"])
            means["val_fid"] = fid_from_stats(self.hq_stats, stats["out"])
        if first:
            self.reference = {k: v for k, v in means.items() if k.endswith("_lq")}
        means.update(self.reference)
        return {"event": "val", "step": step, "val_samples": n, **{k: round(v, 4) for k, v in sorted(means.items())}}

    def grid(self, G: torch.nn.Module, step: int, model: str) -> np.ndarray:
        """uint8 RGB rows LQ / output / HQ for (up to) the first 4 val pairs, each under a caption band."""
        b = self.batches[0]
        lq, hq = b["lq"][:4], b["hq"][:4]
        out = self.shown[1] if self.shown and self.shown[0] == step else run_generator(G, lq, self.bf16).cpu()
        out = (out * 255).round().byte().permute(0, 2, 3, 1)
        captions = ("LQ (input)", f"output ({model}, step {step})", "HQ (target)")
        rows = []
        for caption, t in zip(captions, (lq, out, hq), strict=True):
            row = np.concatenate(list(t.numpy()), axis=1)
            rows += [caption_band(caption, row.shape[1], t.shape[1]), row]
        return np.ascontiguousarray(np.concatenate(rows, axis=0))


def val_line(record: dict[str, Any]) -> str:
    """One console line for a validation record: each metric with LQ's in parentheses."""
    parts = [f"{name} {record[f'val_{key}']:.{digits}f}{unit}"
             + (f" (LQ {record[f'val_{key}_lq']:.{digits}f})" if f"val_{key}_lq" in record else "")
             for name, key, digits, unit in (("PSNR", "psnr", 2, " dB"), ("SSIM", "ssim", 4, ""),
                                             ("LPIPS", "lpips", 4, ""), ("FID", "fid", 2, ""))
             if f"val_{key}" in record]
    return f"val step {record['step']}: " + ", ".join(parts) + f" [{record['model']}]"


def caption_band(text: str, width: int, size: int) -> np.ndarray:
    """A black band with `text` in white, sized for tiles of `size` pixels."""
    height = max(16, size // 16)
    band = np.zeros((height, width, 3), np.uint8)
    cv2.putText(band, text, (4, height - height // 4), cv2.FONT_HERSHEY_SIMPLEX, height / 32, (255, 255, 255), 1,
                cv2.LINE_AA)
    return band


def write_png(rgb: np.ndarray, path: Path) -> None:
    """A sample grid into RUN/samples/: encoded here, written atomically, never through a link."""
    write_atomic(path, encode_png(rgb, 1), root=path.parent.parent)
