"""Op contract tests, driven by one table of every op with example recipe arguments."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facedeg.ops import OPS
from facedeg.ops.blur import defocus_blur, gaussian_blur, motion_blur
from facedeg.ops.compress import jpeg, webp
from facedeg.ops.kernels import KERNEL_KINDS
from facedeg.ops.noise import gaussian_noise, laplace_noise, poisson_noise
from facedeg.ops.resample import downsample, mosaic
from facedeg.plan import Plan, Step

# One entry per op: recipe arguments that exercise it.
OP_TABLE: dict[str, dict] = {
    "downsample": {"scale": [2, 6]},
    "resize": {"size": [40, 56], "interpolation": "cubic"},
    "mosaic": {"block": [4, 12]},
    "gaussian_noise": {"sigma": [5, 30], "gray_prob": 0.5},
    "laplace_noise": {"scale": [5, 30]},
    "poisson_noise": {"lam": [15, 30]},
    "gaussian_blur": {"sigma": [0.5, 4], "anisotropic_prob": 0.5},
    "motion_blur": {"length": [3, 15]},
    "defocus_blur": {"radius": [1, 5]},
    "jpeg": {"quality": [10, 90]},
    "webp": {"quality": [10, 90]},
    "albumentations": {"transform": "RandomBrightnessContrast", "args": {"brightness_limit": 0.3}},
    "kernel_blur": {"kinds": list(KERNEL_KINDS), "probs": [0.2, 0.2, 0.15, 0.15, 0.15, 0.15], "sigma": [0.3, 3],
                    "size": [3, 21]},
    "sinc": {"size": [7, 21], "omega": [0.6, 3.14159]},
    "random_resize": {"probs": [0.3, 0.4, 0.3], "range": [0.3, 1.5]},
    "color_shift": {"shift": 20},
    "color_jitter": {"brightness": [0.5, 1.5], "contrast": [0.5, 1.5], "saturation": [0, 1.5], "hue": [-0.1, 0.1]},
    "grayscale": {},
    "usm_sharpen": {"weight": [0.3, 1.0]},
}


def _expected_shape(name: str, params: dict, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The output shape of a one-step plan: ops keep the size, except resize and random_resize."""
    if name == "resize":
        return (*params["size"], 3)
    if name == "random_resize":
        return (max(1, int(shape[0] * params["scale"])), max(1, int(shape[1] * params["scale"])), 3)
    return shape


def test_table_covers_every_op() -> None:
    assert set(OP_TABLE) == set(OPS)


def _plan(name: str, seed: int, shape: tuple[int, int]) -> Plan:
    spec = OPS[name](OP_TABLE[name])
    return Plan((Step(name, spec.sample(np.random.default_rng(seed), shape)),), seed)


@pytest.mark.parametrize("name", sorted(OP_TABLE))
def test_contract(name: str, small_face: np.ndarray) -> None:
    plan = _plan(name, 1, small_face.shape[:2])
    before = small_face.copy()
    out = plan.apply(small_face)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    assert out.shape == _expected_shape(name, plan.steps[0].params, small_face.shape)
    assert np.array_equal(small_face, before), "ops must not modify their input"
    # Same plan => same bytes; JSON round trip replays bit for bit.
    assert np.array_equal(out, plan.apply(small_face))
    assert np.array_equal(out, Plan.from_json(plan.to_json()).apply(small_face))
    # Params are JSON values.
    import json
    assert json.loads(json.dumps(plan.to_json())) == plan.to_json()


@pytest.mark.parametrize("name", sorted(OP_TABLE))
def test_different_seeds_differ(name: str, small_face: np.ndarray) -> None:
    outs = {_plan(name, s, small_face.shape[:2]).apply(small_face).tobytes() for s in range(6)}
    if name not in ("resize", "grayscale"):  # nothing random: a fixed size and interpolation; gray
        assert len(outs) > 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(OP_TABLE)), h=st.integers(1, 48), w=st.integers(1, 48),
       seed=st.integers(0, 2**32), fill=st.integers(0, 255))
def test_odd_sizes(name: str, h: int, w: int, seed: int, fill: int) -> None:
    rng = np.random.default_rng(seed)
    image = np.clip(rng.normal(fill, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    plan = _plan(name, seed, (h, w))
    out = plan.apply(image)
    assert out.dtype == np.uint8
    assert out.shape == _expected_shape(name, plan.steps[0].params, (h, w, 3))
    assert out.flags.c_contiguous  # regression: mosaic returned a strided view when w % block != 0
    assert np.array_equal(out, plan.apply(image))


# ---- each parameter has its intended effect, measured on a real face

def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return cv2.PSNR(a, b)


def _highfreq(img: np.ndarray) -> float:
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_64F)).mean())


def test_jpeg_quality_monotonic(face: np.ndarray) -> None:
    psnrs = [_psnr(face, jpeg(face, q)) for q in (10, 30, 60, 95)]
    assert psnrs == sorted(psnrs) and psnrs[-1] - psnrs[0] > 8


def test_jpeg_keeps_colour_channels(face: np.ndarray) -> None:
    # A red patch must stay red: catches RGB/BGR mix-ups in the encoder call.
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 0] = 200
    out = jpeg(img, 90).astype(int)
    assert abs(out[..., 0].mean() - 200) < 3 and out[..., 2].mean() < 5
    assert _psnr(face, jpeg(face, 95)) > 35


def test_webp_quality_monotonic(face: np.ndarray) -> None:
    psnrs = [_psnr(face, webp(face, q)) for q in (5, 50, 95)]
    assert psnrs == sorted(psnrs)


def test_downsample_factor_monotonic(face: np.ndarray) -> None:
    psnrs = [_psnr(face, downsample(face, s)) for s in (8, 4, 2)]
    assert psnrs == sorted(psnrs)
    small = downsample(face, 4, keep_size=False)
    assert small.shape == (128, 128, 3)


@pytest.mark.parametrize("blur,args", [
    (gaussian_blur, [dict(sigma_x=s, sigma_y=s, angle=0, ksize=2 * int(3 * s) + 1) for s in (1, 3, 6)]),
    (motion_blur, [dict(length=n, angle=30) for n in (3, 9, 21)]),
    (defocus_blur, [dict(radius=r) for r in (1, 3, 7)]),
])
def test_blur_strength_reduces_high_frequencies(blur, args, face: np.ndarray) -> None:
    energies = [_highfreq(face)] + [_highfreq(blur(face, **a)) for a in args]
    assert energies == sorted(energies, reverse=True)
    assert energies[-1] < 0.5 * energies[0]


def test_anisotropic_blur_is_directional() -> None:
    img = np.zeros((65, 65, 3), np.uint8)
    img[32, 32] = 255
    out = gaussian_blur(img, 6.0, 1.0, 0.0, 41)[..., 0].astype(float)
    assert out[32, 32 + 8] > 5 * out[32 + 8, 32]  # spread along x (angle 0), not along y
    rot = gaussian_blur(img, 6.0, 1.0, 90.0, 41)[..., 0].astype(float)
    assert rot[32 + 8, 32] > 5 * rot[32, 32 + 8]


def test_mosaic_blocks_are_constant(face: np.ndarray) -> None:
    out = mosaic(face, 16)
    tiles = out.reshape(32, 16, 32, 16, 3)
    assert (tiles == tiles[:, :1, :, :1, :]).all()
    block = face[16:32, 48:64].reshape(-1, 3).mean(0)
    assert np.abs(out[16, 48].astype(float) - block).max() <= 0.5
    edge = mosaic(face[:50, :50], 16)  # edge blocks are smaller and still constant
    assert (edge[48:, 48:] == edge[48, 48]).all()


@pytest.mark.parametrize("sigma", [5.0, 15.0, 30.0])
def test_gaussian_noise_sigma_matches(sigma: float) -> None:
    img = np.full((256, 256, 3), 128, np.uint8)
    resid = gaussian_noise(img, sigma, seed=3).astype(float) - 128
    assert abs(resid.std() - sigma) < 0.03 * sigma + 0.3
    gray = gaussian_noise(img, sigma, seed=3, gray=True).astype(int)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


def test_laplace_noise_scale_matches() -> None:
    img = np.full((256, 256, 3), 128, np.uint8)
    resid = laplace_noise(img, 10.0, seed=1).astype(float) - 128
    assert abs(resid.std() - 10.0 * np.sqrt(2)) < 0.6  # Laplace std = b * sqrt(2)


def test_poisson_noise_forms() -> None:
    img = np.full((256, 256, 3), 128, np.uint8)
    resid = poisson_noise(img, seed=1, lam=20.0).astype(float) - 128
    assert abs(np.abs(resid).mean() - 20) < 0.5 and abs(resid.mean()) < 0.5  # |noise| ~ Poisson(20), signed
    shot = poisson_noise(img, seed=1, scale=1.0).astype(float) - 128
    assert abs(shot.std() - np.sqrt(128 * 255 / 256)) < 0.6  # shot noise: std = sqrt(level)
    dark = poisson_noise(np.full((64, 64, 3), 4, np.uint8), seed=1, scale=1.0).astype(float) - 4
    assert dark.std() < shot.std()


def test_noise_patterns_are_many() -> None:
    # albumentations' GaussNoise reuses a small pool of patterns; ours come from a 53-bit seed each.
    img = np.full((32, 32, 3), 128, np.uint8)
    outs = {gaussian_noise(img, 20.0, seed=s).tobytes() for s in range(200)}
    assert len(outs) == 200


def test_albumentations_op_is_seeded_and_strict(small_face: np.ndarray) -> None:
    from facedeg.ops.args import ArgError
    spec = OPS["albumentations"]({"transform": "GaussNoise", "args": {"std_range": [0.1, 0.2]}})
    p = spec.sample(np.random.default_rng(0), small_face.shape[:2])
    a = OPS["albumentations"].apply(small_face, **p)
    assert np.array_equal(a, OPS["albumentations"].apply(small_face, **p))
    with pytest.raises(ArgError, match="std_limit"):
        OPS["albumentations"]({"transform": "GaussNoise", "args": {"std_limit": [0.1, 0.2]}})
    with pytest.raises(ArgError, match="misalign"):
        OPS["albumentations"]({"transform": "HorizontalFlip"})
    with pytest.raises(ArgError, match="no albumentations transform"):
        OPS["albumentations"]({"transform": "NoSuchThing"})


# ---- regressions and exactness checks found in review


def test_jpeg_matches_pillow_encoder(face: np.ndarray) -> None:
    # A flat red patch survives a symmetric RGB/BGR swap; Pillow's libjpeg (RGB in, 4:2:0) does not lie.
    import io

    from PIL import Image
    for q in (20, 60):
        buf = io.BytesIO()
        Image.fromarray(face).save(buf, "JPEG", quality=q, subsampling=2)
        ref = np.asarray(Image.open(buf).convert("RGB"))
        assert _psnr(jpeg(face, q), ref) > 50  # identical with the same libjpeg-turbo; a swap gives ~35-41 dB


@pytest.mark.parametrize("radius", [0.7, 1.0, 1.5, 2.3, 5.0, 11.2])
def test_disk_kernel_centred_symmetric_right_area(radius: float) -> None:
    # Regression: OpenCV's anti-aliased circle was off-centre for small radii and ~0.5 px too large.
    from facedeg.ops.blur import disk_kernel
    k = disk_kernel(radius).astype(np.float64)
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert np.allclose(k, k[::-1]) and np.allclose(k, k[:, ::-1]) and np.allclose(k, k.T)
    if radius >= 1:
        assert abs(k.sum() - np.pi * radius**2) < 0.07 * np.pi * radius**2


@pytest.mark.parametrize("blur,kwargs", [
    (gaussian_blur, dict(sigma_x=2.0, sigma_y=2.0, angle=0.0, ksize=13)),
    (gaussian_blur, dict(sigma_x=3.0, sigma_y=1.0, angle=30.0, ksize=19)),
    (motion_blur, dict(length=15, angle=30.0)),
    (motion_blur, dict(length=16, angle=90.0)),
    (defocus_blur, dict(radius=4.5)),
])
def test_blur_of_a_point_is_centred_and_keeps_energy(blur, kwargs) -> None:
    img = np.zeros((61, 61, 3), np.uint8)
    img[25:36, 25:36] = 255  # a bright square: rounding loses little
    out = blur(img, **kwargs)[..., 0].astype(np.float64)
    y, x = np.mgrid[:61, :61]
    assert abs(out.sum() / img[..., 0].astype(float).sum() - 1) < 0.01
    assert abs((out * y).sum() / out.sum() - 30) < 0.05 and abs((out * x).sum() / out.sum() - 30) < 0.05


def test_tiled_convolution_equals_filter2d() -> None:
    from facedeg.ops.blur import _convolve
    rng = np.random.default_rng(0)
    for trial in range(60):
        kh, kw = (int(v) for v in rng.integers(12, 36, 2))  # above 11: the tiled path
        k = np.zeros((kh, kw), np.float32)
        idx = rng.choice(kh * kw, int(rng.integers(1, 60)), replace=False)
        k.flat[idx] = rng.random(len(idx)).astype(np.float32) + 0.01
        h, w = (1, int(rng.integers(1, 30))) if trial % 3 == 0 else (int(v) for v in rng.integers(1, 30, 2))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ref = cv2.filter2D(img.astype(np.float32), -1, k / k.sum(), borderType=cv2.BORDER_REFLECT_101)
        ref = np.clip(np.rint(ref), 0, 255).reshape(img.shape)
        assert np.abs(_convolve(img, k).astype(int) - ref).max() <= 1, (kh, kw, h, w)


def test_mosaic_exact_means_on_odd_sizes() -> None:
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (17, 33, 3), dtype=np.uint8)
    out = mosaic(img, 7)
    assert out.flags.c_contiguous
    for y in range(0, 17, 7):
        for x in range(0, 33, 7):
            mean = img[y:y + 7, x:x + 7].reshape(-1, 3).mean(0)
            assert (out[y:y + 7, x:x + 7] == np.floor(mean + 0.5)).all()


@pytest.mark.parametrize("lam", [0.05, 1.0, 30.0, 200.0])
def test_poisson_table_matches_distribution(lam: float) -> None:
    from facedeg.ops.noise import _poisson_table
    mag = _poisson_table(lam)[: 1 << 15].astype(np.float64)
    assert abs(mag.mean() - lam) < 1e-3 * lam + 1e-4 and abs(mag.var() - lam) < 2e-3 * lam + 1e-4


def test_albumentations_errors_name_the_field() -> None:
    from facedeg.ops.args import ArgError
    with pytest.raises(ArgError, match="blur_limit.*valid integer"):
        OPS["albumentations"]({"transform": "Blur", "args": {"blur_limit": "abc"}})
    with pytest.raises(ArgError, match="changes the image shape"):
        OPS["albumentations"]({"transform": "ToGray", "args": {"num_output_channels": 1}})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(40, 30, 3), (40, 30, 1), (40, 30), (9, 7, 4), (5, 4, 6), (17,)])
def test_as_uint8_equals_numpy(dtype, shape) -> None:
    """OpenCV's saturating conversion rounds half to even and clips exactly as rint/clip/astype do."""
    from facedeg.ops.base import as_uint8
    rng = np.random.default_rng(0)
    halves = (rng.integers(-600, 1200, shape) / 2).astype(dtype)  # every .5 tie, negatives, > 255
    wide = rng.normal(128, 200, shape).astype(dtype)
    for x in (halves, wide):
        want = np.clip(np.rint(x), 0, 255).astype(np.uint8)
        got = as_uint8(x)
        assert got.dtype == np.uint8 and got.shape == x.shape and np.array_equal(got, want)


def test_shot_alias_tables_hold_the_poisson_pmf() -> None:
    """The distribution the alias tables encode (each column 1/256: its own count with p threshold/2^24,
    else its alias) is Poisson(v·256/255) for every level v, to 2^-24 per count."""
    from scipy.stats import poisson

    from facedeg.ops.noise import _ALIAS, _shot_alias
    thresholds, counts = _shot_alias()
    keep = thresholds.reshape(256, _ALIAS).astype(np.float64) / (1 << 24)
    pairs = counts.reshape(256, _ALIAS, 2).astype(np.int64)
    for v in (0, 1, 2, 7, 40, 128, 200, 255):
        implied = np.zeros(1024)
        np.add.at(implied, pairs[v, :, 0], keep[v] / _ALIAS)
        np.add.at(implied, pairs[v, :, 1], (1 - keep[v]) / _ALIAS)
        want = poisson.pmf(np.arange(1024), v * 256 / 255) if v else (np.arange(1024) == 0).astype(float)
        assert np.abs(implied - want).max() < 2 ** -24 * 2, v


@pytest.mark.parametrize("gray", [False, True])
def test_shot_noise_table_sampler_matches_numpy(gray: bool) -> None:
    """sampler: table draws the same noise distribution as numpy's Poisson sampler, per level."""
    rng = np.random.default_rng(0)
    img = np.repeat(rng.permutation(np.repeat(np.array([3, 60, 180, 250], np.uint8), 48 * 256)), 3).reshape(-1, 256, 3)
    if gray:
        img = np.ascontiguousarray(np.repeat(img[..., :1], 3, axis=2))
    fast = poisson_noise(img, seed=5, scale=1.5, gray=gray, sampler="table").astype(np.float64)
    slow = poisson_noise(img, seed=5, scale=1.5, gray=gray).astype(np.float64)
    assert not np.array_equal(fast, slow)
    for level in (3, 60, 180, 250):
        m = img == level
        sd = 1.5 * np.sqrt(level)
        assert abs(fast[m].mean() - slow[m].mean()) < 0.05 * sd + 0.1, level
        assert abs(fast[m].std() - slow[m].std()) < 0.05 * sd + 0.1, level
    with pytest.raises(ValueError, match="unknown sampler"):
        poisson_noise(img, seed=5, scale=1.0, sampler="fast")
