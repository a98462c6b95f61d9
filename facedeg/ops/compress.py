"""Compression ops: JPEG and WebP round trips through OpenCV (RGB converted to the BGR it expects)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from facedeg.ops.args import ArgError, Range
from facedeg.ops.base import OpSpec


def _roundtrip(image: np.ndarray, ext: str, flag: int, quality: int) -> np.ndarray:
    gray = image.shape[2] == 1
    src = image if gray else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(ext, src, [flag, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV failed to encode {ext}")
    out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    return out[..., None] if gray else cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG encode at ``quality`` (1-100, libjpeg-turbo, 4:2:0) and decode."""
    return _roundtrip(image, ".jpg", cv2.IMWRITE_JPEG_QUALITY, quality)


def webp(image: np.ndarray, quality: int) -> np.ndarray:
    """WebP encode at ``quality`` (1-100, lossy) and decode."""
    return _roundtrip(image, ".webp", cv2.IMWRITE_WEBP_QUALITY, quality)


class _Codec(OpSpec):
    """Shared spec of the lossy codecs: one integer quality range."""

    schema = {"quality": Range(1, 100, integer=True)}

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        return {"quality": self.draw(rng, "quality")}



def imgaug_jpeg_quality(compression: float) -> int:
    """The encoder quality for imgaug's ``JpegCompression`` ``compression`` degree (0-100, higher is
    worse): ``round(1 + 99 * (1 - compression / 101))``, clipped to 1-100. Its (50, 85) is quality 17-51."""
    return int(np.clip(np.round(1 + 99 * (1 - compression / 101)), 1, 100))


class Jpeg(_Codec):
    """``quality`` (1-100) is drawn uniformly as an integer; or give ``compression`` instead, imgaug's
    degree (0-100) drawn uniformly as a real number and mapped by :func:`imgaug_jpeg_quality` (the
    authors' degrade.py)."""

    name = "jpeg"
    schema = {"quality": Range(1, 100, integer=True, optional=True), "compression": Range(0.0, 100.0, optional=True)}
    apply = staticmethod(jpeg)

    def check(self) -> None:
        if "quality" in self.args and "compression" in self.args:
            raise ArgError("compression", "give quality or compression, not both")
        if "quality" not in self.args and "compression" not in self.args:
            raise ArgError("quality", "missing required argument (or give compression, imgaug's 0-100 degree)")

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        if "quality" in self.args:
            return {"quality": self.draw(rng, "quality")}
        return {"quality": imgaug_jpeg_quality(self.draw(rng, "compression"))}

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        return f"jpeg q{params['quality']}"


class Webp(_Codec):
    name = "webp"
    apply = staticmethod(webp)

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        return f"webp q{params['quality']}"
