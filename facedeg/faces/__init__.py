"""Faces in the wild: detect faces with five landmarks, align them to the FFHQ template, paste back.

No torch here. The detector comes with the optional extra ``faces``; without it,
``get_detector`` raises one line naming the extra."""

from facedeg.errors import MissingExtraError
from facedeg.faces.align import TEMPLATE_512, align_matrix, fit_similarity, template, warp_face
from facedeg.faces.detect import Detector, Face, get_detector
from facedeg.faces.paste import feather_mask, paste_face, restore_photo

__all__ = [
    "TEMPLATE_512", "Detector", "Face", "MissingExtraError", "align_matrix", "feather_mask", "fit_similarity",
    "get_detector", "paste_face", "restore_photo", "template", "warp_face",
]
