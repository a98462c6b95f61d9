"""Random-mode resize (Real-ESRGAN): up, down or keep with given probabilities, interpolation drawn too."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from facedeg.ops.args import ArgError, Choice, Number, Probs, Range
from facedeg.ops.base import INTERP_NAMES, INTERPOLATIONS, OpSpec

MODES = ("up", "down", "keep")


def random_resize(image: np.ndarray, scale: float, interpolation: str = "linear",
                  size: list[int] | None = None) -> np.ndarray:
    """Resize to ``size`` = [height, width] when given, else by ``scale`` (each side floored, at least 1 px)."""
    h, w = image.shape[:2]
    if size is None:
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        size = [max(1, int(h * scale)), max(1, int(w * scale))]
    if (size[0], size[1]) == (h, w):
        return image.copy()
    if min(size) < 1:
        raise ValueError(f"size must be at least 1x1, got {size}")
    out = cv2.resize(image, (size[1], size[0]), interpolation=INTERPOLATIONS[interpolation])
    return out.reshape(out.shape[0], out.shape[1], -1)


class RandomResize(OpSpec):
    """``probs`` of up/down/keep; up draws the factor from [1, range max], down from [range min, 1].

    With ``base`` set, the size is ``base`` × factor × the input (HQ) size (floored), whatever size the
    image has at that point: Real-ESRGAN's second stage resizes to (HQ / 4) × factor (``base: 0.25``).
    Without it, the factor scales the current image.
    """

    name = "random_resize"
    schema = {
        "probs": Probs(MODES, default=(1 / 3, 1 / 3, 1 / 3)),
        "range": Range(0.01, 16.0, default=(1.0, 1.0)),
        "interpolation": Choice(INTERP_NAMES, default=["area", "linear", "cubic"], multi=True),
        "base": Number(0.001, 16.0, optional=True),
    }
    apply = staticmethod(random_resize)

    def check(self) -> None:
        lo, hi = self.args["range"]
        if not lo <= 1 <= hi:
            raise ArgError("range", f"expected [min, max] with min <= 1 <= max (down from min, up to max), got [{lo:g}, {hi:g}]")

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        mode = MODES[self.schema["probs"].draw(rng, self.args["probs"])]
        lo, hi = self.args["range"]
        bounds = {"up": [1.0, hi], "down": [lo, 1.0], "keep": [1.0, 1.0]}[mode]
        scale = self.schema["range"].draw(rng, bounds)
        params: dict[str, Any] = {"scale": scale, "interpolation": self.draw(rng, "interpolation")}
        base = self.args.get("base")
        params["size"] = None if base is None else [max(1, int(n * base * scale)) for n in shape]
        return params

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        if params.get("size"):
            return f"resize {params['size'][1]}×{params['size'][0]} {params['interpolation']}"
        return f"resize ×{params['scale']:.2f} {params['interpolation']}"
