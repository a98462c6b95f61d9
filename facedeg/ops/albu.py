"""The escape hatch: any pixel-level albumentations transform, validated strictly, seeded per sample.

albumentations is imported only when a recipe uses this op: importing it also imports torch when
torch is installed, and facedeg itself must stay light.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np

from facedeg.ops.args import ArgError
from facedeg.ops.base import OpSpec, as_uint8
from facedeg.seeds import draw_seed


@functools.lru_cache(maxsize=64)
def _build(transform: str, kwargs_json: str) -> Any:
    import albumentations as A

    kwargs = json.loads(kwargs_json)
    return getattr(A, transform)(**{"p": 1.0, **kwargs, "strict": True})


def albumentations_op(image: np.ndarray, transform: str, args: dict[str, Any], seed: int) -> np.ndarray:
    """Apply ``albumentations.<transform>(**args)`` with its random state seeded from ``seed``."""
    t = _build(transform, json.dumps(args, sort_keys=True))
    t.set_random_seed(seed)
    out = t(image=image)["image"]
    if out.dtype != np.uint8:
        out = as_uint8(out * 255 if out.dtype.kind == "f" and out.max() <= 1.0 else out)
    if out.shape != image.shape:
        raise ValueError(f"{transform} changes the image shape from {image.shape} to {out.shape}: "
                         "LQ must stay aligned with HQ (uint8 HxWx3)")
    return np.ascontiguousarray(out)


def _reason(e: Exception) -> str:
    """One line: each pydantic validation error as ``field: message``, else the first line of ``e``."""
    errors = getattr(e.__cause__, "errors", None) or getattr(e, "errors", None)  # albumentations wraps pydantic's
    if callable(errors):
        try:
            return "; ".join(f"{'.'.join(map(str, d['loc'])) or 'args'}: {d['msg']}" for d in errors())
        except (TypeError, KeyError):
            pass
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class Albumentations(OpSpec):
    name = "albumentations"
    schema: dict = {}

    def __init__(self, raw: Any) -> None:  # own parsing: the args are albumentations' own
        if not isinstance(raw, dict):
            raise ArgError("", f"expected a mapping with 'transform' and optional 'args', got {raw!r}")
        unknown = sorted(set(raw) - {"transform", "args"})
        if unknown:
            raise ArgError(unknown[0], "unknown argument (valid: transform, args)")
        import albumentations as A
        from albumentations.core.transforms_interface import ImageOnlyTransform

        name, args = raw.get("transform"), raw.get("args") or {}
        cls = getattr(A, name, None) if isinstance(name, str) else None
        if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
            raise ArgError("transform", f"no albumentations transform named {name!r}")
        if not issubclass(cls, ImageOnlyTransform):
            raise ArgError("transform", f"{name} is not pixel-level (ImageOnlyTransform): it would misalign LQ and HQ")
        if not isinstance(args, dict):
            raise ArgError("args", f"expected a mapping of {name} arguments, got {args!r}")
        try:
            json.dumps(args)
            probe = np.zeros((32, 32, 3), np.uint8)
            albumentations_op(probe, name, args, 0)  # a trial run on a small image
        except Exception as e:  # noqa: BLE001 - any failure of the trial run is a recipe error
            raise ArgError("args", f"{name}: {_reason(e)}") from None
        self.args = {"transform": name, "args": args}

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, Any]:
        return {"transform": self.args["transform"], "args": self.args["args"], "seed": draw_seed(rng)}

    apply = staticmethod(albumentations_op)

    @staticmethod
    def describe(params: dict[str, Any]) -> str:
        return f"albu {params['transform']}"
