"""Conditional multi-scale PatchGAN discriminator (pix2pixHD / SPADE style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .generator import IO_RANGES
from .layers import LEAKY_SLOPE, init_weights

KERNEL = 4
PAD = 2  # ceil((KERNEL - 1) / 2)


class PatchDiscriminator(nn.Module):
    """PatchGAN returning the output of every layer; the last one is the per-patch prediction.

    Channels double from ``ndf`` up to ``8 * ndf``; every hidden layer but the last has stride 2.
    """

    def __init__(self, in_channels: int, ndf: int, n_layers: int) -> None:
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(in_channels, ndf, KERNEL, 2, PAD), nn.LeakyReLU(LEAKY_SLOPE))]
        nf = ndf
        for n in range(1, n_layers):
            prev, nf = nf, min(2 * nf, 8 * ndf)
            stride = 1 if n == n_layers - 1 else 2
            layers.append(
                nn.Sequential(
                    spectral_norm(nn.Conv2d(prev, nf, KERNEL, stride, PAD, bias=False)),
                    nn.InstanceNorm2d(nf),
                    nn.LeakyReLU(LEAKY_SLOPE),
                )
            )
        layers.append(nn.Sequential(nn.Conv2d(nf, 1, KERNEL, 1, PAD)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs; scale ``i`` sees the input average-pooled ``i`` times (3x3, stride 2).

    ``forward(lq, img)`` concatenates the two on channels and returns, per scale, the list of
    layer outputs (last element = prediction).
    """

    def __init__(self, in_channels: int = 6, ndf: int = 64, n_layers: int = 4, num_d: int = 2,
                 io_range: str = "signed") -> None:
        super().__init__()
        if ndf < 1 or n_layers < 1 or num_d < 1:
            raise ValueError(f"ndf, n_layers and num_d must be positive, got {ndf}, {n_layers}, {num_d}")
        if io_range not in IO_RANGES:
            raise ValueError(f"unknown io_range {io_range!r}; valid: {', '.join(IO_RANGES)}")
        # the value range of the images its weights were trained on (as the generator's: see hifacegan.infer)
        self.config = dict(in_channels=in_channels, ndf=ndf, n_layers=n_layers, num_d=num_d, io_range=io_range)
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, ndf, n_layers) for _ in range(num_d))
        init_weights(self)

    def forward(self, lq: torch.Tensor, img: torch.Tensor) -> list[list[torch.Tensor]]:
        x = torch.cat([lq, img], dim=1)
        results = []
        for i, scale in enumerate(self.scales):
            if i > 0:
                x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
            results.append(scale(x))
        return results
