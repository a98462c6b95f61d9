"""A Plan: the concrete ops and params drawn for one image. Replaying it reproduces the LQ bit for bit."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from facedeg.errors import FacedegError
from facedeg.ops import OPS
from facedeg.ops.args import is_number


@dataclass(frozen=True)
class Step:
    op: str
    params: dict[str, Any] = field(default_factory=dict)


def check_image(image: np.ndarray) -> np.ndarray:
    """Ensure a non-empty uint8 HxWx3 array (C-contiguous); raise ValueError with what was wrong otherwise."""
    if (not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3
            or image.size == 0):
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected a non-empty uint8 HxWx3 RGB array, got {got}")
    return np.ascontiguousarray(image)


# Errors an op raises for params it cannot use (e.g. a hand-edited plan): reported as FacedegError.
_PARAM_ERRORS = (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, OverflowError, cv2.error)


def _run(step: Step, i: int, image: np.ndarray) -> np.ndarray:
    try:
        return OPS[step.op].apply(image, **step.params)
    except _PARAM_ERRORS as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise FacedegError(f"plan step {i} ({step.op}): cannot apply params {step.params}: {reason}") from e


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    seed: int | None = None

    def iter_apply(self, image: np.ndarray) -> Iterator[tuple[Step, np.ndarray]]:
        """Yield (step, image after that step) for each step in order."""
        out = check_image(image)
        for i, step in enumerate(self.steps):
            out = _run(step, i, out)
            yield step, out

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Apply every step to ``image`` (uint8 HxWx3 RGB) and return the degraded image."""
        out = check_image(image)
        for i, step in enumerate(self.steps):
            out = _run(step, i, out)
        return out if self.steps else out.copy()

    def summary(self) -> str:
        """A short caption, e.g. ``motion 14px 37° → jpeg q23 → down 6.1×``."""
        return " → ".join(OPS[s.op].describe(s.params) for s in self.steps) or "identity"

    def ops_fired(self) -> list[str]:
        return [s.op for s in self.steps]

    def branch(self) -> str:
        """The recipe branch this plan took, as the sorted set of ops that fired (order-free)."""
        return "+".join(sorted({s.op for s in self.steps})) or "identity"

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "steps": [{"op": s.op, "params": dict(s.params)} for s in self.steps]}

    @classmethod
    def from_json(cls, data: Any) -> Plan:
        """Rebuild a stored plan; unknown ops, missing, unknown or mistyped params raise FacedegError."""
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
            raise FacedegError("malformed plan JSON: expected an object with a 'steps' list")
        seed = data.get("seed")
        if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool)):
            raise FacedegError(f"malformed plan JSON: seed must be an integer or null, got {seed!r}")
        steps = []
        for i, s in enumerate(data["steps"]):
            if not (isinstance(s, dict) and isinstance(s.get("op"), str) and isinstance(s.get("params"), dict)):
                raise FacedegError(f"plan step {i}: expected {{'op': name, 'params': {{...}}}}, got {s!r}")
            if s["op"] not in OPS:
                raise FacedegError(f"plan step {i}: unknown op {s['op']!r} (known: {', '.join(OPS)})")
            _check_params(i, s["op"], s["params"])
            steps.append(Step(s["op"], dict(s["params"])))
        return cls(tuple(steps), seed)


@functools.cache
def _signature(op: str) -> dict[str, tuple[str, bool]]:
    """Parameter name -> (annotation text, required) of ``OPS[op].apply``, without the image."""
    params = list(inspect.signature(OPS[op].apply).parameters.values())[1:]
    return {p.name: (str(p.annotation), p.default is inspect.Parameter.empty) for p in params}


def _type_ok(annotation: str, value: Any) -> bool:
    if value is None:
        return "None" in annotation
    if annotation.startswith("bool"):
        return isinstance(value, bool)
    if annotation.startswith("int"):
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation.startswith("float"):
        return is_number(value)
    if annotation.startswith("str"):
        return isinstance(value, str)
    if annotation.startswith("list[int]"):
        return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if annotation.startswith("dict"):
        return isinstance(value, dict)
    return True


def _check_params(i: int, op: str, params: dict[str, Any]) -> None:
    sig = _signature(op)
    for name in params:
        if name not in sig:
            raise FacedegError(f"plan step {i} ({op}): unknown param {name!r} (valid: {', '.join(sig)})")
    for name, (annotation, required) in sig.items():
        if name not in params:
            if required:
                raise FacedegError(f"plan step {i} ({op}): missing param {name!r}")
        elif not _type_ok(annotation, params[name]):
            raise FacedegError(f"plan step {i} ({op}): param {name!r} should be {annotation}, got {params[name]!r}")
