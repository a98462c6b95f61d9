"""Real-ESRGAN's blur-kernel family and the 2-D sinc (ringing) filter.

The kernels are the ones of Wang et al., "Real-ESRGAN" (ICCVW 2021), section 3.2, as BasicSR
defines them in ``basicsr/data/degradations.py``: on an odd ``size``×``size`` grid of integer offsets
(x = column, y = row) with the rotated covariance Σ = R(θ) diag(σx², σy²) R(θ)ᵀ and the quadratic
form q = [x y] Σ⁻¹ [x y]ᵀ,

- Gaussian: exp(-q / 2); generalized Gaussian: exp(-q^β / 2); plateau: 1 / (1 + q^β);
- sinc (circular low-pass, cutoff ω rad/px): ω J₁(ω r) / (2π r), ω² / (4π) at the centre;

each normalised to sum 1. ``tests/test_kernels.py`` holds BasicSR's own kernels for a table of
parameters (computed outside this repository) and checks these to 1e-6. Only the parameters go
into a plan, never the array.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import cv2
import numpy as np
from scipy.special import j1

from facedeg.ops.args import ArgError, Choice, OddRange, Probs, Range
from facedeg.ops.base import OpSpec, as_uint8
from facedeg.ops.correlate import correlate

KERNEL_KINDS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
_BORDER = cv2.BORDER_REFLECT_101  # = torch's 'reflect' padding, which BasicSR's filter2D uses


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    r = size // 2
    y, x = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
    return x, y


def blur_kernel(kind: str, size: int, sigma_x: float, sigma_y: float, theta: float, beta: float = 1.0) -> np.ndarray:
    """The normalised float64 kernel of ``kind`` (one of KERNEL_KINDS); θ in radians.

    Isotropic kinds use ``sigma_x`` only. For the Gaussian kinds ``beta`` is ignored.
    """
    if kind not in KERNEL_KINDS:
        raise ValueError(f"unknown kernel kind {kind!r} (kinds: {', '.join(KERNEL_KINDS)})")
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    if sigma_x <= 0 or sigma_y <= 0 or beta <= 0:
        raise ValueError(f"sigma_x, sigma_y and beta must be positive, got {sigma_x}, {sigma_y}, {beta}")
    x, y = _grid(size)
    if kind.endswith("aniso"):
        c, s = math.cos(theta), math.sin(theta)
        u, v = c * x + s * y, -s * x + c * y  # Rᵀ [x y]
        q = (u / sigma_x) ** 2 + (v / sigma_y) ** 2
    else:
        q = (x * x + y * y) / sigma_x ** 2
    if kind in ("iso", "aniso"):
        k = np.exp(-0.5 * q)
    elif kind.startswith("generalized"):
        k = np.exp(-0.5 * q ** beta)
    else:
        k = 1.0 / (q ** beta + 1.0)
    return k / k.sum()


def sinc_kernel(size: int, omega: float) -> np.ndarray:
    """The normalised float64 circular low-pass kernel with cutoff ``omega`` (radians per pixel, ≤ π)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    if not 0 < omega <= math.pi:
        raise ValueError(f"omega must be in (0, pi], got {omega}")
    x, y = _grid(size)
    r = np.hypot(x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = omega * j1(omega * r) / (2 * math.pi * r)
    k[size // 2, size // 2] = omega ** 2 / (4 * math.pi)
    return k / k.sum()


def _filter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate with a float kernel and round once (sinc lobes may leave 0-255 and saturate)."""
    return as_uint8(correlate(image, kernel))


@functools.lru_cache(maxsize=64)
def _gaussian_1d(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).astype(np.float32)


def kernel_blur(image: np.ndarray, kind: str, size: int, sigma_x: float, sigma_y: float, theta: float,
                beta: float = 1.0) -> np.ndarray:
    """Filter with one of Real-ESRGAN's kernels (reflect-101 border, rounded back to uint8)."""
    if kind == "iso":  # exp(-(x²+y²)/2σ²) = g(x) g(y): two 1-D passes, the same kernel
        blur_kernel(kind, size, sigma_x, sigma_y, theta, beta)  # validates
        g = _gaussian_1d(size, sigma_x)
        return cv2.sepFilter2D(image, -1, g, g, borderType=_BORDER).reshape(image.shape)
    return _filter(image, blur_kernel(kind, size, sigma_x, sigma_y, theta, beta))


def sinc_filter(image: np.ndarray, size: int, omega: float) -> np.ndarray:
    """Circular low-pass (ringing and overshoot near edges); values beyond 0-255 saturate."""
    return _filter(image, sinc_kernel(size, omega))


def _split_beta(rng: np.random.Generator, bounds: list[float]) -> float:
    """β as Real-ESRGAN draws it: with p 0.5 from [lo, 1], else from [1, hi] (1 clamped into the range)."""
    lo, hi = bounds
    one = min(max(1.0, lo), hi)
    a, b = (lo, one) if rng.random() < 0.5 else (one, hi)
    return a if a == b else round(float(rng.uniform(a, b)), 4)


class KernelBlur(OpSpec):
    """A kernel of one of ``kinds`` (drawn with ``probs``), of an odd size drawn from ``size``."""

    name = "kernel_blur"
    schema = {
        "kinds": Choice(KERNEL_KINDS, default="iso", multi=True),
        "probs": Probs((), optional=True),
        "size": OddRange(3, 99, default=(7, 21)),
        "sigma": Range(0.05, 50.0),
        "rotation": Range(-math.pi, math.pi, default=(-math.pi, math.pi)),
        "beta_generalized": Range(0.01, 16.0, default=(0.5, 4.0)),
        "beta_plateau": Range(0.01, 16.0, default=(1.0, 2.0)),
    }
    apply = staticmethod(kernel_blur)

    def check(self) -> None:
        kinds = self.args["kinds"]
        n = 1 if isinstance(kinds, str) else len(kinds)
        probs = self.args.get("probs")
        if probs is not None and len(probs) != n:
            raise ArgError("probs", f"expected {n} probabilities, one per kind, got {len(probs)}")
        for key in ("beta_generalized", "beta_plateau"):
            if self.args[key][0] <= 0:
                raise ArgError(key, f"beta must be > 0, got {self.args[key][0]:g}")

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        kinds = self.args["kinds"]
        kinds = [kinds] if isinstance(kinds, str) else kinds
        probs = self.args.get("probs")
        kind = kinds[self.schema["probs"].draw(rng, probs)] if probs else kinds[int(rng.integers(len(kinds)))]
        size = self.draw(rng, "size")
        sx = self.draw(rng, "sigma")
        sy, theta = (self.draw(rng, "sigma"), self.draw(rng, "rotation")) if kind.endswith("aniso") else (sx, 0.0)
        beta = 1.0
        if kind.startswith("generalized"):
            beta = _split_beta(rng, self.args["beta_generalized"])
        elif kind.startswith("plateau"):
            beta = _split_beta(rng, self.args["beta_plateau"])
        return {"kind": kind, "size": size, "sigma_x": sx, "sigma_y": sy, "theta": theta, "beta": beta}

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        kind = params["kind"].replace("generalized", "gen")
        sig = f"σ{params['sigma_x']:.1f}" + ("" if kind.endswith("_iso") or kind == "iso" else f"/{params['sigma_y']:.1f}")
        beta = "" if kind in ("iso", "aniso") else f" β{params['beta']:.2f}"
        return f"{kind} k{params['size']} {sig}{beta}"


class Sinc(OpSpec):
    """2-D sinc filter: cutoff ω (radians per pixel, at most π) and an odd size drawn from their ranges."""

    name = "sinc"
    schema = {"size": OddRange(3, 99, default=(7, 21)), "omega": Range(0.01, math.pi)}
    apply = staticmethod(sinc_filter)

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        return {"size": self.draw(rng, "size"), "omega": min(self.draw(rng, "omega"), math.pi)}

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        return f"sinc k{params['size']} ω{params['omega']:.2f}"
