"""Face cropping: turn a decoded photo into the square ``size x size`` HQ face a build works on.

Modes: ``center`` (largest centred square), ``face`` (OpenCV's Haar cascade, a square box around the
largest face, centre crop when none is found), ``none`` (the whole image resized), and ``align``
(:func:`align_faces`: detect faces with five landmarks and warp each onto the FFHQ template; needs the
optional extra ``faces``, see :mod:`facedeg.faces`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from facedeg.errors import ImageError

CROP_MODES = ("center", "face", "none", "align")
FACE_SELECT = ("largest", "all")
NO_FACE = ("skip", "center")
DEFAULT_MIN_FACE = 16  # eye-to-mouth pixels: below this a face holds too little detail to train on

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
    if crop not in CROP_MODES or crop == "align":
        modes = ", ".join(m for m in CROP_MODES if m != "align")
        raise ImageError(f"--crop: unknown mode {crop!r} here (choose from {modes}; align: use align_faces)")
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


# --------------------------------------------------------------------------- alignment to the FFHQ template


class NoFaceError(ImageError):
    """An input has no usable face for ``--crop align`` (the message says why; ``counts`` as in
    :func:`align_faces`)."""

    def __init__(self, message: str, counts: dict) -> None:
        super().__init__(message)
        self.counts = counts


@dataclass(frozen=True)
class AlignOptions:
    """How ``--crop align`` picks faces: ``select`` largest | all, ``min_face`` (eye-to-mouth pixels in
    the photo; smaller faces are skipped and counted), ``no_face`` skip | center, ``border`` (pixels
    outside the photo: reflect, as FFHQ)."""

    select: str = "largest"
    min_face: float = DEFAULT_MIN_FACE
    no_face: str = "skip"
    border: str = "reflect"

    def problems(self) -> list[tuple[bool, str]]:
        return [
            (self.select not in FACE_SELECT, f"--faces must be one of {', '.join(FACE_SELECT)}, got {self.select!r}"),
            (not self.min_face >= 0, f"--min-face must be >= 0 pixels, got {self.min_face}"),
            (self.no_face not in NO_FACE, f"--no-face must be one of {', '.join(NO_FACE)}, got {self.no_face!r}"),
        ]


def _rounded(a: np.ndarray) -> list:
    return [[float(v) for v in row] for row in np.asarray(a, np.float64)]


def align_faces(rgb: np.ndarray, size: int, options: AlignOptions = AlignOptions()
                ) -> tuple[list[tuple[np.ndarray, dict]], dict]:
    """``--crop align``: ``([(crop, info), ...], counts)``, one entry per used face, largest first.

    Each ``info`` records how its crop was made, enough to re-create it with ``cv2.warpAffine``:
    ``{"mode": "align", "face": j, "box": [x0, y0, x1, y1], "align": {"detector", "score",
    "landmarks" (5 x [x, y] in the photo), "matrix" (2x3, photo -> crop), "template_size", "border"}}``.
    ``counts`` is ``{"found": n, "small": n}``. No usable face: :class:`NoFaceError`, or with
    ``no_face="center"`` one centre crop recorded with ``"fallback"``."""
    from facedeg.faces import align_matrix, get_detector, warp_face  # the extra is only needed here

    detector = get_detector()
    faces = detector.detect(rgb, largest_only=options.select == "largest")
    usable = [f for f in faces if f.eye_mouth >= options.min_face]
    counts = {"found": len(faces), "small": len(faces) - len(usable)}
    if options.select == "largest":
        usable = usable[:1]
    if not usable:
        if not faces:
            reason = "no face found"
        else:
            reason = (f"no face of at least --min-face {options.min_face:g} px (eye to mouth); the largest "
                      f"of {len(faces)} found is {faces[0].eye_mouth:.1f} px")
        if options.no_face == "skip":
            raise NoFaceError(reason, counts)
        out, info = crop_and_resize(rgb, size, "center")
        return [(out, {**info, "mode": "align", "fallback": f"{reason}: center crop"})], counts
    result = []
    for j, face in enumerate(usable):
        m = align_matrix(face.landmarks, size)
        info = {
            "mode": "align",
            "face": j,
            "box": [round(v, 2) for v in face.box],
            "fallback": None,
            "align": {
                "detector": detector.name,
                "score": round(face.score, 6),
                "landmarks": _rounded(face.landmarks),
                "matrix": _rounded(m),
                "template_size": size,
                "border": options.border,
            },
        }
        result.append((warp_face(rgb, m, size, options.border), info))
    return result, counts
