"""Typed recipe arguments: each validates a raw YAML value and says exactly what was wrong."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


class ArgError(ValueError):
    """Raised with the argument name; the recipe loader adds the file and key path."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def is_number(v: Any) -> bool:
    """A finite int or float: not a bool, NaN, infinity, or an int beyond the float range."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _is_integer(v: Any) -> bool:
    return isinstance(v, int) or float(v).is_integer()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return repr(v) if isinstance(v, str) else str(v)


@dataclass(frozen=True)
class Range:
    """A ``[min, max]`` pair (a single number means a fixed value) within ``[lo, hi]``."""

    lo: float
    hi: float
    default: tuple[float, float] | None = None
    integer: bool = False
    optional: bool = False

    def parse(self, key: str, value: Any) -> list[float]:
        if is_number(value):
            value = [value, value]
        kind = "integers" if self.integer else "numbers"
        want = f"expected [min, max] of {kind} with {_fmt(self.lo)} <= min <= max <= {_fmt(self.hi)}"
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(is_number(v) for v in value)):
            raise ArgError(key, f"{want}, got {_fmt(value)}")
        a, b = value
        if self.integer and not (_is_integer(a) and _is_integer(b)):
            raise ArgError(key, f"{want}, got {_fmt(list(value))}")
        if not (self.lo <= a <= b <= self.hi):
            raise ArgError(key, f"{want}, got {_fmt(list(value))}")
        return [int(a), int(b)] if self.integer else [float(a), float(b)]

    def draw(self, rng: np.random.Generator, bounds: list[float]) -> float | int:
        a, b = bounds
        if self.integer:
            return int(rng.integers(int(a), int(b) + 1))
        return float(a) if a == b else round(float(rng.uniform(a, b)), 4)


@dataclass(frozen=True)
class Number:
    """A single number within ``[lo, hi]``."""

    lo: float
    hi: float
    default: float | None = None
    integer: bool = False
    optional: bool = False

    def parse(self, key: str, value: Any) -> float | int:
        ok = is_number(value) and (not self.integer or _is_integer(value))
        if not ok or not (self.lo <= value <= self.hi):
            kind = "an integer" if self.integer else "a number"
            raise ArgError(key, f"expected {kind} in [{_fmt(self.lo)}, {_fmt(self.hi)}], got {_fmt(value)}")
        return int(value) if self.integer else float(value)


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of strings; with ``multi``, also a list of them to draw from per image."""

    choices: tuple[str, ...]
    default: str | None = None
    multi: bool = False
    optional: bool = False

    def parse(self, key: str, value: Any) -> str | list[str]:
        values = value if self.multi and isinstance(value, list) and value else [value]
        for v in values:
            if not isinstance(v, str) or v not in self.choices:
                lists = " (or a list of them)" if self.multi else ""
                raise ArgError(key, f"expected one of {', '.join(self.choices)}{lists}, got {_fmt(value)}")
        return value

    def draw(self, rng: np.random.Generator, value: str | list[str]) -> str:
        if isinstance(value, str):
            return value
        return value[int(rng.integers(len(value)))]


@dataclass(frozen=True)
class Flag:
    """A boolean."""

    default: bool | None = None

    def parse(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ArgError(key, f"expected true or false, got {_fmt(value)}")
        return value


@dataclass(frozen=True)
class Size:
    """An output size: one integer (square), ``[height, width]``, or ``input`` (the sampled image's size)."""

    default: list[int] | None = None

    def parse(self, key: str, value: Any) -> list[int] | str:
        if value == "input":
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value, value]
        if not (isinstance(value, (list, tuple)) and len(value) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16384 for v in value)):
            raise ArgError(key, f"expected 'input' or a size in pixels (an integer or [height, width], 1..16384), got {_fmt(value)}")
        return [int(value[0]), int(value[1])]


@dataclass(frozen=True)
class Probs:
    """Probabilities of the named outcomes, in order (any number of them when ``names`` is empty):
    non-negative numbers that sum to 1."""

    names: tuple[str, ...]
    default: tuple[float, ...] | None = None
    optional: bool = False

    def parse(self, key: str, value: Any) -> list[float]:
        what = f"{len(self.names)} probabilities for {', '.join(self.names)}" if self.names else "a list of probabilities"
        want = f"expected {what} (non-negative, summing to 1)"
        if not (isinstance(value, (list, tuple)) and value and (len(value) == len(self.names) or not self.names)
                and all(is_number(v) and v >= 0 for v in value)):
            raise ArgError(key, f"{want}, got {_fmt(value)}")
        if abs(sum(value) - 1) > 1e-6:
            raise ArgError(key, f"{want}, got {_fmt(list(value))} (sum {sum(value):g})")
        return [float(v) for v in value]

    def draw(self, rng: np.random.Generator, probs: list[float]) -> int:
        """The index of the outcome drawn."""
        return int(rng.choice(len(probs), p=np.asarray(probs) / sum(probs)))


@dataclass(frozen=True)
class OddRange:
    """A ``[min, max]`` pair of odd integers (or one odd integer) within ``[lo, hi]``: a kernel size."""

    lo: int
    hi: int
    default: tuple[int, int] | None = None

    def parse(self, key: str, value: Any) -> list[int]:
        bounds = Range(self.lo, self.hi, integer=True).parse(key, value)
        if bounds[0] % 2 == 0 or bounds[1] % 2 == 0:
            raise ArgError(key, f"expected odd kernel sizes in [{self.lo}, {self.hi}], got {_fmt(value)}")
        return bounds

    def draw(self, rng: np.random.Generator, bounds: list[int]) -> int:
        """An odd size, uniform over the odd integers in ``bounds``."""
        return int(bounds[0] + 2 * rng.integers(0, (bounds[1] - bounds[0]) // 2 + 1))


Arg = Range | Number | Choice | Flag | Size | Probs | OddRange


def parse_args(schema: dict[str, Arg], raw: Any) -> dict[str, Any]:
    """Validate ``raw`` (a mapping or None) against ``schema``; fill defaults; reject unknown keys."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ArgError("", f"expected a mapping of arguments, got {_fmt(raw)}")
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        valid = ", ".join(schema) or "none"
        raise ArgError(str(unknown[0]), f"unknown argument (valid: {valid})")
    out: dict[str, Any] = {}
    for key, arg in schema.items():
        if key in raw:
            out[key] = arg.parse(key, raw[key])
        elif arg.default is not None:
            out[key] = arg.parse(key, arg.default)
        elif getattr(arg, "optional", False):
            continue
        else:
            raise ArgError(key, "missing required argument")
    return out
