"""A Plan: the concrete ops and params drawn for one image. Replaying it reproduces the LQ bit for bit."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facedeg.errors import FacedegError
from facedeg.ops import OPS


@dataclass(frozen=True)
class Step:
    op: str
    params: dict[str, Any] = field(default_factory=dict)


def check_image(image: np.ndarray) -> np.ndarray:
    """Ensure uint8 HxWx3 (C-contiguous); raise ValueError with what was wrong otherwise."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected a uint8 HxWx3 RGB array, got {got}")
    return np.ascontiguousarray(image)


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    seed: int | None = None

    def iter_apply(self, image: np.ndarray) -> Iterator[tuple[Step, np.ndarray]]:
        """Yield (step, image after that step) for each step in order."""
        out = check_image(image)
        for step in self.steps:
            out = OPS[step.op].apply(out, **step.params)
            yield step, out

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Apply every step to ``image`` (uint8 HxWx3 RGB) and return the degraded image."""
        out = check_image(image)
        for step in self.steps:
            out = OPS[step.op].apply(out, **step.params)
        return out if self.steps else out.copy()

    def summary(self) -> str:
        """A short caption, e.g. ``motion 14px 37° → jpeg q23 → down 6.1×``."""
        return " → ".join(OPS[s.op].describe(s.params) for s in self.steps) or "identity"

    def ops_fired(self) -> list[str]:
        return [s.op for s in self.steps]

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "steps": [{"op": s.op, "params": dict(s.params)} for s in self.steps]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        """Rebuild a stored plan; unknown ops or malformed entries raise FacedegError."""
        try:
            steps = []
            for i, s in enumerate(data["steps"]):
                if s["op"] not in OPS:
                    raise FacedegError(f"plan step {i}: unknown op {s['op']!r} (known: {', '.join(OPS)})")
                steps.append(Step(str(s["op"]), dict(s["params"])))
            return cls(tuple(steps), data.get("seed"))
        except (KeyError, TypeError) as e:
            raise FacedegError(f"malformed plan JSON: missing or bad field {e}") from None
