"""Resampling ops: downsample (and back), resize to a fixed size, mosaic."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from facedeg.ops.args import Choice, Flag, Range, Size
from facedeg.ops.base import INTERP_NAMES, INTERPOLATIONS, OpSpec


def downsample(image: np.ndarray, scale: float, down: str = "area", up: str = "cubic",
               keep_size: bool = True) -> np.ndarray:
    """Shrink by ``scale`` with ``down`` interpolation, then (unless ``keep_size`` is false) back with ``up``."""
    h, w = image.shape[:2]
    small = (max(1, round(w / scale)), max(1, round(h / scale)))
    out = cv2.resize(image, small, interpolation=INTERPOLATIONS[down])
    if keep_size:
        out = cv2.resize(out, (w, h), interpolation=INTERPOLATIONS[up])
    return out.reshape(out.shape[0], out.shape[1], -1)


SCALE_DRAWS = ("factor", "fraction")


class Downsample(OpSpec):
    """``draw: factor`` (default) draws the scale factor uniformly in ``scale``; ``draw: fraction`` draws
    the size fraction 1/scale uniformly instead (imgaug's ``Resize((a, b))``, the authors' degrade.py),
    which favours the smaller factors: over [4, 8] the median factor is 5.33, not 6."""

    name = "downsample"
    schema = {
        "scale": Range(0.5, 64.0),
        "down": Choice(INTERP_NAMES, default="area", multi=True),
        "up": Choice(INTERP_NAMES, default="cubic", multi=True),
        "keep_size": Flag(default=True),
        "draw": Choice(SCALE_DRAWS, optional=True),
    }
    apply = staticmethod(downsample)

    def _scale(self, rng: np.random.Generator) -> float:
        lo, hi = self.args["scale"]
        if self.args.get("draw", "factor") == "factor" or lo == hi:
            return self.draw(rng, "scale")
        return round(1.0 / float(rng.uniform(1.0 / hi, 1.0 / lo)), 4)

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        return {"scale": self._scale(rng), "down": self.draw(rng, "down"),
                "up": self.draw(rng, "up"), "keep_size": self.args["keep_size"]}

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        return f"down {params['scale']:.1f}×"


def resize(image: np.ndarray, size: list[int], interpolation: str = "area") -> np.ndarray:
    """Resize to ``size`` = [height, width]."""
    out = cv2.resize(image, (size[1], size[0]), interpolation=INTERPOLATIONS[interpolation])
    return out.reshape(out.shape[0], out.shape[1], -1)


class Resize(OpSpec):
    name = "resize"
    schema = {"size": Size(), "interpolation": Choice(INTERP_NAMES, default="area", multi=True)}
    apply = staticmethod(resize)

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        size = self.args["size"]
        return {"size": list(shape) if size == "input" else list(size), "interpolation": self.draw(rng, "interpolation")}

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        return f"resize {params['size'][1]}×{params['size'][0]}"


MEAN_ROUNDINGS = ("nearest", "floor")


def mosaic(image: np.ndarray, block: int, rounding: str = "nearest") -> np.ndarray:
    """Replace each ``block``×``block`` tile (edge tiles may be smaller) by its mean colour, rounded to
    the nearest integer or (``rounding="floor"``, the authors' BasicSR port) truncated."""
    h, w = image.shape[:2]
    rows, cols = np.arange(0, h, block), np.arange(0, w, block)
    sums = np.add.reduceat(np.add.reduceat(image.astype(np.uint32), rows, axis=0), cols, axis=1)
    counts = np.diff(np.append(rows, h))[:, None, None] * np.diff(np.append(cols, w))[None, :, None]
    if rounding not in MEAN_ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(MEAN_ROUNDINGS)}, got {rounding!r}")
    half = counts // 2 if rounding == "nearest" else 0
    means = ((sums + half) // counts).astype(np.uint8)
    out = np.repeat(np.repeat(means, block, axis=0)[:h], block, axis=1)[:, :w]
    return np.ascontiguousarray(out)  # cropped edge blocks leave a strided view


class Mosaic(OpSpec):
    name = "mosaic"
    schema = {"block": Range(1, 512, integer=True), "rounding": Choice(MEAN_ROUNDINGS, optional=True)}
    apply = staticmethod(mosaic)

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        params: dict[str, Any] = {"block": self.draw(rng, "block")}
        if self.args.get("rounding", "nearest") != "nearest":
            params["rounding"] = self.args["rounding"]
        return params

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        return f"mosaic {params['block']}px"
