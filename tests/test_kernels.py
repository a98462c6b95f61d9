"""Real-ESRGAN kernels against BasicSR's own, and the size/sides/scale rules of the new ops.

``tests/data/basicsr_kernels.json`` holds kernels computed by BasicSR's ``basicsr/data/degradations.py``
(XPixelGroup/BasicSR @8d56e3a: ``bivariate_Gaussian``, ``bivariate_generalized_Gaussian``,
``bivariate_plateau``, ``circular_lowpass_kernel``) for the parameters listed with each, run outside
this repository: full kernels up to 9x9; for larger ones the centre row, a quarter row, both diagonals,
the sum of squares and an index-weighted sum.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facedeg.ops.kernels import blur_kernel, sinc_kernel

REFERENCE = json.loads((Path(__file__).parent / "data" / "basicsr_kernels.json").read_text())


def _kernel(params: dict) -> np.ndarray:
    if params["kind"] == "sinc":
        k = sinc_kernel(params["size"], params["omega"])
        pad = (params.get("pad_to", 0) - params["size"]) // 2
        return np.pad(k, pad) if pad > 0 else k
    return blur_kernel(params["kind"], params["size"], params["sigma_x"], params["sigma_y"], params["theta"],
                       params.get("beta", 1.0))


@pytest.mark.parametrize("ref", REFERENCE, ids=[r["name"] for r in REFERENCE])
def test_kernel_equals_basicsr(ref: dict) -> None:
    k = _kernel(ref["params"])
    n = k.shape[0]
    assert abs(k.sum() - 1) < 1e-12
    if "full" in ref:
        assert np.abs(k - np.array(ref["full"])).max() <= 1e-6
        return
    c = n // 2
    for got, want in ((k[c], ref["row_c"]), (k[c // 2], ref["row_q"]), (np.diag(k), ref["diag"]),
                      (np.diag(k[::-1]), ref["anti"])):
        assert np.abs(got - np.array(want)).max() <= 1e-6
    assert (k ** 2).sum() == pytest.approx(ref["sumsq"], rel=1e-7)
    assert (k * np.arange(n * n).reshape(n, n)).sum() == pytest.approx(ref["wsum"], rel=1e-7)


def test_rotation_turns_the_kernel() -> None:
    """A kernel long along x, turned by 90°, is the same kernel long along y (θ in radians)."""
    a = blur_kernel("aniso", 15, 3.0, 1.0, 0.0)
    b = blur_kernel("aniso", 15, 3.0, 1.0, np.pi / 2)
    assert np.abs(a - b.T).max() < 1e-12 and np.abs(a - b).max() > 1e-3


# ---------------------------------------------------------------- applying kernels

_APPLY_TABLE = [  # (what, kernel): each of correlate's three ways appears below
    ("iso k7", lambda: blur_kernel("iso", 7, 1.2, 1.2, 0.0)),
    ("aniso k21 thin diagonal", lambda: blur_kernel("aniso", 21, 3.0, 0.2, 0.785)),
    ("aniso k9", lambda: blur_kernel("aniso", 9, 2.5, 0.6, 1.1)),
    ("aniso k21 narrow (trimmed)", lambda: blur_kernel("aniso", 21, 0.8, 0.4, -0.4)),
    ("generalized k15", lambda: blur_kernel("generalized_aniso", 15, 2.0, 1.0, 0.3, 0.6)),
    ("plateau k19", lambda: blur_kernel("plateau_iso", 19, 1.5, 1.5, 0.0, 1.2)),
    ("sinc k21 low cutoff", lambda: sinc_kernel(21, 0.7)),
    ("sinc k7", lambda: sinc_kernel(7, 2.0)),
    ("1x1", lambda: np.ones((1, 1))),
]


@pytest.mark.parametrize("shape", [(37, 53, 3), (130, 96, 3)])
def test_correlate_equals_the_direct_float64_correlation(shape, face) -> None:
    """Whichever way correlate takes (separable terms, direct, FFT), its float result is the plain 2-D
    correlation (reflect-101) to within 255·TOLERANCE, the bound its trimming and truncation promise."""
    from facedeg.ops.correlate import TOLERANCE, correlate, way
    img = cv2.resize(face, shape[1::-1], interpolation=cv2.INTER_AREA)
    ways = set()
    for what, make in _APPLY_TABLE:
        k = make()
        ways.add(way(k).how)
        want = cv2.filter2D(img.astype(np.float64), -1, k, borderType=cv2.BORDER_REFLECT_101)
        got = correlate(img, k)
        assert got.dtype == np.float32 and got.shape == img.shape, what
        assert np.abs(got - want).max() <= 255 * TOLERANCE + 2e-3, what
    assert ways == {"separable", "direct", "fft"}


def test_kernel_ops_round_the_exact_correlation(face) -> None:
    """kernel_blur and sinc equal the float64 correlation rounded, but for pixels within float error
    of a .5 boundary."""
    from facedeg.ops.kernels import kernel_blur, sinc_filter
    cases = [(lambda im: kernel_blur(im, "aniso", 21, 3.0, 0.2, 0.785), blur_kernel("aniso", 21, 3.0, 0.2, 0.785)),
             (lambda im: kernel_blur(im, "plateau_iso", 19, 1.5, 1.5, 0.0, 1.2), blur_kernel("plateau_iso", 19, 1.5, 1.5, 0.0, 1.2)),
             (lambda im: sinc_filter(im, 21, 0.7), sinc_kernel(21, 0.7))]
    for apply, k in cases:
        want = np.clip(np.rint(cv2.filter2D(face.astype(np.float64), -1, k, borderType=cv2.BORDER_REFLECT_101)), 0, 255)
        diff = np.abs(apply(face).astype(np.float64) - want)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def _basicsr_usm(img: np.ndarray, weight: float, radius: int, threshold: float) -> np.ndarray:
    """BasicSR's usm_sharp formula in float64 with the direct Gaussian (cv2.GaussianBlur, reflect-101)."""
    f = img.astype(np.float64) / 255
    blur = cv2.GaussianBlur(f, (radius, radius), 0, borderType=cv2.BORDER_REFLECT_101)
    residual = f - blur
    mask = (np.abs(residual) * 255 > threshold).astype(np.float64)
    soft = cv2.GaussianBlur(mask, (radius, radius), 0, borderType=cv2.BORDER_REFLECT_101)
    sharp = np.clip(f + weight * residual, 0, 1)
    return np.clip(np.rint((soft * sharp + (1 - soft) * f) * 255), 0, 255)


@pytest.mark.parametrize("radius, weight", [(51, 0.5), (21, 0.5), (11, 1.0), (101, 0.3)])
def test_usm_sharpen_matches_basicsr(radius: int, weight: float) -> None:
    """The pyramid Gaussian (radius ≥ 21) and the direct one (narrow radii) give BasicSR's USM to one
    gray level, on a few percent of pixels at most; also at odd and tiny sizes."""
    from conftest import load_face

    from facedeg.ops.color import usm_sharpen
    rng = np.random.default_rng(radius)
    images = [load_face(1), load_face(2, 200), rng.integers(0, 256, (33, 17, 3), dtype=np.uint8),
              rng.integers(0, 256, (2, 3, 3), dtype=np.uint8)]
    for img in images:
        diff = np.abs(usm_sharpen(img, weight, radius, 10.0).astype(np.float64) - _basicsr_usm(img, weight, radius, 10.0))
        assert diff.max() <= 1 and (diff > 0).sum() <= max(1, 0.05 * diff.size), img.shape
