"""Bundled public-domain 512x512 face photos (see SOURCES.md): the default input of preview and build."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_paths() -> list[Path]:
    """Paths of the bundled sample faces, sorted by name."""
    root = Path(str(resources.files(__name__)))
    return sorted(p for p in root.iterdir() if p.suffix == ".png")
