"""Loading local weight files (VGG19, LPIPS): never downloaded, always ``weights_only=True``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch


def load_state_file(path: str | Path, what: str = "") -> Mapping[str, object]:
    """The state dict saved in ``path``; a one-line ValueError naming the file and the reason otherwise."""
    label = f"{what} " if what else ""
    if not Path(path).is_file():
        raise ValueError(f"{path}: {label}file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a zip/pickle file, or one holding arbitrary objects
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        if "Weights only load failed" in reason:
            reason = "not a torch.save file of tensors and plain containers"
        raise ValueError(f"{path}: cannot load {label}weights ({reason})") from None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: {label}file does not hold a state dict (found {type(state).__name__})")
    return state
