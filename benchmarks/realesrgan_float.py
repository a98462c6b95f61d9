"""Real-ESRGAN's two-stage degradation written the straightforward way, for ``bench_degrade.py``.

float32 images in [0, 1] between steps, one NumPy/OpenCV call per step, with the function shapes of
BasicSR's ``degradations.py`` (a kernel array built per image and applied with ``filter2D``; noise
drawn as a float field and added; JPEG from float via ``imencode``). The figures are Real-ESRGAN's
published defaults (``options/train_realesrnet_x4plus.yml``, ``realesrgan_model.py``), the same as
``recipes/realesrgan.yaml``. The kernels come from facedeg's kernel functions (which equal BasicSR's:
``tests/test_kernels.py``), so both pipelines draw from one kernel family.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from facedeg.ops.kernels import KERNEL_KINDS, blur_kernel, sinc_kernel

SCALE = 4
_BORDER = cv2.BORDER_REFLECT_101
_MODES = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC)
_KERNEL_PROBS = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)


def usm_sharp(img: np.ndarray, weight: float = 0.5, radius: int = 51, threshold: float = 10) -> np.ndarray:
    blur = cv2.GaussianBlur(img, (radius, radius), 0, borderType=_BORDER)
    residual = img - blur
    mask = (np.abs(residual) * 255 > threshold).astype(np.float32)
    soft = cv2.GaussianBlur(mask, (radius, radius), 0, borderType=_BORDER)
    sharp = np.clip(img + weight * residual, 0, 1)
    return soft * sharp + (1 - soft) * img


def _beta(rng: np.random.Generator, lo: float, hi: float) -> float:
    return rng.uniform(lo, 1) if rng.uniform() < 0.5 else rng.uniform(1, hi)


def random_kernel(rng: np.random.Generator, sigma: tuple[float, float], sinc_prob: float = 0.1) -> np.ndarray:
    size = int(rng.choice(np.arange(7, 22, 2)))
    if rng.uniform() < sinc_prob:
        return sinc_kernel(size, rng.uniform(math.pi / 3 if size < 13 else math.pi / 5, math.pi))
    kind = KERNEL_KINDS[int(rng.choice(6, p=_KERNEL_PROBS))]
    sx = rng.uniform(*sigma)
    sy, theta = (rng.uniform(*sigma), rng.uniform(-math.pi, math.pi)) if kind.endswith("aniso") else (sx, 0.0)
    beta = _beta(rng, 0.5, 4) if kind.startswith("generalized") else _beta(rng, 1, 2) if kind.startswith("plateau") else 1
    return blur_kernel(kind, size, sx, sy, theta, beta)


def _resize(rng: np.random.Generator, img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(img, (size[1], size[0]), interpolation=_MODES[int(rng.integers(3))])


def _random_scale(rng: np.random.Generator, probs: tuple[float, ...], lo: float, hi: float) -> float:
    mode = int(rng.choice(3, p=probs))
    return rng.uniform(1, hi) if mode == 0 else rng.uniform(lo, 1) if mode == 1 else 1.0


def _noise(rng: np.random.Generator, img: np.ndarray, sigma: tuple[float, float], poisson: tuple[float, float]) -> np.ndarray:
    gray = rng.uniform() < 0.4
    if rng.uniform() < 0.5:
        shape = img.shape[:2] + (1,) if gray else img.shape
        noise = rng.standard_normal(shape).astype(np.float32) * np.float32(rng.uniform(*sigma) / 255)
    else:
        base = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None] if gray else img
        base = np.clip(np.round(base * 255), 0, 255) / 255
        vals = 2 ** np.ceil(np.log2(len(np.unique(base))))
        noise = ((rng.poisson(base * vals) / vals).astype(np.float32) - base) * np.float32(rng.uniform(*poisson))
    return np.clip(img + noise, 0, 1).astype(np.float32)


def _jpeg(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    quality = int(rng.uniform(30, 95))
    _, buf = cv2.imencode(".jpg", np.clip(img, 0, 1) * 255.0, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR).astype(np.float32) / 255.0


def degrade(hq: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(USM-sharpened HQ, LQ at 1/4 size), both uint8, from one uint8 HQ (channel order is irrelevant here)."""
    h, w = hq.shape[:2]
    gt = usm_sharp(hq.astype(np.float32) / 255)
    # first stage
    out = cv2.filter2D(gt, -1, random_kernel(rng, (0.2, 3)).astype(np.float32), borderType=_BORDER)
    s = _random_scale(rng, (0.2, 0.7, 0.1), 0.15, 1.5)
    out = _resize(rng, out, (int(h * s), int(w * s)))
    out = _jpeg(rng, _noise(rng, out, (1, 30), (0.05, 3)))
    # second stage
    if rng.uniform() < 0.8:
        out = cv2.filter2D(out, -1, random_kernel(rng, (0.2, 1.5)).astype(np.float32), borderType=_BORDER)
    s = _random_scale(rng, (0.3, 0.4, 0.3), 0.3, 1.2)
    out = _resize(rng, out, (int(h / SCALE * s), int(w / SCALE * s)))
    out = _noise(rng, out, (1, 25), (0.05, 2.5))
    final = (h // SCALE, w // SCALE)
    sinc = sinc_kernel(int(rng.choice(np.arange(7, 22, 2))), rng.uniform(math.pi / 3, math.pi)) if rng.uniform() < 0.8 else None

    def resize_sinc(img: np.ndarray) -> np.ndarray:
        img = _resize(rng, img, final)
        return img if sinc is None else cv2.filter2D(img, -1, sinc.astype(np.float32), borderType=_BORDER)

    out = _jpeg(rng, resize_sinc(out)) if rng.uniform() < 0.5 else resize_sinc(_jpeg(rng, out))
    lq = np.clip(np.round(out * 255), 0, 255).astype(np.uint8)
    return np.clip(np.round(gt * 255), 0, 255).astype(np.uint8), lq


def compare(faces: list[np.ndarray], n: int, warmup: int, timed, median) -> None:
    """The ``realesrgan`` recipe (sample + apply, both images) against ``degrade`` above, per face, in one run."""
    from facedeg import load_recipe
    from facedeg.codec import psnr
    from facedeg.sizes import to_hq_size

    recipe = load_recipe("realesrgan")
    size = faces[0].shape[0]
    results: dict[str, tuple[list[float], list[float]]] = {"engine": ([], []), "float32": ([], [])}
    runs = {
        "engine": lambda i, img: recipe.sample(i, (size, size)).apply_pair(img),
        "float32": lambda i, img: degrade(img, np.random.default_rng(i)),
    }
    for i in range(-warmup, n):
        img = faces[i % len(faces)]
        for name, run in runs.items():  # interleaved, so load on the machine hits both alike
            box: list = []
            ms = timed(lambda run=run, img=img, box=box, seed=max(i, 0): box.append(run(seed, img)))
            if i >= 0:
                hq, lq = box[0]
                results[name][0].append(ms)
                results[name][1].append(psnr(hq, to_hq_size(lq, hq.shape)) or float("inf"))
    print(f"\n== realesrgan (x4, LQ {size // SCALE}px) per {size}x{size} face, {n} draws each: the recipe "
          f"vs the same two-stage chain in float32 BasicSR style (benchmarks/realesrgan_float.py)")
    for name, (ms, db) in results.items():
        q = np.percentile(db, [10, 50, 90])
        print(f"  {name:<8} {median(ms):7.2f} ms   LQ-vs-HQ PSNR (LQ bicubic to HQ size) "
              f"p10 {q[0]:.2f}  median {q[1]:.2f}  p90 {q[2]:.2f} dB")
    speed = median(results["float32"][0]) / median(results["engine"][0])
    gap = float(np.median(results["engine"][1]) - np.median(results["float32"][1]))
    print(f"  engine is {speed:.2f}x faster (target >= 3x); median PSNR differs by {gap:+.2f} dB (target within 0.5)")
