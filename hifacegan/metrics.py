"""Full-reference image metrics in torch: PSNR, SSIM, MS-SSIM.

Inputs are ``B x C x H x W`` float tensors in [0, 1] (data range 1); every function returns one value
per image, shape ``[B]``. Computation runs in float64 for accuracy.

SSIM follows Wang et al. (2004): 11x11 Gaussian window with sigma 1.5, "valid" filtering (no padding),
K1 = 0.01, K2 = 0.03, computed per channel and averaged over channels and positions.

``MetricSpec`` and ``prepare`` make the numbers comparable with published tables (BasicSR, GFPGAN):
the image rounded to 8 bits, optionally only its ITU-R BT.601 luma (``test_y_channel``) and with a
border cropped, before PSNR/SSIM. With the defaults (rounding only) PSNR and SSIM equal scikit-image's
``peak_signal_noise_ratio`` and ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)`` on the uint8 images (tests/test_compare.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(
            f"expected two B x C x H x W tensors of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB for data range 1; ``inf`` for identical images."""
    _check_pair(x, y)
    mse = (x.double() - y.double()).pow(2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(1 / mse)


def _gaussian_1d() -> list[float]:
    coords = torch.arange(WINDOW, dtype=torch.float64) - (WINDOW - 1) / 2
    g = torch.exp(-(coords**2) / (2 * SIGMA**2))
    return (g / g.sum()).tolist()


def _blur_valid(t: torch.Tensor) -> torch.Tensor:
    """The 11x11 Gaussian window, "valid" (no padding), as two 1-D passes of shifted slices: the same
    sums as a 2-D convolution, and much faster than a float64 grouped convolution on the CPU."""
    g = _gaussian_1d()
    h, w = t.shape[-2:]
    across = sum(g[k] * t[..., :, k:k + w - WINDOW + 1] for k in range(WINDOW))
    return sum(g[k] * across[..., k:k + h - WINDOW + 1, :] for k in range(WINDOW))


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image SSIM and contrast-structure term (float64 inputs)."""
    if min(x.shape[-2:]) < WINDOW:
        raise ValueError(f"images must be at least {WINDOW}x{WINDOW} for SSIM, got {tuple(x.shape[-2:])}")
    mu_x, mu_y, xx, yy, xy = _blur_valid(torch.stack([x, y, x * x, y * y, x * y])).unbind(0)

    c1, c2 = K1**2, K2**2
    var_x = xx - mu_x**2
    var_y = yy - mu_y**2
    cov = xy - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map
    return ssim_map.mean(dim=(1, 2, 3)), cs_map.mean(dim=(1, 2, 3))


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural similarity (11x11 Gaussian window, sigma 1.5), one value per image."""
    _check_pair(x, y)
    return _ssim_and_cs(x.double(), y.double())[0]


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Multi-scale SSIM (Wang et al. 2003) with the standard 5 scale weights, one value per image.

    Scales are produced by 2x2 average pooling. Images too small for 5 scales (the coarsest must be
    at least 11 pixels, i.e. 176 at full scale) use as many scales as fit, with the first weights
    renormalised to sum to 1. Negative contrast-structure values are clamped to 0 before the
    fractional powers, which are undefined for them.
    """
    _check_pair(x, y)
    x, y = x.double(), y.double()
    n_scales = 1
    while n_scales < len(MS_SSIM_WEIGHTS) and min(x.shape[-2:]) // 2**n_scales >= WINDOW:
        n_scales += 1
    weights = torch.tensor(MS_SSIM_WEIGHTS[:n_scales], dtype=torch.float64, device=x.device)
    weights = weights / weights.sum()
    result = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
    for i in range(n_scales):
        if i > 0:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        sim, cs = _ssim_and_cs(x, y)
        term = sim if i == n_scales - 1 else cs
        result = result * term.clamp(min=0) ** weights[i]
    return result


# ---------------------------------------------------------------------------- comparable with published tables

# ITU-R BT.601 luma for RGB in [0, 1], giving Y in [16, 235] / 255 (MATLAB's rgb2ycbcr, BasicSR's test_y_channel)
BT601_Y = (65.481, 128.553, 24.966)
BT601_OFFSET = 16.0


@dataclass(frozen=True)
class MetricSpec:
    """How published tables compute PSNR/SSIM: on the 8-bit image (`quantize`), optionally on the BT.601
    Y channel only (`y_channel`), with `crop_border` pixels dropped on each side."""

    quantize: bool = True
    y_channel: bool = False
    crop_border: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"quantize": self.quantize, "y_channel": self.y_channel, "crop_border": self.crop_border}

    def describe(self, model_output: bool = True) -> str:
        """In words; `model_output` False: scoring image files (8-bit already), rounding is not mentioned."""
        parts = ["uint8-rounded output" if self.quantize else "float output"] if model_output else []
        parts.append("Y channel (BT.601)" if self.y_channel else "RGB")
        if self.crop_border:
            parts.append(f"{self.crop_border} px border cropped")
        return ", ".join(parts)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round [0, 1] images to the 256 levels of an 8-bit file (what is written to PNG), as float64."""
    return (x.double().clamp(0, 1) * 255).round() / 255


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """B x 3 x H x W RGB in [0, 1] -> B x 1 x H x W BT.601 luma in [16/255, 235/255] (not rounded)."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected B x 3 x H x W RGB, got {tuple(x.shape)}")
    w = torch.tensor(BT601_Y, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
    return ((x.double() * w).sum(dim=1, keepdim=True) + BT601_OFFSET) / 255


def prepare(x: torch.Tensor, spec: MetricSpec) -> torch.Tensor:
    """Apply `spec` (rounding, border crop, Y channel) to B x 3 x H x W images in [0, 1]; float64 out."""
    x = quantize(x) if spec.quantize else x.double()
    b = spec.crop_border
    if b:
        if min(x.shape[-2:]) <= 2 * b:
            raise ValueError(f"--crop-border {b} leaves nothing of a {x.shape[-2]}x{x.shape[-1]} image")
        x = x[..., b:-b, b:-b]
    return rgb_to_y(x) if spec.y_channel else x
