"""Full-reference image metrics in torch: PSNR, SSIM, MS-SSIM.

Inputs are ``B x C x H x W`` float tensors in [0, 1] (data range 1); every function returns one value
per image, shape ``[B]``. Computation runs in float64 for accuracy.

SSIM follows Wang et al. (2004): 11x11 Gaussian window with sigma 1.5, "valid" filtering (no padding),
K1 = 0.01, K2 = 0.03, computed per channel and averaged over channels and positions.
"""

from __future__ import annotations

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


def _gaussian_window(channels: int, device: torch.device) -> torch.Tensor:
    coords = torch.arange(WINDOW, dtype=torch.float64, device=device) - (WINDOW - 1) / 2
    g = torch.exp(-(coords**2) / (2 * SIGMA**2))
    g = g / g.sum()
    return torch.outer(g, g).expand(channels, 1, WINDOW, WINDOW).contiguous()


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image SSIM and contrast-structure term (float64 inputs)."""
    if min(x.shape[-2:]) < WINDOW:
        raise ValueError(f"images must be at least {WINDOW}x{WINDOW} for SSIM, got {tuple(x.shape[-2:])}")
    channels = x.shape[1]
    window = _gaussian_window(channels, x.device)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    c1, c2 = K1**2, K2**2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
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
