"""Building blocks shared by the generators and the discriminator.

- ``LIP``: Local Importance Pooling (Gao et al., ICCV 2019), a learned x2 downsampling.
- ``SPADE``: spatially-adaptive normalisation, ``norm(x) * (1 + gamma(g)) + beta(g)``.
- ``SPADEResBlock``: residual block of two SPADE -> LeakyReLU -> conv units.
- ``init_weights``: Xavier normal (gain 0.02) weights and zero biases.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

NORMS = ("instance", "batch", "syncbatch")
LIP_LOGIT_SCALE = 12.0
SPADE_MAX_HIDDEN = 128
LEAKY_SLOPE = 0.2


def param_free_norm(kind: str, channels: int) -> nn.Module:
    """Return a normalisation layer without learned affine parameters."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=False)
    if kind == "syncbatch":
        return nn.SyncBatchNorm(channels, affine=False)
    raise ValueError(f"unknown norm {kind!r}; valid: {', '.join(NORMS)}")


class LIP(nn.Module):
    """Local Importance Pooling: importance-weighted 3x3 average pool with stride 2.

    The pooling runs in float32: ``exp`` of logits up to 12 overflows float16.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.logit = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = (LIP_LOGIT_SCALE * torch.sigmoid(self.logit(x).float())).exp()
        pooled = F.avg_pool2d(x.float() * weight, 3, 2, 1) / F.avg_pool2d(weight, 3, 2, 1)
        return pooled.to(x.dtype)


class SPADE(nn.Module):
    """Normalise ``x`` without affine terms, then modulate it by maps predicted from guidance.

    The guidance is nearest-resized to ``x``'s spatial size when the sizes differ.
    """

    def __init__(self, channels: int, guide_channels: int, norm: str = "instance") -> None:
        super().__init__()
        hidden = min(SPADE_MAX_HIDDEN, channels)
        self.norm = param_free_norm(norm, channels)
        self.shared = nn.Sequential(nn.Conv2d(guide_channels, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        if guide.shape[-2:] != x.shape[-2:]:
            guide = F.interpolate(guide, size=x.shape[-2:], mode="nearest")
        hidden = self.shared(guide)
        return self.norm(x) * (1 + self.gamma(hidden)) + self.beta(hidden)


class SPADEResBlock(nn.Module):
    """SPADE residual block; the shortcut is learned (SPADE -> 1x1 conv) when ``fin != fout``.

    Convolutions are spectrally normalised.
    """

    def __init__(self, fin: int, fout: int, guide_channels: int, norm: str = "instance") -> None:
        super().__init__()
        fmid = min(fin, fout)
        self.norm_0 = SPADE(fin, guide_channels, norm)
        self.conv_0 = spectral_norm(nn.Conv2d(fin, fmid, 3, padding=1))
        self.norm_1 = SPADE(fmid, guide_channels, norm)
        self.conv_1 = spectral_norm(nn.Conv2d(fmid, fout, 3, padding=1))
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, guide_channels, norm)
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, guide)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, guide), LEAKY_SLOPE))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, guide), LEAKY_SLOPE))
        return shortcut + dx


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """Xavier-normal init of every conv/linear weight (the pre-spectral-norm one if wrapped); zero biases."""
    for m in module.modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        if parametrize.is_parametrized(m, "weight"):
            weight = m.parametrizations.weight.original
        else:
            weight = m.weight
        nn.init.xavier_normal_(weight, gain=gain)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
