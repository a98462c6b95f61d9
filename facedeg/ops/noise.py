"""Additive noise ops on the 0-255 scale. Each noise pattern comes from the seed in its params."""

from __future__ import annotations

import functools
import math
import statistics
from typing import Any

import cv2
import numpy as np

from facedeg.ops.args import ArgError, Choice, Number, Range
from facedeg.ops.base import OpSpec, as_uint8
from facedeg.seeds import draw_seed, random_u32, rng_from

# Noise is drawn by inverse-CDF lookup: each pixel and channel takes an independent 16-bit uniform
# index into a table of the distribution's quantiles at (i + 0.5) / 65536. That is the exact
# distribution quantised to 1/65536 in probability (Gaussian tails clipped beyond 4.3 sigma), with an
# independent draw per pixel, and it is ~8x faster than numpy's normal sampler. (It is not
# albumentations' GaussNoise shortcut, which reuses a small pool of whole noise fields.)
_LEVELS = 1 << 16


@functools.lru_cache(maxsize=1)
def _normal_table() -> np.ndarray:
    inv = statistics.NormalDist().inv_cdf
    return np.array([inv((i + 0.5) / _LEVELS) for i in range(_LEVELS)], np.float32)


@functools.lru_cache(maxsize=1)
def _laplace_table() -> np.ndarray:
    u = (np.arange(_LEVELS, dtype=np.float64) + 0.5) / _LEVELS
    return np.where(u < 0.5, np.log(2 * u), -np.log(2 * (1 - u))).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _log_factorials(n: int = 1024) -> np.ndarray:
    return np.array([math.lgamma(k + 1) for k in range(n)])


def _poisson_table(lam: float) -> np.ndarray:
    """Signed Poisson(lam) quantiles in one 16-bit table: 32,768 positive levels, then their negatives."""
    half = _LEVELS // 2
    if lam <= 0:
        return np.zeros(_LEVELS, np.float32)
    k = np.arange(min(int(lam + 12 * math.sqrt(lam) + 12), 1024))
    cdf = np.cumsum(np.exp(k * math.log(lam) - lam - _log_factorials()[: len(k)]))
    magnitude = np.minimum(np.searchsorted(cdf, (np.arange(half) + 0.5) / half), len(k) - 1).astype(np.float32)
    return np.concatenate([magnitude, -magnitude])


# Shot noise by the alias method (Walker/Vose): for each 8-bit level v, Poisson(v·256/255) over the
# 256 counts of a window around its mean (the mass outside it is below 1e-15), split into 256 equally
# likely columns that each hold a count, an alias count and a 24-bit threshold. One 32-bit uniform per
# sample picks a column (8 bits) and compares the rest with the threshold: the exact distribution up
# to 2^-24 in probability, ~10x faster than numpy's Poisson sampler. Built once, in pure Python
# floating point (no vectorised libm whose last bit may vary between CPUs).
_ALIAS = 256


@functools.lru_cache(maxsize=1)
def _shot_alias() -> tuple[np.ndarray, np.ndarray]:
    """(24-bit thresholds [v, column], counts [v, column, {own, alias}]) for the 256 levels."""
    thresholds = np.empty((256, _ALIAS), np.uint32)
    counts = np.empty((256, _ALIAS, 2), np.float32)
    for v in range(256):
        lam = v * 256 / 255
        lo = max(0, math.floor(lam - _ALIAS / 2))
        ks = range(lo, lo + _ALIAS)
        pmf = [math.exp(k * math.log(lam) - lam - math.lgamma(k + 1)) for k in ks] if lam else [1.0] + [0.0] * (_ALIAS - 1)
        total = math.fsum(pmf)
        q = [p * _ALIAS / total for p in pmf]
        keep, alias = [1.0] * _ALIAS, list(range(_ALIAS))
        small = [i for i in range(_ALIAS) if q[i] < 1]
        large = [i for i in range(_ALIAS) if q[i] >= 1]
        while small and large:
            i, j = small.pop(), large[-1]
            keep[i], alias[i] = q[i], j
            q[j] -= 1 - q[i]
            if q[j] < 1:
                small.append(large.pop())
        thresholds[v] = [min(round(p * (1 << 24)), 1 << 24) for p in keep]
        counts[v, :, 0] = list(ks)
        counts[v, :, 1] = [lo + a for a in alias]
    return thresholds.reshape(-1), counts.reshape(-1)


def _shot_index(levels: np.ndarray, seed: int) -> np.ndarray:
    """Per element of the uint8 ``levels``, an index into ``_shot_alias()[1]``: one Poisson draw each."""
    thresholds, _ = _shot_alias()
    u = random_u32(seed, levels.size)
    idx = levels.reshape(-1).astype(np.uint32)
    idx <<= 8
    idx |= u & np.uint32(_ALIAS - 1)
    u >>= 8
    alias = u >= thresholds.take(idx)
    idx <<= 1
    idx |= alias
    return idx


@functools.lru_cache(maxsize=1)
def _shot_levels() -> tuple[np.ndarray, np.ndarray]:
    """Each entry's level v, and its count's deviation (count·255/256 − v), float32."""
    v = np.repeat(np.arange(256, dtype=np.float32), 2 * _ALIAS)
    return v, _shot_alias()[1] * np.float32(255 / 256) - v


def _draw(table: np.ndarray, seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """float32 noise of ``shape``: independent 16-bit uniform indices into ``table`` (65,536 entries)."""
    n = math.prod(shape)
    idx = random_u32(seed, (n + 1) // 2).view(np.uint16)[:n]
    return np.take(table, idx).reshape(shape)


def _add(image: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """image + noise, rounded and saturated to uint8 (noise: float32, HxWx1 or HxWxC)."""
    if noise.shape[2] != image.shape[2]:  # one gray field for every channel
        noise = cv2.cvtColor(noise, cv2.COLOR_GRAY2RGB) if image.shape[2] == 3 else np.repeat(noise, image.shape[2], axis=2)
    return cv2.add(image, noise, dtype=cv2.CV_8U).reshape(image.shape)


def _noise_shape(image: np.ndarray, gray: bool) -> tuple[int, int, int]:
    return (image.shape[0], image.shape[1], 1 if gray else image.shape[2])


def gaussian_noise(image: np.ndarray, sigma: float, seed: int, gray: bool = False) -> np.ndarray:
    """Add N(0, sigma²) noise, per channel (or one gray field for all channels)."""
    return _add(image, _draw(_normal_table() * np.float32(sigma), seed, _noise_shape(image, gray)))


def laplace_noise(image: np.ndarray, scale: float, seed: int, gray: bool = False) -> np.ndarray:
    """Add Laplace(0, scale) noise, per channel (or gray)."""
    return _add(image, _draw(_laplace_table() * np.float32(scale), seed, _noise_shape(image, gray)))


def _shot_noise(image: np.ndarray, seed: int, scale: float, gray: bool) -> np.ndarray:
    levels, deviation = _shot_levels()
    noise = deviation * np.float32(scale)  # what each (level, column, side) entry adds
    if gray:
        luma = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        field = noise.take(_shot_index(luma, seed)).reshape(luma.shape)
        return _add(image, field[..., None])
    out = cv2.add(levels, noise, dtype=cv2.CV_8U).reshape(-1)  # each entry's output level, rounded and saturated
    return out.take(_shot_index(image, seed)).reshape(image.shape)


def poisson_noise(image: np.ndarray, seed: int, lam: float | None = None, scale: float | None = None,
                  gray: bool = False, sampler: str = "numpy") -> np.ndarray:
    """Poisson noise in one of two forms.

    ``lam``: the HiFaceGAN paper's form, Poisson(lam) magnitudes with a random sign, added per pixel.
    ``scale``: signal-dependent shot noise (8-bit photon counts), its deviation multiplied by ``scale``;
    ``sampler`` ``table`` draws the counts by the alias method (the same distribution, ~10x faster),
    ``numpy`` with numpy's Poisson sampler (the default, so plans made before the table keep their bytes).
    """
    shape = _noise_shape(image, gray)
    if lam is not None:
        return _add(image, _draw(_poisson_table(lam), seed, shape))
    if scale is None:
        raise ValueError("poisson_noise needs lam or scale")
    if sampler == "table":
        return _shot_noise(image, seed, scale, gray)
    if sampler != "numpy":
        raise ValueError(f"unknown sampler {sampler!r} (samplers: numpy, table)")
    base = image.astype(np.float32)
    if gray:
        base = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)[..., None]
    counts = rng_from(seed).poisson(base * (256 / 255)).astype(np.float32) * np.float32(255 / 256)
    return as_uint8(image.astype(np.float32) + (counts - base) * np.float32(scale))


class _Noise(OpSpec):
    def _gray(self, rng: np.random.Generator) -> bool:
        return bool(rng.random() < self.args["gray_prob"]) if self.args["gray_prob"] > 0 else False


class GaussianNoise(_Noise):
    name = "gaussian_noise"
    schema = {"sigma": Range(0.0, 255.0), "gray_prob": Number(0.0, 1.0, default=0.0)}
    apply = staticmethod(gaussian_noise)

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        return {"sigma": self.draw(rng, "sigma"), "gray": self._gray(rng), "seed": draw_seed(rng)}

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        return f"gauss σ{params['sigma']:.0f}" + (" gray" if params["gray"] else "")


class LaplaceNoise(_Noise):
    name = "laplace_noise"
    schema = {"scale": Range(0.0, 255.0), "gray_prob": Number(0.0, 1.0, default=0.0)}
    apply = staticmethod(laplace_noise)

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        return {"scale": self.draw(rng, "scale"), "gray": self._gray(rng), "seed": draw_seed(rng)}

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        return f"laplace b{params['scale']:.0f}" + (" gray" if params["gray"] else "")


class PoissonNoise(_Noise):
    name = "poisson_noise"
    schema = {
        "lam": Range(0.0, 255.0, optional=True),
        "scale": Range(0.0, 20.0, optional=True),
        "gray_prob": Number(0.0, 1.0, default=0.0),
        "sampler": Choice(("numpy", "table"), optional=True),
    }
    apply = staticmethod(poisson_noise)

    def check(self) -> None:
        if ("lam" in self.args) == ("scale" in self.args):
            raise ArgError("lam", "give exactly one of lam (paper form) or scale (shot noise)")
        if "lam" in self.args and "sampler" in self.args:
            raise ArgError("sampler", "applies to the shot-noise form (scale) only; lam always uses its table")

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        form = "lam" if "lam" in self.args else "scale"
        params = {form: self.draw(rng, form), "gray": self._gray(rng), "seed": draw_seed(rng)}
        if self.args.get("sampler", "numpy") != "numpy":  # only when set: older plans keep their bytes
            params["sampler"] = self.args["sampler"]
        return params

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        value = f"λ{params['lam']:.0f}" if params.get("lam") is not None else f"shot×{params['scale']:.2f}"
        return f"poisson {value}" + (" gray" if params["gray"] else "")
