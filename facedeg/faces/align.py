"""Similarity alignment of a face to the FFHQ 5-point template, and its inverse.

A face is aligned by the similarity transform (rotation, uniform scale, translation) that maps its
five landmarks (left eye, right eye, nose tip, left and right mouth corner, in image x order) onto
the template, fitted by weighted least squares (Umeyama) with a few Huber re-weighting rounds so one
bad point cannot drag the fit. Pixels outside the photo are filled by reflection (like FFHQ).

>>> import numpy as np
>>> M = fit_similarity(TEMPLATE_512, TEMPLATE_512 * 0.5)
>>> np.allclose(M, [[0.5, 0, 0], [0, 0.5, 0]])
True
"""

from __future__ import annotations

import cv2
import numpy as np

# FFHQ's 5-point template at 512x512, (x, y) pixel coordinates.
TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],  # left eye
        [318.90277, 240.19360],  # right eye
        [256.63416, 314.01935],  # nose tip
        [201.26117, 371.41043],  # left mouth corner
        [313.08905, 371.15118],  # right mouth corner
    ],
    dtype=np.float64,
)
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
BORDERS = {"reflect": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}
TEMPLATE_IOD = float(np.linalg.norm(TEMPLATE_512[1] - TEMPLATE_512[0]))  # inter-ocular distance at 512


def template(size: int) -> np.ndarray:
    """The template scaled to a ``size x size`` crop."""
    return TEMPLATE_512 * (size / 512.0)


def _umeyama(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> np.ndarray:
    w = w / w.sum()
    ms, md = w @ src, w @ dst
    s0, d0 = src - ms, dst - md
    cov = (d0 * w[:, None]).T @ s0
    u, sv, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rot = u @ np.diag(d) @ vt
    var = float(w @ (s0**2).sum(axis=1))
    scale = float((sv * d).sum() / var) if var > 0 else 1.0
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = md - scale * rot @ ms
    return m


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a 2x3 affine matrix."""
    return np.asarray(pts, np.float64) @ m[:, :2].T + m[:, 2]


def fit_similarity(src: np.ndarray, dst: np.ndarray, rounds: int = 3) -> np.ndarray:
    """2x3 similarity matrix mapping ``src`` points onto ``dst`` points, robust to one outlier.

    Starts from the least-squares fit, then re-weights each point by Huber's rule (weight
    ``min(1, k / residual)`` with ``k`` 1.5x the median residual) for ``rounds`` rounds."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    w = np.ones(len(src))
    m = _umeyama(src, dst, w)
    for _ in range(rounds):
        r = np.linalg.norm(apply(m, src) - dst, axis=1)
        k = max(1.5 * float(np.median(r)), 1e-6 * (1.0 + float(np.abs(dst).max())))
        w = np.minimum(1.0, k / np.maximum(r, 1e-12))
        m = _umeyama(src, dst, w)
    return m


def align_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The 2x3 matrix taking photo pixels to a ``size x size`` aligned crop."""
    return fit_similarity(landmarks, template(size))


def _sampled_region(m: np.ndarray, size: int, shape: tuple[int, ...], margin: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``: the part of the photo a ``size`` crop by ``m`` reads, reflection included."""
    inv = cv2.invertAffineTransform(m)
    c = apply(inv, np.array([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5], [-0.5, size - 0.5]]))
    lo, hi = np.floor(c.min(axis=0)) - margin, np.ceil(c.max(axis=0)) + margin + 1
    box = []
    for axis, n in ((0, shape[1]), (1, shape[0])):
        a, b = lo[axis], hi[axis]
        if a < 0:  # samples left of the edge mirror back inside
            b = max(b, -a + 1)
        if b > n:
            a = min(a, 2 * (n - 1) - b)
        box.append((int(max(0, a)), int(min(n, b))))
    (x0, x1), (y0, y1) = box
    return x0, y0, x1, y1


def warp_face(rgb: np.ndarray, m: np.ndarray, size: int, border: str = "reflect") -> np.ndarray:
    """Warp ``rgb`` by ``m`` into a ``size x size`` crop (bilinear). A face more than twice the crop's
    size is first shrunk by area averaging (bilinear sampling alone would alias), only the part of the
    photo the crop reads."""
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:
        f = 2.0 * scale  # leaves a residual scale of 0.5: bilinear is fine from there
        x0, y0, x1, y1 = _sampled_region(m, size, rgb.shape, margin=int(np.ceil(2 / scale)))
        roi = rgb[y0:y1, x0:x1]
        h, w = roi.shape[:2]
        small = cv2.resize(roi, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        sx, sy = small.shape[1] / w, small.shape[0] / h
        to_photo = np.array([[1 / sx, 0, 0.5 / sx - 0.5 + x0], [0, 1 / sy, 0.5 / sy - 0.5 + y0], [0, 0, 1]])
        m, rgb = m @ to_photo, small
    return np.ascontiguousarray(cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR,
                                               borderMode=BORDERS[border]))


def matrix_scale(m: np.ndarray) -> float:
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
