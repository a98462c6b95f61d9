"""A Plan: the concrete ops and params drawn for one image. Replaying it reproduces the LQ bit for bit.

Each step acts on a *side*: the LQ (``lq``, the default), the HQ only (``hq``) or both (``both``, the
same params on each). Both images start as the source image; the HQ a build stores is the HQ after
its steps (the target the model should produce). A plan drawn from a recipe also carries the LQ's
``scale`` (1: HQ size; 4: a quarter of it): the LQ is brought to that size at the end by
``facedeg.sizes.fit``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from facedeg.errors import FacedegError
from facedeg.ops import LQ_ONLY, OPS
from facedeg.ops.args import is_number
from facedeg.sizes import fit, lq_size

SIDES = ("lq", "hq", "both")


@dataclass(frozen=True)
class Step:
    op: str
    params: dict[str, Any] = field(default_factory=dict)
    side: str = "lq"


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
    scale: float | None = None  # the LQ ends at 1/scale of the HQ size; None: wherever the steps leave it

    def iter_apply(self, image: np.ndarray) -> Iterator[tuple[Step, np.ndarray]]:
        """Yield (step, LQ after that step) for each step in order (an HQ-only step leaves the LQ as it was)."""
        out = check_image(image)
        for i, step in enumerate(self.steps):
            if step.side != "hq":
                out = _run(step, i, out)
            yield step, out

    def apply_pair(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(HQ, LQ) from the source ``image`` (uint8 HxWx3 RGB): each step on its side, then the LQ fitted."""
        src = check_image(image)
        hq = lq = src
        for i, step in enumerate(self.steps):
            if step.side == "lq":
                lq = _run(step, i, lq)
                continue
            same = lq is hq
            out = _run(step, i, hq)
            if out.shape != hq.shape:
                raise FacedegError(f"plan step {i} ({step.op}): an HQ-side op must keep the image size")
            if step.side == "both":
                lq = out if same else _run(step, i, lq)
            hq = out
        lq = self._fit(lq, src.shape)
        return (hq if hq is not src else src.copy()), (lq if lq is not src else src.copy())

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Apply every step to ``image`` (uint8 HxWx3 RGB) and return the degraded LQ."""
        if any(s.side != "lq" for s in self.steps):
            return self.apply_pair(image)[1]
        out = check_image(image)
        for i, step in enumerate(self.steps):
            out = _run(step, i, out)
        out = self._fit(out, image.shape)
        return out if out is not image else out.copy()

    def _fit(self, lq: np.ndarray, hq_shape: tuple[int, ...]) -> np.ndarray:
        return lq if self.scale is None else fit(lq, lq_size(hq_shape, self.scale))

    @property
    def touches_hq(self) -> bool:
        return any(s.side != "lq" for s in self.steps)

    def _both_prefix(self) -> int:
        n = 0
        while n < len(self.steps) and self.steps[n].side == "both":
            n += 1
        return n

    @property
    def replays_from_hq(self) -> bool:
        """Whether the stored (output) HQ is enough to rebuild the LQ: every HQ-touching step comes
        first and acts on both sides, so the LQ's chain continues from the HQ. Otherwise a build also
        stores the source image (the ``src`` member) for replay."""
        return all(s.side == "lq" for s in self.steps[self._both_prefix():])

    def lq_from_hq(self, hq: np.ndarray) -> np.ndarray:
        """The LQ rebuilt from the output HQ (only when ``replays_from_hq``)."""
        if not self.replays_from_hq:
            raise FacedegError("this plan's LQ cannot be rebuilt from its HQ alone (it needs the source image)")
        return Plan(self.steps[self._both_prefix():], self.seed, self.scale).apply(hq)

    def summary(self) -> str:
        """A short caption, e.g. ``motion 14px 37° → jpeg q23 → down 6.1×`` (``[hq]``/``[both]`` mark sides)."""
        text = " → ".join(OPS[s.op].describe(s.params) + ("" if s.side == "lq" else f" [{s.side}]")
                          for s in self.steps) or "identity"
        return text if not self.scale or self.scale == 1 else f"{text} (LQ 1/{self.scale:g})"

    def ops_fired(self) -> list[str]:
        return [s.op for s in self.steps]

    def branch(self) -> str:
        """The recipe branch this plan took, as the sorted set of ops that fired (order-free)."""
        return "+".join(sorted({s.op for s in self.steps})) or "identity"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seed": self.seed,
                               "steps": [{"op": s.op, "params": dict(s.params), "side": s.side} for s in self.steps]}
        if self.scale is not None:
            out["scale"] = self.scale
        return out

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
            side = s.get("side", "lq")  # plans written before sides existed act on the LQ
            if side not in SIDES or (side != "lq" and s["op"] in LQ_ONLY):
                raise FacedegError(f"plan step {i} ({s['op']}): bad side {side!r} (sides: {', '.join(SIDES)}; "
                                   f"{', '.join(sorted(LQ_ONLY))} act on the LQ only)")
            steps.append(Step(s["op"], dict(s["params"]), side))
        scale = data.get("scale")
        if scale is not None and not (is_number(scale) and scale >= 1):
            raise FacedegError(f"malformed plan JSON: scale must be a number >= 1 or absent, got {scale!r}")
        return cls(tuple(steps), seed, None if scale is None else float(scale))


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
    if annotation.startswith("list[float]"):
        return isinstance(value, list) and all(is_number(v) for v in value)
    if annotation.startswith("list[str]"):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
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
