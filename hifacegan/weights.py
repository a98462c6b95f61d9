"""Loading local weight files (VGG19, LPIPS, FID Inception): never downloaded, always ``weights_only=True``,
and every key and shape checked before use."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facedeg.files import file_problem


class UnreadableFile(ValueError):
    """``torch.load`` refused a file; the message is the one-line reason."""


def torch_load(path: str | Path) -> Any:
    """The one way hifacegan reads a torch file: ``torch.load(weights_only=True)`` onto the CPU, so a
    pickle with code in it is refused. Raises :class:`UnreadableFile` with a one-line reason."""
    try:
        with warnings.catch_warnings():  # e.g. torch's note on a plain pickle's protocol: the error says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a zip/pickle file, or one holding arbitrary objects
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        if "Weights only load failed" in reason:
            reason = "not a torch.save file of tensors and plain containers"
        raise UnreadableFile(reason) from None


def load_state_file(path: str | Path, what: str = "") -> Mapping[str, object]:
    """The state dict saved in ``path``; a one-line ValueError naming the file and the reason otherwise."""
    label = f"{what} " if what else ""
    if Path(path).is_dir():
        raise ValueError(f"{path}: is a directory; pass the {label}weight file itself")
    problem = file_problem(path)
    if problem in ("no such file", "broken symbolic link"):
        raise ValueError(f"{path}: {label}file not found")
    if problem:  # a FIFO would block the read
        raise ValueError(f"{path}: cannot read {label}file ({problem})")
    try:
        state = torch_load(path)
    except UnreadableFile as exc:
        raise ValueError(f"{path}: cannot load {label}weights ({exc})") from None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: {label}file does not hold a state dict (found {type(state).__name__})")
    return state


_MAX_LISTED = 5


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def check_state(state: Mapping[str, object], expected: Mapping[str, tuple[int, ...]], source: str, what: str,
                ignore: Callable[[str], bool] = lambda key: False) -> dict[str, torch.Tensor]:
    """The tensors of ``state`` named in ``expected`` (key -> shape), after checking that nothing is missing,
    unexpected (keys for which ``ignore`` is true are dropped first) or of another shape / not a tensor.

    Otherwise a one-line ValueError: ``SOURCE is not WHAT; missing: ...; unexpected: ...; shape mismatch:
    KEY (found) != (expected)``, each list cut after a few keys."""
    given = {str(k): v for k, v in state.items() if not ignore(str(k))}
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = [
        f"{k} {tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__} != {tuple(expected[k])}"
        for k, v in given.items()
        if k in expected and (not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(expected[k]))
    ]
    problems = [f"{name}: {_listing(keys)}" for name, keys in
                (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)) if keys]
    if problems:
        raise ValueError(f"{source} is not {what}; " + "; ".join(problems))
    return {k: given[k] for k in expected}  # type: ignore[misc]


class FrozenModule(nn.Module):
    """A fixed network built from a local weight file (VGG19, LPIPS, Inception): after :meth:`freeze`, no
    parameter requires grad and it stays in eval mode whatever ``train()`` is asked."""

    def freeze(self) -> None:
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenModule:
        return super().train(False)
