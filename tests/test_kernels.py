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
