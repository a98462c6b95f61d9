"""The op table: one explicit mapping from recipe name to spec class (no registries)."""

from __future__ import annotations

from facedeg.ops.albu import Albumentations
from facedeg.ops.base import OpSpec
from facedeg.ops.blur import DefocusBlur, GaussianBlur, MotionBlur
from facedeg.ops.compress import Jpeg, Webp
from facedeg.ops.noise import GaussianNoise, LaplaceNoise, PoissonNoise
from facedeg.ops.resample import Downsample, Mosaic, Resize

OPS: dict[str, type[OpSpec]] = {
    spec.name: spec
    for spec in (
        Downsample, Resize, Mosaic,
        GaussianNoise, LaplaceNoise, PoissonNoise,
        GaussianBlur, MotionBlur, DefocusBlur,
        Jpeg, Webp,
        Albumentations,
    )
}

__all__ = ["OPS", "OpSpec"]
