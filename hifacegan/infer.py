"""Running a generator on uint8 images: the one conversion shared by ``restore``, ``eval`` and the
trainer's validation and sample grids (uint8 NHWC in, float NCHW in [0, 1] out).

A generator's ``config["io_range"]`` says which value range its weights expect: ``signed`` ([-1, 1] in
and out, ours; the default) or ``unit`` ([0, 1] in and out: the authors' released weights, see
:mod:`hifacegan.original`). :func:`from_signed` and :func:`to_signed` are the only conversions between
the [-1, 1] tensors of the data pipeline and a model's range; every consumer goes through them.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from hifacegan.models.generator import IO_RANGES


def io_range_of(model: torch.nn.Module) -> str:
    """The value range ``model``'s weights expect (``signed`` when its config does not say)."""
    io_range = getattr(model, "config", {}).get("io_range", "signed")
    if io_range not in IO_RANGES:
        raise ValueError(f"unknown io_range {io_range!r}; valid: {', '.join(IO_RANGES)}")
    return str(io_range)


def from_signed(x: torch.Tensor, io_range: str) -> torch.Tensor:
    """Images in [-1, 1] -> the range of a model with ``io_range`` (G's input; D's inputs in training)."""
    return x if io_range == "signed" else (x + 1) / 2


def to_signed(y: torch.Tensor, io_range: str) -> torch.Tensor:
    """A model's output in its ``io_range`` -> [-1, 1] (e.g. for the VGG loss, the metrics)."""
    return y if io_range == "signed" else y * 2 - 1


class SignedIO(torch.nn.Module):
    """A network whose weights work in [0, 1] (``io_range: unit``) as the [-1, 1] training pipeline sees
    it: its inputs go through :func:`from_signed`, and with ``output`` (a generator) its output comes
    back through :func:`to_signed`. It holds no weights of its own (checkpoints save the network itself)."""

    def __init__(self, net: torch.nn.Module, io_range: str, output: bool) -> None:
        super().__init__()
        self.net, self.io_range, self.output = net, io_range, output

    def forward(self, *xs: torch.Tensor) -> Any:
        y = self.net(*(from_signed(x, self.io_range) for x in xs))
        return to_signed(y, self.io_range) if self.output else y


def signed_view(net: torch.nn.Module, io_range: str, output: bool) -> torch.nn.Module:
    """``net`` itself when it works in [-1, 1]; otherwise a :class:`SignedIO` around it."""
    return net if io_range == "signed" else SignedIO(net, io_range, output)


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
    io_range = io_range_of(G)
    x = lq.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    x = from_signed(x, io_range).contiguous(memory_format=fmt)
    was_training = G.training
    G.eval()
    try:
        with autocast_for(device, device.type == "cuda" if bf16 is None else bf16):
            y = G(x)
    finally:
        G.train(was_training)
    return ((to_signed(y.float(), io_range) + 1) / 2).clamp(0, 1)
