"""The paper recipes' op options against the authors' own degradations (issue 10, part 1).

The reference figures are mean PSNRs (dB) of LQ vs HQ over the 5 bundled faces at fixed parameters,
measured with the authors' ``degrade.py`` augmenters (github Lotayou/Face-Renovation, imgaug 0.4.0,
images read with cv2 as that script does) on this machine; the downsample, Gaussian and motion rows
are also quoted in issue 10. Our options must land within 0.2 dB of each.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from facedeg.ops import OPS
from facedeg.ops.blur import gaussian_blur, gaussian_kernel_size, imgaug_motion_kernel, motion_blur
from facedeg.ops.compress import imgaug_jpeg_quality, jpeg
from facedeg.ops.resample import downsample, mosaic
from facedeg.plan import Plan, Step
from facedeg.recipe import load_recipe
from facedeg.samples import sample_paths

TOLERANCE_DB = 0.2

# imgaug Resize(1/f) then Resize to 512 (bicubic both ways), f = 4, 6, 8.
AUTHORS_DOWNSAMPLE = {4: 31.43, 6: 28.06, 8: 25.98}
# imgaug GaussianBlur(sigma), sigma = 3, 5, 8.
AUTHORS_GAUSSIAN = {3.0: 29.74, 5.0: 27.01, 8.0: 24.19}
# imgaug MotionBlur(k, angle, direction), k = 10, 15, 20, averaged over angles 0/45/90/135 and
# directions -1/0/+1.
AUTHORS_MOTION = {10: 27.76, 15: 25.99, 20: 24.21}
# imgaug JpegCompression(compression), compression = 50, 70, 85 (quality 51, 31, 17).
AUTHORS_JPEG = {50: 35.57, 70: 33.85, 85: 31.53}


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sample_paths()]


def _mean_psnr(faces: list[np.ndarray], degrade) -> float:
    return float(np.mean([cv2.PSNR(f, degrade(f)) for f in faces]))


def _motion_mean(faces: list[np.ndarray], length: int) -> float:
    # imgaug's angle turns its vertical kernel clockwise; ours is counter-clockwise from +x. The set
    # 0/45/90/135 maps onto itself up to a half turn, which the symmetric direction set -1/0/+1 absorbs.
    return float(np.mean([_mean_psnr(faces, lambda f, a=a, d=d: motion_blur(f, length, a, "imgaug", d))
                          for a in (0.0, 45.0, 90.0, 135.0) for d in (-1.0, 0.0, 1.0)]))


CASES = (
    [(f"downsample {f}x", AUTHORS_DOWNSAMPLE[f], lambda fs, f=f: _mean_psnr(fs, lambda x: downsample(x, f, "cubic", "cubic")))
     for f in AUTHORS_DOWNSAMPLE]
    + [(f"gaussian σ{s:g}", AUTHORS_GAUSSIAN[s],
        lambda fs, s=s: _mean_psnr(fs, lambda x: gaussian_blur(x, s, s, 0.0, gaussian_kernel_size(s, 49, "imgaug"))))
       for s in AUTHORS_GAUSSIAN]
    + [(f"motion k{k}", AUTHORS_MOTION[k], lambda fs, k=k: _motion_mean(fs, k)) for k in AUTHORS_MOTION]
    + [(f"jpeg compression {c}", AUTHORS_JPEG[c], lambda fs, c=c: _mean_psnr(fs, lambda x: jpeg(x, imgaug_jpeg_quality(c))))
       for c in AUTHORS_JPEG]
)


@pytest.mark.parametrize(("label", "authors", "ours"), CASES, ids=[c[0] for c in CASES])
def test_fixed_parameter_means_match_the_authors(label: str, authors: float, ours, faces) -> None:
    value = ours(faces)
    assert abs(value - authors) <= TOLERANCE_DB, f"{label}: ours {value:.2f} dB vs authors {authors:.2f} dB"


def test_todays_defaults_would_miss_them(faces) -> None:
    """The defaults (area downsample, ±3σ Gaussian, equal-weight line) are what the issue measured as drift:
    the comparison above can tell them apart."""
    assert _mean_psnr(faces, lambda x: downsample(x, 6.0)) - AUTHORS_DOWNSAMPLE[6] > 0.5
    ksize = gaussian_kernel_size(5.0, 49)
    assert AUTHORS_GAUSSIAN[5.0] - _mean_psnr(faces, lambda x: gaussian_blur(x, 5.0, 5.0, 0.0, ksize)) > 1.0
    assert _mean_psnr(faces, lambda x: motion_blur(x, 15, 45.0)) - AUTHORS_MOTION[15] > 1.0


@pytest.mark.parametrize(("compression", "quality"), [(0, 100), (50, 51), (70, 31), (85, 17), (100, 2)])
def test_imgaug_jpeg_quality_mapping(compression: float, quality: int) -> None:
    assert imgaug_jpeg_quality(compression) == quality


@pytest.mark.parametrize(("sigma", "ksize"), [(0.5, 5), (2.0, 7), (3.0, 9), (4.9, 15), (5.0, 13), (8.0, 21), (30.0, 49)])
def test_imgaug_gaussian_kernel_size(sigma: float, ksize: int) -> None:
    assert gaussian_kernel_size(sigma, 49, "imgaug") == ksize


@pytest.mark.parametrize("length", [3, 10, 15, 20])
def test_imgaug_motion_kernel_shape_and_weights(length: int) -> None:
    k = length | 1
    vertical = imgaug_motion_kernel(length, 90.0, 0.0)  # no rotation: the column itself, 8-bit weights
    assert vertical.shape == (k, k)
    assert np.array_equal(np.nonzero(vertical)[1], np.full(k, k // 2)) and np.all(vertical[:, k // 2] == 127)
    tilted = imgaug_motion_kernel(length, 90.0, 1.0)[:, k // 2]  # all weight at the end pointing to 90° (top)
    assert tilted[0] == 255 and tilted[-1] == 0 and np.all(np.diff(tilted) <= 0)
    flipped = imgaug_motion_kernel(length, 270.0, 1.0)  # the same line seen from the other end
    assert np.allclose(flipped, imgaug_motion_kernel(length, 90.0, -1.0), atol=1)
    horizontal = imgaug_motion_kernel(length, 0.0, 0.0)
    assert np.allclose(horizontal, vertical.T, atol=1)


def test_mosaic_floor_truncates() -> None:
    image = np.array([[[0, 1, 2], [1, 2, 3]]], np.uint8)  # means 0.5, 1.5, 2.5 per channel
    assert mosaic(image, 2)[0, 0].tolist() == [1, 2, 3]  # nearest (halves up, as the integer division does)
    assert mosaic(image, 2, "floor")[0, 0].tolist() == [0, 1, 2]


def test_fraction_draw_favours_small_factors() -> None:
    spec = OPS["downsample"]({"scale": [4, 8], "draw": "fraction"})
    rng = np.random.default_rng(0)
    scales = [spec.sample(rng, (512, 512))["scale"] for _ in range(4000)]
    assert min(scales) >= 4 and max(scales) <= 8
    assert abs(np.median(scales) - 16 / 3) < 0.1  # the median of 1/U(1/8, 1/4)
    fractions = 1 / np.array(scales)
    assert abs(np.mean(fractions) - 0.1875) < 0.003  # uniform in the fraction


@pytest.mark.parametrize(("op", "args"), [
    ("downsample", {"scale": [4, 8]}),
    ("gaussian_blur", {"sigma": [3, 8], "max_kernel": 49}),
    ("motion_blur", {"length": [10, 20]}),
    ("jpeg", {"quality": [15, 50]}),
    ("mosaic", {"block": 16}),
])
def test_defaults_draw_what_they_drew_before(op: str, args: dict) -> None:
    """Without the new options an op's resolved arguments and sampled params keep their old keys (the
    gfpgan and codeformer recipes, and stored plans, are unchanged)."""
    spec = OPS[op](args)
    assert set(spec.to_dict()) == set(OPS[op].schema) - {"draw", "truncate", "kernel", "direction", "rounding",
                                                          "compression"} | set(args)
    params = spec.sample(np.random.default_rng(3), (64, 64))
    assert not set(params) & {"draw", "truncate", "kernel", "direction", "rounding", "compression"}


@pytest.mark.parametrize(("op", "args"), [
    ("downsample", {"scale": [4, 8], "draw": "fraction", "down": "cubic", "up": "cubic"}),
    ("gaussian_blur", {"sigma": [3, 8], "truncate": "imgaug", "max_kernel": 49}),
    ("motion_blur", {"length": [10, 20], "kernel": "imgaug", "direction": [-1, 1]}),
    ("motion_blur", {"length": [10, 20], "kernel": "imgaug"}),
    ("jpeg", {"compression": [50, 85]}),
    ("mosaic", {"block": 16, "rounding": "floor"}),
])
def test_new_options_replay_from_json(op: str, args: dict, small_face: np.ndarray) -> None:
    spec = OPS[op](args)
    outs = set()
    for seed in range(4):
        plan = Plan((Step(op, spec.sample(np.random.default_rng(seed), small_face.shape[:2])),), seed)
        out = plan.apply(small_face)
        replay = Plan.from_json(json.loads(json.dumps(plan.to_json())))
        assert np.array_equal(out, replay.apply(small_face))
        outs.add(out.tobytes())
    assert len(outs) > 1 or op == "mosaic"


@pytest.mark.parametrize("name", ["downsample", "blur", "jpeg", "mixed", "mosaic", "noise"])
def test_paper_recipes_say_where_they_come_from(name: str) -> None:
    assert "as in the authors'" in load_recipe(name).description


def test_motion_direction_is_drawn_per_image() -> None:
    spec = OPS["motion_blur"]({"length": [10, 20], "kernel": "imgaug"})
    rng = np.random.default_rng(0)
    directions = [spec.sample(rng, (64, 64))["direction"] for _ in range(200)]
    assert min(directions) >= -1 and max(directions) <= 1 and np.std(directions) > 0.4
    assert math.isclose(np.mean(directions), 0.0, abs_tol=0.15)
