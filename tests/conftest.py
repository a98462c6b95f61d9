"""Shared fixtures: real bundled faces (tests run on real photos, not only synthetic arrays)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facedeg.samples import sample_paths


def load_face(index: int = 0, size: int | None = None) -> np.ndarray:
    """Bundled sample face ``index`` as uint8 RGB, optionally area-resized to ``size``."""
    bgr = cv2.imread(str(sample_paths()[index]), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if size is not None:
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    return rgb


@pytest.fixture(scope="session")
def face() -> np.ndarray:
    """A real 512x512 face."""
    return load_face(0)


@pytest.fixture(scope="session")
def small_face() -> np.ndarray:
    """A real face at 128x128 for fast tests."""
    return load_face(0, 128)
