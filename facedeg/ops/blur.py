"""Blur ops: Gaussian (isotropic or rotated anisotropic), motion (a line kernel), defocus (a disk kernel)."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from facedeg.ops.args import ArgError, Choice, Number, Range
from facedeg.ops.base import OpSpec

_AA_SHIFT = 8  # sub-pixel bits when drawing anti-aliased kernels
_BORDER = cv2.BORDER_REFLECT_101
# OpenCV's filter2D loops directly over the nonzero taps for kernels up to 11x11 and switches to a
# DFT above (~16 ms for a 512² RGB image on one core, whatever the kernel holds). Motion kernels are
# sparse lines, so a larger kernel with few taps is split into 11x11 tiles, each filtered directly in
# float32 (uint8 -> float32 output has no fast path) and summed: ~1-2 ms instead of ~16.
_TILE = 11
_TILED_MAX_TAPS = 400  # above this many nonzero taps the DFT is faster


def _convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate ``image`` with the normalised ``kernel`` (centre anchor, reflect-101 border)."""
    kernel = (kernel / kernel.sum()).astype(np.float32)
    kh, kw = kernel.shape
    if max(kh, kw) <= _TILE or np.count_nonzero(kernel) > _TILED_MAX_TAPS:
        return cv2.filter2D(image, -1, kernel, borderType=_BORDER).reshape(image.shape)
    h, w = image.shape[:2]
    padded = cv2.copyMakeBorder(image, kh // 2, kh // 2, kw // 2, kw // 2, _BORDER).astype(np.float32)
    padded = padded.reshape(padded.shape[0], padded.shape[1], -1)
    acc = None
    for by in range(0, kh, _TILE):
        for bx in range(0, kw, _TILE):
            tile = np.ascontiguousarray(kernel[by:by + _TILE, bx:bx + _TILE])
            if not tile.any():
                continue
            th, tw = tile.shape
            view = padded[by:by + h + th - 1, bx:bx + w + tw - 1]
            part = cv2.filter2D(view, -1, tile, anchor=(0, 0), borderType=_BORDER)[:h, :w]
            acc = part if acc is None else cv2.add(acc, part)
    return cv2.convertScaleAbs(acc).reshape(image.shape)


TRUNCATIONS = ("3sigma", "imgaug")


def gaussian_kernel_size(sigma: float, max_kernel: int, truncate: str = "3sigma") -> int:
    """Odd kernel size, capped at ``max_kernel``: ``3sigma`` covers ±3σ; ``imgaug`` is imgaug's shorter
    rule (its documented ``GaussianBlur``: a width of 3.3σ below σ 3, 2.9σ below σ 5, 2.6σ above,
    truncated to an integer, at least 5, made odd), which cuts the tails and so blurs less."""
    if truncate == "imgaug":
        width = 3.3 if sigma < 3 else 2.9 if sigma < 5 else 2.6
        return min(max(int(width * sigma), 5) | 1, max_kernel | 1)
    return max(3, min(2 * math.ceil(3 * sigma) + 1, max_kernel | 1))


def gaussian_blur(image: np.ndarray, sigma_x: float, sigma_y: float, angle: float, ksize: int) -> np.ndarray:
    """Gaussian blur; separable when isotropic, a rotated 2-D kernel otherwise (angle in degrees)."""
    if sigma_x == sigma_y:
        k = cv2.getGaussianKernel(ksize, sigma_x)
        return cv2.sepFilter2D(image, -1, k, k, borderType=_BORDER).reshape(image.shape)
    r = ksize // 2
    y, x = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
    t = math.radians(angle)
    u, v = x * math.cos(t) + y * math.sin(t), -x * math.sin(t) + y * math.cos(t)
    return _convolve(image, np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2)))


class GaussianBlur(OpSpec):
    name = "gaussian_blur"
    schema = {
        "sigma": Range(0.1, 50.0),
        "anisotropic_prob": Number(0.0, 1.0, default=0.0),
        "max_kernel": Number(3, 201, default=41, integer=True),
        "truncate": Choice(TRUNCATIONS, optional=True),
    }
    apply = staticmethod(gaussian_blur)

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        sx = self.draw(rng, "sigma")
        aniso = self.args["anisotropic_prob"] > 0 and rng.random() < self.args["anisotropic_prob"]
        sy = self.draw(rng, "sigma") if aniso else sx
        angle = round(float(rng.uniform(0, 180)), 2) if aniso else 0.0
        return {"sigma_x": sx, "sigma_y": sy, "angle": angle,
                "ksize": gaussian_kernel_size(max(sx, sy), self.args["max_kernel"], self.args.get("truncate", "3sigma"))}

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        if params["sigma_x"] == params["sigma_y"]:
            return f"gblur σ{params['sigma_x']:.1f}"
        return f"gblur σ{params['sigma_x']:.1f}/{params['sigma_y']:.1f} {params['angle']:.0f}°"


def motion_kernel(length: int, angle: float) -> np.ndarray:
    """An anti-aliased line of ``length`` px through the centre at ``angle`` degrees (unnormalised)."""
    size = length | 1
    kernel = np.zeros((size, size), np.uint8)
    c, half, t = size // 2, (length - 1) / 2, math.radians(angle)
    dx, dy = half * math.cos(t), -half * math.sin(t)
    p0 = (round((c - dx) * (1 << _AA_SHIFT)), round((c - dy) * (1 << _AA_SHIFT)))
    p1 = (round((c + dx) * (1 << _AA_SHIFT)), round((c + dy) * (1 << _AA_SHIFT)))
    cv2.line(kernel, p0, p1, 255, 1, cv2.LINE_AA, _AA_SHIFT)
    if kernel.sum() == 0:
        kernel[c, c] = 255
    return kernel.astype(np.float32)


def imgaug_motion_kernel(length: int, angle: float, direction: float) -> np.ndarray:
    """imgaug's documented ``MotionBlur`` kernel (unnormalised): an odd ``k``×``k`` square (``k`` =
    ``length`` made odd) holding a line through the centre whose weights run linearly from
    ``(1 + direction) / 2`` at the end pointing to ``angle`` to ``(1 - direction) / 2`` at the other,
    stored as 8-bit values (truncated) and rotated into place by bilinear interpolation with zero borders."""
    k = length | 1
    start = (1.0 + float(np.clip(direction, -1.0, 1.0))) / 2.0
    column = np.zeros((k, k), np.float32)
    column[:, k // 2] = np.linspace(start, 1.0 - start, k)  # top (pointing to 90°) first
    turn = math.radians(90.0 - angle)  # clockwise on the image (y down) from the vertical to ``angle``
    c, cos, sin = (k - 1) / 2, math.cos(turn), math.sin(turn)
    rotation = np.array([[cos, -sin, c - cos * c + sin * c], [sin, cos, c - sin * c - cos * c]])
    kernel = cv2.warpAffine((column * 255).astype(np.uint8), rotation, (k, k), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(np.float32)
    if kernel.sum() == 0:
        kernel[k // 2, k // 2] = 1.0
    return kernel


MOTION_KERNELS = ("line", "imgaug")


def motion_blur(image: np.ndarray, length: int, angle: float, kernel: str = "line",
                direction: float = 0.0) -> np.ndarray:
    """Linear motion blur over ``length`` px at ``angle`` degrees (counter-clockwise from +x).

    ``kernel="line"``: an anti-aliased line of ``length`` px with equal weights. ``kernel="imgaug"``:
    imgaug's kernel (see :func:`imgaug_motion_kernel`), weighted along the line by ``direction``."""
    if kernel == "imgaug":
        return _convolve(image, imgaug_motion_kernel(length, angle, direction))
    if kernel != "line":
        raise ValueError(f"kernel must be one of {', '.join(MOTION_KERNELS)}, got {kernel!r}")
    if length <= 1:
        return image.copy()
    return _convolve(image, motion_kernel(length, angle))


class MotionBlur(OpSpec):
    """``kernel: imgaug`` uses imgaug's ``MotionBlur`` kernel (the authors' degrade.py): odd size, a
    line weighted linearly by a ``direction`` drawn in ``direction`` (default [-1, 1]), rotated with
    bilinear interpolation; it blurs more than the equal-weight ``line`` of the same length."""

    name = "motion_blur"
    schema = {
        "length": Range(1, 201, integer=True),
        "angle": Range(-360.0, 360.0, default=(0.0, 360.0)),
        "kernel": Choice(MOTION_KERNELS, optional=True),
        "direction": Range(-1.0, 1.0, optional=True),
    }
    apply = staticmethod(motion_blur)

    def check(self) -> None:
        if "direction" in self.args and self.args.get("kernel", "line") != "imgaug":
            raise ArgError("direction", "only used with kernel: imgaug")

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        params = {"length": self.draw(rng, "length"), "angle": round(float(self.draw(rng, "angle")), 2)}
        if self.args.get("kernel", "line") == "imgaug":
            bounds = self.args.get("direction", [-1.0, 1.0])
            params.update(kernel="imgaug", direction=self.schema["direction"].draw(rng, bounds))
        return params

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        return f"motion {params['length']}px {params['angle']:.0f}°"


def disk_kernel(radius: float) -> np.ndarray:
    """An anti-aliased filled disk of ``radius`` px (unnormalised; ``_convolve`` normalises).

    Each tap is the pixel's approximate coverage, ``clip(radius + 0.5 - distance, 0, 1)``: symmetric
    about the centre, with an area within ~1% of pi*radius**2. (OpenCV's anti-aliased ``circle`` is
    neither: off-centre for small radii and about half a pixel too large.)
    """
    c = max(1, math.ceil(radius + 0.5) - 1)
    y, x = np.mgrid[-c:c + 1, -c:c + 1]
    return np.clip(radius + 0.5 - np.hypot(x, y), 0, 1).astype(np.float32)


def defocus_blur(image: np.ndarray, radius: float) -> np.ndarray:
    """Out-of-focus blur: convolution with a disk of ``radius`` px."""
    if radius < 0.5:
        return image.copy()
    return _convolve(image, disk_kernel(radius))


class DefocusBlur(OpSpec):
    name = "defocus_blur"
    schema = {"radius": Range(0.0, 100.0)}
    apply = staticmethod(defocus_blur)

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        return {"radius": self.draw(rng, "radius")}

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        return f"defocus r{params['radius']:.1f}"
