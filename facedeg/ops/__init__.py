"""The op table: one explicit mapping from recipe name to spec class (no registries)."""

from __future__ import annotations

from facedeg.ops.albu import Albumentations
from facedeg.ops.base import OpSpec
from facedeg.ops.blur import DefocusBlur, GaussianBlur, MotionBlur
from facedeg.ops.color import ColorJitter, ColorShift, Grayscale, UsmSharpen
from facedeg.ops.compress import Jpeg, Webp
from facedeg.ops.kernels import KernelBlur, Sinc
from facedeg.ops.noise import GaussianNoise, LaplaceNoise, PoissonNoise
from facedeg.ops.resample import Downsample, Mosaic, Resize
from facedeg.ops.rescale import RandomResize

OPS: dict[str, type[OpSpec]] = {
    spec.name: spec
    for spec in (
        Downsample, Resize, Mosaic,
        GaussianNoise, LaplaceNoise, PoissonNoise,
        GaussianBlur, MotionBlur, DefocusBlur,
        Jpeg, Webp,
        Albumentations,
        KernelBlur, Sinc, RandomResize,
        ColorShift, ColorJitter, Grayscale, UsmSharpen,
    )
}

# Ops that change the image's geometry: they may act on the LQ only (``side: lq``), never on the HQ.
LQ_ONLY: frozenset[str] = frozenset({"downsample", "resize", "random_resize", "albumentations"})

__all__ = ["LQ_ONLY", "OPS", "OpSpec"]
