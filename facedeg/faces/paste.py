"""Put aligned faces back into their photo: inverse warp and feathered blending.

``restore_photo`` is the whole wild-photo pipeline (detect, align, restore each crop with a
caller-supplied function, paste back, optional whole-photo upscale); it knows nothing about torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from facedeg.faces.align import align_matrix, warp_face
from facedeg.faces.detect import Detector, Face


def feather_mask(size: int) -> np.ndarray:
    """float32 ``size x size`` blend weights: 1 in the middle, falling smoothly to 0 at the crop edge
    over about a tenth of the side (so the pasted square leaves no seam)."""
    margin = max(2, size // 16)
    mask = np.zeros((size, size), np.float32)
    mask[margin:size - margin, margin:size - margin] = 1.0
    k = 2 * margin + 1
    return cv2.GaussianBlur(mask, (k, k), margin / 2.0, borderType=cv2.BORDER_CONSTANT)


def upscale_matrix(m: np.ndarray, k: float) -> np.ndarray:
    """``m`` (photo -> crop) for the photo resized ``k`` times (pixel centres: x_k = (x + 0.5) k - 0.5)."""
    down = np.array([[1 / k, 0, 0.5 / k - 0.5], [0, 1 / k, 0.5 / k - 0.5], [0, 0, 1]])
    return m @ down


def paste_face(canvas: np.ndarray, crop: np.ndarray, m: np.ndarray, mask: np.ndarray | None = None) -> None:
    """Blend ``crop`` (aligned by ``m``: canvas -> crop) into ``canvas`` in place.

    Only the face's bounding rectangle is touched; where the mask is 0 the canvas keeps its exact values."""
    size = crop.shape[0]
    mask = feather_mask(size) if mask is None else mask
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64) - 0.5
    pts = corners @ inv[:, :2].T + inv[:, 2]
    h, w = canvas.shape[:2]
    x0, y0 = (max(0, int(np.floor(v)) - 1) for v in pts.min(axis=0))
    x1, y1 = (int(np.ceil(v)) + 2 for v in pts.max(axis=0))
    x1, y1 = min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return
    shift = inv.copy()
    shift[:, 2] -= (x0, y0)
    rw, rh = x1 - x0, y1 - y0
    face = cv2.warpAffine(crop, shift, (rw, rh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(mask, shift, (rw, rh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
    roi = canvas[y0:y1, x0:x1]
    mixed = roi.astype(np.float32) * (1.0 - alpha) + face.astype(np.float32) * alpha
    roi[...] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


@dataclass
class PhotoResult:
    image: np.ndarray
    faces: list[Face] = field(default_factory=list)
    matrices: list[np.ndarray] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    restored: list[np.ndarray] = field(default_factory=list)


def restore_photo(
    rgb: np.ndarray,
    detector: Detector,
    size: int,
    restore: Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]],
    only_largest: bool = False,
    upscale: float = 1.0,
    border: str = "reflect",
) -> PhotoResult:
    """Detect faces, align each to ``size``, ``restore`` the crops (a list in, a list out), paste them
    back; the background is resized ``upscale`` times with bicubic interpolation. A photo without a
    face comes back only resized (``faces`` empty). Faces are pasted smallest first, so where two
    overlap the larger one is on top."""
    faces = detector.detect(rgb, largest_only=only_largest)
    if only_largest:
        faces = faces[:1]
    h, w = rgb.shape[:2]
    out = rgb.copy() if upscale == 1 else cv2.resize(rgb, (round(w * upscale), round(h * upscale)),
                                                     interpolation=cv2.INTER_CUBIC)
    res = PhotoResult(out, faces)
    if not faces:
        return res
    res.matrices = [align_matrix(f.landmarks, size) for f in faces]
    res.crops = [warp_face(rgb, m, size, border) for m in res.matrices]
    res.restored = [np.ascontiguousarray(r) for r in restore(res.crops)]
    mask = feather_mask(size)
    for i in reversed(range(len(faces))):  # smallest first; detector order is largest first
        m = res.matrices[i] if upscale == 1 else upscale_matrix(res.matrices[i], upscale)
        paste_face(out, res.restored[i], m, mask)
    return res
