"""Correlate a uint8 image with a float 2-D kernel (reflect-101 border), choosing the cheapest exact way.

Three ways give the same result to float32 precision:

- **separable terms**: the kernel's singular value decomposition, truncated where the dropped part's
  absolute sum is at most ``TOLERANCE``, applied as one 1-D column and one 1-D row pass per term;
- **direct**: OpenCV's 2-D correlation (small kernels only: from 13 px OpenCV switches to a slower DFT
  path);
- **FFT**: the padded image's spectrum times the kernel's conjugate spectrum, per channel.

Before either, outer rings whose absolute sum fits half the tolerance are trimmed (a narrow σ in a
21 px window is mostly zeros). All told no output moves by more than 255·``TOLERANCE`` = 0.026 gray
levels before rounding (``tests/test_kernels.py`` checks the float results against ``cv2.filter2D``).

The choice depends only on the kernel, so a plan replays bit for bit. Costs, in ms per 512² RGB image
on one core (``python benchmarks/bench_degrade.py`` prints the ops; measured 2026-12-05): one separable
term 0.2 + 0.057·size; direct 0.027·size² up to 11 px; FFT 4.6 whatever the size. They all scale with
the pixel count, so the ranking holds at other sizes.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import cv2
import numpy as np

TOLERANCE = 1e-4
_BORDER = cv2.BORDER_REFLECT_101
_FFT_COST = 4.6
_ADD_COST = 0.1


class Way(NamedTuple):
    how: str  # "separable", "direct" or "fft"
    kernel: np.ndarray  # float32, trimmed
    terms: tuple[tuple[np.ndarray, np.ndarray], ...] = ()  # (column filter, row filter) per term


def _trim(kernel: np.ndarray, budget: float) -> tuple[np.ndarray, float]:
    """Drop outer rings while their absolute sum fits ``budget``; return the kernel and the budget left."""
    while kernel.shape[0] > 1:
        ring = np.abs(kernel).sum() - np.abs(kernel[1:-1, 1:-1]).sum()
        if ring > budget:
            break
        kernel, budget = kernel[1:-1, 1:-1], budget - ring
    return kernel, budget


@functools.lru_cache(maxsize=256)
def _way(kernel_bytes: bytes, size: int) -> Way:
    kernel, budget = _trim(np.frombuffer(kernel_bytes, np.float64).reshape(size, size), TOLERANCE / 2)
    size = kernel.shape[0]
    term = 0.2 + 0.057 * size
    whole = min(_FFT_COST, 0.027 * size * size) if size <= 11 else _FFT_COST
    u, s, vt = np.linalg.svd(kernel)
    for r in range(1, size + 1):
        if r * term + (r - 1) * _ADD_COST >= whole:
            break
        if np.abs(kernel - (u[:, :r] * s[:r]) @ vt[:r]).sum() <= budget + TOLERANCE / 2:
            terms = tuple(((u[:, i] * s[i]).astype(np.float32), vt[i].astype(np.float32)) for i in range(r))
            return Way("separable", kernel.astype(np.float32), terms)
    return Way("direct" if whole < _FFT_COST else "fft", kernel.astype(np.float32))


def way(kernel: np.ndarray) -> Way:
    """How ``correlate`` applies this (square, odd-sized) kernel."""
    kernel = np.ascontiguousarray(kernel, np.float64)
    return _way(kernel.tobytes(), kernel.shape[0])


@functools.lru_cache(maxsize=32)
def _spectrum(kernel_bytes: bytes, size: int, shape: tuple[int, int]) -> np.ndarray:
    buf = np.zeros(shape, np.float32)
    buf[:size, :size] = np.frombuffer(kernel_bytes, np.float32).reshape(size, size)
    return cv2.dft(buf)


def _fft(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    size = kernel.shape[0]
    r, (h, w) = size // 2, image.shape[:2]
    rows, cols = cv2.getOptimalDFTSize(h + 2 * r), cv2.getOptimalDFTSize(w + 2 * r)
    # Circular correlation: output (y, x) < (h, w) reads rows y..y+2r and columns x..x+2r only, so the
    # padding beyond h+2r and w+2r (reflected too, here) is never read and nothing wraps around.
    padded = cv2.copyMakeBorder(image, r, rows - h - r, r, cols - w - r, _BORDER).reshape(rows, cols, -1)
    spectrum = _spectrum(kernel.tobytes(), size, (rows, cols))
    channels = []
    for c in range(padded.shape[2]):
        product = cv2.mulSpectrums(cv2.dft(padded[..., c].astype(np.float32)), spectrum, 0, conjB=True)
        channels.append(cv2.idft(product, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)[:h, :w])
    return cv2.merge(channels)


def correlate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The float32 correlation of ``image`` (uint8 HxWxC) with ``kernel``, shaped like ``image``."""
    chosen = way(kernel)
    if chosen.how == "separable":
        out = None
        for col, row in chosen.terms:
            part = cv2.sepFilter2D(image, cv2.CV_32F, row, col, borderType=_BORDER)
            out = part if out is None else cv2.add(out, part, dst=out)
    elif chosen.how == "direct":
        out = cv2.filter2D(image.astype(np.float32), -1, chosen.kernel, borderType=_BORDER)
    else:
        out = _fft(image, chosen.kernel)
    return out.reshape(image.shape)
