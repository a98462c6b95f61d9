"""Colour ops: GFPGAN's RGB shift and brightness/contrast/saturation/hue jitter, grayscale, USM sharpening.

The jitter factors mean what torchvision's ``adjust_*`` functions (which GFPGAN calls) mean:
brightness scales the values; contrast blends with the mean gray level of the image; saturation
blends each pixel with its own gray level; hue rotates the hue by ``hue`` turns (−0.5..0.5).
Gray is ITU-R 601 luma (OpenCV's RGB2GRAY weights).
"""

from __future__ import annotations

import functools
from typing import Any

import cv2
import numpy as np

from facedeg.ops.args import ArgError, Number, Range
from facedeg.ops.base import OpSpec, as_uint8

JITTERS = ("brightness", "contrast", "saturation", "hue")
_BORDER = cv2.BORDER_REFLECT_101


def color_shift(image: np.ndarray, shift: list[float]) -> np.ndarray:
    """Add one offset per channel (R, G, B; on the 0-255 scale), rounded and saturated."""
    if len(shift) != image.shape[2]:
        raise ValueError(f"expected {image.shape[2]} channel offsets, got {len(shift)}")
    lut = as_uint8(np.arange(256, dtype=np.float32)[:, None] + np.asarray(shift, np.float32))
    return cv2.LUT(image, lut.reshape(256, 1, -1)).reshape(image.shape)  # a table per channel: ~20x faster


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def color_jitter(image: np.ndarray, order: list[str], brightness: float = 1.0, contrast: float = 1.0,
                 saturation: float = 1.0, hue: float = 0.0) -> np.ndarray:
    """Apply the jitters named in ``order``, in that order, on a float copy; round once at the end."""
    out = image.astype(np.float32) * np.float32(1 / 255)
    for name in order:
        if name == "brightness":
            out = np.clip(out * np.float32(brightness), 0, 1)
        elif name == "contrast":
            mean = np.float32(_gray(out).mean())
            out = np.clip(out * np.float32(contrast) + mean * np.float32(1 - contrast), 0, 1)
        elif name == "saturation":
            gray = _gray(out)[..., None]
            out = np.clip(out * np.float32(saturation) + gray * np.float32(1 - saturation), 0, 1)
        elif name == "hue":
            hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)  # float input: H in degrees [0, 360)
            hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(hue * 360), 360)
            out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        else:
            raise ValueError(f"unknown jitter {name!r} (jitters: {', '.join(JITTERS)})")
    return as_uint8(out * 255)


def grayscale(image: np.ndarray) -> np.ndarray:
    """Luma replicated to three channels."""
    return cv2.cvtColor(_gray(image), cv2.COLOR_GRAY2RGB)


@functools.lru_cache(maxsize=8)
def _usm_kernel(radius: int) -> np.ndarray:
    return cv2.getGaussianKernel(radius, 0).astype(np.float32)  # σ from the size, as OpenCV derives it


def usm_sharpen(image: np.ndarray, weight: float = 0.5, radius: int = 51, threshold: float = 10.0) -> np.ndarray:
    """Unsharp mask with a soft edge mask (BasicSR's ``USMSharp``, which Real-ESRGAN applies to its targets).

    residual = image − Gaussian(image); where |residual| > ``threshold`` (0-255 scale) the mask is 1;
    the mask is blurred with the same Gaussian; out = mask·clip(image + weight·residual) + (1 − mask)·image.
    """
    if radius < 1 or radius % 2 == 0:
        raise ValueError(f"radius must be odd and positive, got {radius}")
    g = _usm_kernel(radius)
    # The two blurs run on 8-bit data (OpenCV's uint8 path is ~3x faster than float32 with 51 taps);
    # rounding the blur moves the result by at most a quarter of a gray level.
    img = image.astype(np.float32)
    residual = img - cv2.sepFilter2D(image, -1, g, g, borderType=_BORDER).reshape(image.shape)
    mask = np.where(np.abs(residual) > np.float32(threshold), np.uint8(255), np.uint8(0))
    soft = cv2.sepFilter2D(mask, -1, g, g, borderType=_BORDER).reshape(image.shape) * np.float32(1 / 255)
    sharp = np.clip(img + np.float32(weight) * residual, 0, 255)
    return as_uint8(img + soft * (sharp - img))


class ColorShift(OpSpec):
    """GFPGAN's colour jitter: each channel shifted by its own offset drawn from [−shift, shift]."""

    name = "color_shift"
    schema = {"shift": Number(0.0, 255.0)}
    apply = staticmethod(color_shift)

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        s = self.args["shift"]
        return {"shift": [round(float(v), 3) for v in rng.uniform(-s, s, 3)]}

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        return "shift " + "/".join(f"{v:+.0f}" for v in params["shift"])


class ColorJitter(OpSpec):
    """Brightness, contrast, saturation (factors) and hue (turns), each optional, in a random order."""

    name = "color_jitter"
    schema = {
        "brightness": Range(0.0, 10.0, optional=True),
        "contrast": Range(0.0, 10.0, optional=True),
        "saturation": Range(0.0, 10.0, optional=True),
        "hue": Range(-0.5, 0.5, optional=True),
    }
    apply = staticmethod(color_jitter)

    def check(self) -> None:
        if not any(k in self.args for k in JITTERS):
            raise ArgError("brightness", f"give at least one of {', '.join(JITTERS)}")

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        order = [JITTERS[int(i)] for i in rng.permutation(len(JITTERS)) if JITTERS[int(i)] in self.args]
        return {"order": order, **{k: self.draw(rng, k) for k in order}}

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        return "jitter " + " ".join(f"{k[0]}{params[k]:.2f}" for k in params["order"])


class Grayscale(OpSpec):
    name = "grayscale"
    schema: dict = {}
    apply = staticmethod(grayscale)

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        return {}

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        return "gray"


class UsmSharpen(OpSpec):
    name = "usm_sharpen"
    schema = {
        "weight": Range(0.0, 10.0, default=(0.5, 0.5)),
        "radius": Number(1, 201, default=51, integer=True),
        "threshold": Number(0.0, 255.0, default=10.0),
    }
    apply = staticmethod(usm_sharpen)

    def check(self) -> None:
        if self.args["radius"] % 2 == 0:
            raise ArgError("radius", f"expected an odd kernel size, got {self.args['radius']}")

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        return {"weight": self.draw(rng, "weight"), "radius": self.args["radius"], "threshold": self.args["threshold"]}

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        return f"usm {params['weight']:.2f}"
