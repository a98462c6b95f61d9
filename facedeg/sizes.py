"""The LQ-size rules, in one place: what size a plan's LQ comes out at, and how LQ and HQ are compared.

- A recipe says where its LQ ends: at the HQ size (``keep_size: true``, the default) or at 1/``scale``
  of it (``keep_size: false``): ``lq_size`` floors each side, as Real-ESRGAN does (512 / 4 → 128).
- ``fit`` brings whatever size the steps left to that size: area when shrinking, bicubic otherwise.
  A plan that already ends there (every shipped recipe) is untouched; ``resize: {size: 1}`` in a
  same-size recipe comes back as a flat HQ-sized image rather than a 1x1 one.
- ``to_hq_size`` is how a smaller LQ is compared with (PSNR) or fed beside its HQ (the trainer's
  loader): bicubic up to the HQ size. A pair is usable only when the LQ has the HQ's aspect, i.e. it
  is no larger and has the HQ's aspect to within one LQ pixel (``pair_scale``).
"""

from __future__ import annotations

import cv2
import numpy as np


def lq_size(hq_shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    """(height, width) of the LQ for an HQ of ``hq_shape`` at ``scale`` (1 = same size)."""
    return max(1, int(hq_shape[0] / scale)), max(1, int(hq_shape[1] / scale))


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``size`` = (height, width) (area when shrinking, bicubic otherwise); as is if equal."""
    h, w = image.shape[:2]
    if (h, w) == tuple(size):
        return image
    shrink = size[0] <= h and size[1] <= w
    out = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return out.reshape(size[0], size[1], -1)


def pair_scale(hq_shape: tuple[int, ...], lq_shape: tuple[int, ...]) -> float | None:
    """HQ height over LQ height when the LQ is no larger than the HQ and has its aspect to within one LQ
    pixel (every ``lq_size`` result does); None otherwise: the pair is mismatched."""
    (hh, hw), (lh, lw) = hq_shape[:2], lq_shape[:2]
    if not (1 <= lh <= hh and 1 <= lw <= hw):
        return None
    # lh/lw against hh/hw, cross-multiplied: off by less than one LQ pixel in either direction
    if abs(lh * hw - lw * hh) >= max(hh, hw):
        return None
    return hh / lh


def to_hq_size(lq: np.ndarray, hq_shape: tuple[int, ...]) -> np.ndarray:
    """An LQ brought to the HQ's size with bicubic interpolation (as is when already that size)."""
    h, w = hq_shape[:2]
    if lq.shape[:2] == (h, w):
        return lq
    return cv2.resize(lq, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, -1)
