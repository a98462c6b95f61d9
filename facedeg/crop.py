"""Face cropping: turn a decoded photo into the square ``size x size`` HQ face a build works on.

Modes: ``center`` (largest centred square), ``face`` (OpenCV's Haar cascade, a square box around the
largest face, centre crop when none is found), ``none`` (the whole image resized). Face alignment to a
landmark template lives here too.
"""

from __future__ import annotations

import os
import threading

import cv2
import numpy as np

from facedeg.errors import ImageError

CROP_MODES = ("center", "face", "none")

# --------------------------------------------------------------------------- crop and resize

_LOCAL = threading.local()  # one cascade per thread: detectMultiScale is not documented as thread-safe


def _face_cascade() -> cv2.CascadeClassifier:
    cascade = getattr(_LOCAL, "cascade", None)
    if cascade is None:
        path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise ImageError(f"{path}: cannot load OpenCV's face cascade")
        _LOCAL.cascade = cascade
    return cascade


def detect_face(rgb: np.ndarray, max_side: int = 640) -> tuple[int, int, int, int] | None:
    """Largest frontal face as ``(x, y, w, h)`` in ``rgb`` coordinates, or ``None``.

    Detection runs on a gray copy shrunk to at most ``max_side`` pixels for speed."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    min_side = max(24, int(0.08 * min(gray.shape)))
    faces = _face_cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    if len(faces) == 0:
        return None
    # largest area; ties broken by position so the choice never depends on detector order
    x, y, fw, fh = max((int(f[2]) * int(f[3]), -int(f[1]), -int(f[0]), tuple(int(v) for v in f)) for f in faces)[3]
    inv = 1.0 / scale
    return round(x * inv), round(y * inv), round(fw * inv), round(fh * inv)


def face_box(face: tuple[int, int, int, int], shape: tuple[int, ...], margin: float = 1.0) -> tuple[int, int, int, int]:
    """Square ``(x0, y0, x1, y1)`` centred on ``face`` with side ``(1 + margin) * max(w, h)``,
    shrunk to fit and shifted inside an image of ``shape``."""
    h, w = shape[:2]
    x, y, fw, fh = face
    side = min(round((1.0 + margin) * max(fw, fh)), h, w)
    cx, cy = x + fw / 2.0, y + fh / 2.0
    x0 = int(min(max(round(cx - side / 2.0), 0), w - side))
    y0 = int(min(max(round(cy - side / 2.0), 0), h - side))
    return x0, y0, x0 + side, y0 + side


def center_box(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Largest centred square ``(x0, y0, x1, y1)`` inside an image of ``shape``."""
    h, w = shape[:2]
    side = min(h, w)
    x0, y0 = (w - side) // 2, (h - side) // 2
    return x0, y0, x0 + side, y0 + side


def resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` = (height, width), the order of the ``resize`` op, with area interpolation
    when shrinking and bicubic when enlarging (identity if same size)."""
    h, w = rgb.shape[:2]
    height, width = size
    if (w, h) == (width, height):
        return rgb
    interp = cv2.INTER_AREA if width * height <= w * h else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(rgb, (width, height), interpolation=interp))


def crop_and_resize(rgb: np.ndarray, size: int, crop: str = "center") -> tuple[np.ndarray, dict]:
    """Crop (``center`` | ``face`` | ``none``) and resize to ``size x size``.

    Returns the image and a JSON-able record of what was done, e.g.
    ``{"mode": "face", "box": [x0, y0, x1, y1], "face": [x, y, w, h], "fallback": None}``; when no
    face is found, ``fallback`` says so and the center crop is used.

    >>> import numpy as np
    >>> img, info = crop_and_resize(np.zeros((40, 60, 3), np.uint8), 32)
    >>> img.shape, info["box"]
    ((32, 32, 3), [10, 0, 50, 40])
    """
    if crop not in CROP_MODES:
        raise ImageError(f"--crop: unknown mode {crop!r} (choose from {', '.join(CROP_MODES)})")
    info: dict = {"mode": crop}
    h, w = rgb.shape[:2]
    if crop == "none":
        info["box"] = [0, 0, w, h]
        return resize(rgb, (size, size)), info
    if crop == "face":
        face = detect_face(rgb)
        info["face"] = list(face) if face else None
        if face is None:
            info["fallback"] = "no face found: center crop"
            box = center_box(rgb.shape)
        else:
            info["fallback"] = None
            box = face_box(face, rgb.shape)
    else:
        box = center_box(rgb.shape)
    x0, y0, x1, y1 = box
    info["box"] = [x0, y0, x1, y1]
    return resize(np.ascontiguousarray(rgb[y0:y1, x0:x1]), (size, size)), info
