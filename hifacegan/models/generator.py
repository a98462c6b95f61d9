"""HiFaceGAN generators.

Value convention: the generators take the low-quality (LQ) face as a float tensor ``B x 3 x size x size``
with values in [-1, 1] and return the restored face in [-1, 1] (tanh output). Map uint8 images with
``x / 127.5 - 1`` and back with ``(y + 1) * 127.5``.

Both variants share the same replenishment trunk: SPADE residual blocks that start on a latent grid of
``size / 32`` (16 at 512) with ``16 * ngf`` channels and double the resolution five times, halving the
channels in the last four up-blocks (16 -> 8 -> 4 -> 2 -> 1 ``ngf``).

- ``HiFaceGANGenerator`` (the paper's): a suppression pyramid (head conv + 5 LIP stages) turns the LQ
  image into one feature map per level; every trunk block is guided by the map of its own resolution.
  The trunk input is the LQ image nearest-downsampled to the latent grid, through a 3x3 conv.
- ``LIPSPADEGenerator`` (the lighter variant of the released checkpoints): the same LIP encoder's last
  map is the trunk input, and every SPADE layer is guided by the LQ image itself.

Parameter counts do not depend on ``size``; it fixes the input size checked in ``forward`` and is
stored in ``config`` with the other constructor arguments so a checkpoint can rebuild the model.

``io_range`` (stored in ``config`` too) records the value range the weights were trained for: ``signed``
([-1, 1] in and out, ours) or ``unit`` ([0, 1] in, the tanh output read as [0, 1]: the authors' released
weights). The network itself does not look at it; :mod:`hifacegan.infer` converts for every consumer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import LEAKY_SLOPE, LIP, NORMS, SPADEResBlock, init_weights

N_DOWN = 5  # LIP stages in the encoder = x2 upsamplings in the trunk
MIN_SIZE = 2 ** (N_DOWN + 1)
VARIANTS = ("hifacegan", "lipspade")
IO_RANGES = ("signed", "unit")


def level_channels(ngf: int) -> list[int]:
    """Encoder channels per level, from full resolution (level 0) to the latent grid (level 5)."""
    top = 2 ** (N_DOWN - 1) * ngf
    return [min(2**level * ngf, top) for level in range(N_DOWN + 1)]


def _check_args(ngf: int, size: int, norm: str, io_range: str) -> None:
    if ngf < 1:
        raise ValueError(f"ngf must be a positive integer, got {ngf}")
    if size < MIN_SIZE or size % 2**N_DOWN:
        raise ValueError(f"size must be a multiple of {2**N_DOWN} and at least {MIN_SIZE}, got {size}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    if io_range not in IO_RANGES:
        raise ValueError(f"unknown io_range {io_range!r}; valid: {', '.join(IO_RANGES)}")


def _check_input(x: torch.Tensor, size: int) -> None:
    if x.ndim != 4 or tuple(x.shape[1:]) != (3, size, size):
        raise ValueError(f"expected input of shape B x 3 x {size} x {size}, got {tuple(x.shape)}")


class LIPEncoder(nn.Module):
    """Head conv + ``N_DOWN`` LIP stages; returns the feature map of every level, finest first."""

    def __init__(self, ngf: int) -> None:
        super().__init__()
        chans = level_channels(ngf)
        self.head = nn.Sequential(
            nn.Conv2d(3, ngf, 3, padding=1, bias=False), nn.InstanceNorm2d(ngf), nn.ReLU()
        )
        stages = []
        for level in range(1, N_DOWN + 1):
            cin, cout = chans[level - 1], chans[level]
            stage = [LIP(cin), nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout)]
            if level < N_DOWN:
                stage.append(nn.ReLU())
            stages.append(nn.Sequential(*stage))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.head(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        return feats


class SPADETrunk(nn.Module):
    """Replenishment trunk: latent grid (``16 * ngf`` channels) -> RGB image in [-1, 1].

    ``guide_channels[level]`` is the channel count of the guidance for the blocks at that level
    (level 0 = full resolution, level ``N_DOWN`` = latent grid).
    """

    def __init__(self, ngf: int, guide_channels: list[int], norm: str) -> None:
        super().__init__()
        top = level_channels(ngf)[-1]
        self.head = SPADEResBlock(top, top, guide_channels[N_DOWN], norm)
        self.middle = nn.ModuleList(
            SPADEResBlock(top, top, guide_channels[N_DOWN - 1], norm) for _ in range(2)
        )
        self.up_levels = tuple(range(N_DOWN - 2, -1, -1))
        self.up_blocks = nn.ModuleList(
            SPADEResBlock(2 ** (level + 1) * ngf, 2**level * ngf, guide_channels[level], norm)
            for level in self.up_levels
        )
        self.to_rgb = nn.Conv2d(ngf, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, guides: list[torch.Tensor]) -> torch.Tensor:
        x = self.head(x, guides[N_DOWN])
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        for block in self.middle:
            x = block(x, guides[N_DOWN - 1])
        for level, block in zip(self.up_levels, self.up_blocks, strict=True):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(x, guides[level])
        return torch.tanh(self.to_rgb(F.leaky_relu(x, LEAKY_SLOPE)))


class HiFaceGANGenerator(nn.Module):
    """The paper's HiFaceGAN: suppression pyramid + replenishment trunk with per-level guidance."""

    def __init__(self, ngf: int = 48, size: int = 512, norm: str = "instance", io_range: str = "signed") -> None:
        super().__init__()
        _check_args(ngf, size, norm, io_range)
        self.config = dict(variant="hifacegan", ngf=ngf, size=size, norm=norm, io_range=io_range)
        self.size = size
        self.suppressor = LIPEncoder(ngf)
        self.from_lq = nn.Conv2d(3, level_channels(ngf)[-1], 3, padding=1)
        self.trunk = SPADETrunk(ngf, level_channels(ngf), norm)
        init_weights(self)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        _check_input(lq, self.size)
        feats = self.suppressor(lq)
        latent = F.interpolate(lq, size=feats[-1].shape[-2:], mode="nearest")
        return self.trunk(self.from_lq(latent), feats)


class LIPSPADEGenerator(nn.Module):
    """Light variant: LIP encoder output feeds the trunk; every SPADE layer is guided by the LQ image."""

    def __init__(self, ngf: int = 48, size: int = 512, norm: str = "instance", io_range: str = "signed") -> None:
        super().__init__()
        _check_args(ngf, size, norm, io_range)
        self.config = dict(variant="lipspade", ngf=ngf, size=size, norm=norm, io_range=io_range)
        self.size = size
        self.encoder = LIPEncoder(ngf)
        self.trunk = SPADETrunk(ngf, [3] * (N_DOWN + 1), norm)
        init_weights(self)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        _check_input(lq, self.size)
        latent = self.encoder(lq)[-1]
        return self.trunk(latent, [lq] * (N_DOWN + 1))


def build_generator(variant: str, ngf: int, size: int, norm: str = "instance", io_range: str = "signed") -> nn.Module:
    """Build a generator by variant name; ``build_generator(**model.config)`` rebuilds ``model``."""
    if variant == "hifacegan":
        return HiFaceGANGenerator(ngf, size, norm, io_range)
    if variant == "lipspade":
        return LIPSPADEGenerator(ngf, size, norm, io_range)
    raise ValueError(f"unknown generator variant {variant!r}; valid: {', '.join(VARIANTS)}")
