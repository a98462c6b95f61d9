"""Running a generator on uint8 images: the one conversion shared by ``restore``, ``eval`` and the
trainer's validation and sample grids (uint8 NHWC in, float NCHW in [0, 1] out)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch


def autocast_for(device: torch.device, bf16: bool) -> Any:
    """bf16 autocast on ``device`` when asked; a no-op context otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


@torch.no_grad()
def run_generator(G: torch.nn.Module, lq: torch.Tensor, bf16: bool | None = None) -> torch.Tensor:
    """uint8 NHWC LQ -> float NCHW output in [0, 1], on G's device.

    G runs in eval mode for the call and gets its previous mode back. ``bf16`` (default: on CUDA) runs
    it under bf16 autocast; channels_last is used on CUDA as in training."""
    device = next(G.parameters()).device
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    x = lq.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    x = x.contiguous(memory_format=fmt)
    was_training = G.training
    G.eval()
    try:
        with autocast_for(device, device.type == "cuda" if bf16 is None else bf16):
            y = G(x)
    finally:
        G.train(was_training)
    return ((y.float() + 1) / 2).clamp(0, 1)
