"""Recipes: a typed tree of control nodes and op leaves, loaded from YAML with strict validation.

YAML form::

    description: what this models and where the ranges come from
    steps:                       # a sequence
      - random_order:            # or sequence / one_of / some_of / maybe
          - jpeg: {quality: [15, 50]}
          - one_of: {weights: [2, 1], steps: [{motion_blur: {length: [10, 20]}}, {gaussian_blur: {sigma: [3, 8]}}]}
          - maybe: {p: 0.5, steps: [{gaussian_noise: {sigma: [20, 40]}}]}
          - some_of: {n: [1, 2], steps: [...]}
          - grayscale: {side: both}  # side: lq (default), hq or both; size-changing ops act on the LQ only

    keep_size: false             # optional: the LQ ends at 1/scale of the HQ size (default: HQ size)
    scale: 4
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from facedeg.errors import RecipeError
from facedeg.ops import LQ_ONLY, OPS, OpSpec
from facedeg.ops.args import ArgError, is_number
from facedeg.plan import SIDES, Plan, Step
from facedeg.seeds import rng_from
from facedeg.yamlfile import read_yaml

CONTROL = ("sequence", "random_order", "one_of", "some_of", "maybe")


class _Invalid(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


# ---------------------------------------------------------------- nodes


@dataclass(frozen=True)
class OpNode:
    spec: OpSpec
    side: str = "lq"

    def draw(self, rng: np.random.Generator, shape: tuple[int, int], out: list[Step]) -> None:
        out.append(Step(self.spec.name, self.spec.sample(rng, shape), self.side))

    def to_dict(self) -> dict[str, Any]:
        args = self.spec.to_dict()
        return {self.spec.name: args if self.side == "lq" else {"side": self.side, **args}}


@dataclass(frozen=True)
class Sequence:
    steps: tuple[Node, ...]

    def draw(self, rng: np.random.Generator, shape: tuple[int, int], out: list[Step]) -> None:
        for node in self.steps:
            node.draw(rng, shape, out)

    def to_dict(self) -> dict[str, Any]:
        return {"sequence": [n.to_dict() for n in self.steps]}


@dataclass(frozen=True)
class RandomOrder:
    steps: tuple[Node, ...]

    def draw(self, rng: np.random.Generator, shape: tuple[int, int], out: list[Step]) -> None:
        for i in rng.permutation(len(self.steps)):
            self.steps[int(i)].draw(rng, shape, out)

    def to_dict(self) -> dict[str, Any]:
        return {"random_order": [n.to_dict() for n in self.steps]}


@dataclass(frozen=True)
class OneOf:
    steps: tuple[Node, ...]
    weights: tuple[float, ...]

    def draw(self, rng: np.random.Generator, shape: tuple[int, int], out: list[Step]) -> None:
        p = np.asarray(self.weights) / sum(self.weights)
        self.steps[int(rng.choice(len(self.steps), p=p))].draw(rng, shape, out)

    def to_dict(self) -> dict[str, Any]:
        return {"one_of": {"weights": list(self.weights), "steps": [n.to_dict() for n in self.steps]}}


@dataclass(frozen=True)
class SomeOf:
    steps: tuple[Node, ...]
    n: tuple[int, int]

    def draw(self, rng: np.random.Generator, shape: tuple[int, int], out: list[Step]) -> None:
        k = int(rng.integers(self.n[0], self.n[1] + 1))
        for i in sorted(rng.choice(len(self.steps), size=k, replace=False).tolist()):
            self.steps[i].draw(rng, shape, out)

    def to_dict(self) -> dict[str, Any]:
        return {"some_of": {"n": list(self.n), "steps": [n.to_dict() for n in self.steps]}}


@dataclass(frozen=True)
class Maybe:
    p: float
    steps: tuple[Node, ...]

    def draw(self, rng: np.random.Generator, shape: tuple[int, int], out: list[Step]) -> None:
        if rng.random() < self.p:
            for node in self.steps:
                node.draw(rng, shape, out)

    def to_dict(self) -> dict[str, Any]:
        return {"maybe": {"p": self.p, "steps": [n.to_dict() for n in self.steps]}}


Node = OpNode | Sequence | RandomOrder | OneOf | SomeOf | Maybe


# ---------------------------------------------------------------- parsing


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: error messages stay one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fields(path: str, raw: Any, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _Invalid(path, f"expected a mapping with keys {', '.join(sorted(allowed))}, got {_short(raw)}")
    for key in raw:
        if key not in allowed:
            raise _Invalid(f"{path}.{key}", f"unknown key (valid: {', '.join(sorted(allowed))})")
    for key in sorted(required - set(raw)):
        raise _Invalid(f"{path}.{key}", "missing required key")
    return raw


def _steps(path: str, raw: Any) -> tuple[Node, ...]:
    if not isinstance(raw, list) or not raw:
        raise _Invalid(path, f"expected a non-empty list of steps, got {_short(raw)}")
    return tuple(parse_node(f"{path}[{i}]", item) for i, item in enumerate(raw))


def parse_node(path: str, raw: Any) -> Node:
    """Parse one step: a single-key mapping naming a control node or an op."""
    if not isinstance(raw, dict) or len(raw) != 1:
        raise _Invalid(path, f"expected a single-key mapping like {{jpeg: {{quality: [30, 80]}}}}, got {_short(raw)}")
    (kind, body), = raw.items()
    here = f"{path}.{kind}"
    if kind in ("sequence", "random_order"):
        steps = _steps(here, body) if isinstance(body, list) else _steps(
            f"{here}.steps", _fields(here, body, {"steps"}, {"steps"})["steps"])
        return Sequence(steps) if kind == "sequence" else RandomOrder(steps)
    if kind == "one_of":
        if isinstance(body, list):
            steps = _steps(here, body)
            return OneOf(steps, tuple(1.0 for _ in steps))
        body = _fields(here, body, {"steps", "weights"}, {"steps"})
        steps = _steps(f"{here}.steps", body["steps"])
        weights = body.get("weights", [1.0] * len(steps))
        if not (isinstance(weights, list) and len(weights) == len(steps) and all(is_number(w) and w >= 0 for w in weights)
                and 0 < sum(map(float, weights)) < math.inf):
            raise _Invalid(f"{here}.weights", f"expected {len(steps)} non-negative numbers (finite, not all zero), "
                                              f"got {_short(weights)}")
        return OneOf(steps, tuple(float(w) for w in weights))
    if kind == "some_of":
        body = _fields(here, body, {"steps", "n"}, {"steps", "n"})
        steps = _steps(f"{here}.steps", body["steps"])
        n = body["n"]
        n = [n, n] if isinstance(n, int) and not isinstance(n, bool) else n
        if not (isinstance(n, list) and len(n) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in n)
                and 0 <= n[0] <= n[1] <= len(steps)):
            raise _Invalid(f"{here}.n", f"expected an integer or [min, max] with 0 <= min <= max <= {len(steps)}, "
                                        f"got {_short(body['n'])}")
        return SomeOf(steps, (n[0], n[1]))
    if kind == "maybe":
        body = _fields(here, body, {"p", "steps"}, {"p", "steps"})
        if not (is_number(body["p"]) and 0 <= body["p"] <= 1):
            raise _Invalid(f"{here}.p", f"expected a probability in [0, 1], got {_short(body['p'])}")
        return Maybe(float(body["p"]), _steps(f"{here}.steps", body["steps"]))
    if kind in OPS:
        side = "lq"
        if isinstance(body, dict) and "side" in body:  # which image(s) the op acts on; not an op argument
            body = dict(body)
            side = body.pop("side")
            if side not in SIDES:
                raise _Invalid(f"{here}.side", f"expected one of {', '.join(SIDES)}, got {side!r}")
            if side != "lq" and kind in LQ_ONLY:
                raise _Invalid(f"{here}.side", f"{kind} changes the image size, so it acts on the LQ only")
        try:
            return OpNode(OPS[kind](body), side)
        except ArgError as e:
            raise _Invalid(f"{here}.{e.key}" if e.key else here, e.reason) from None
    raise _Invalid(here, f"unknown op or node (ops: {', '.join(OPS)}; nodes: {', '.join(CONTROL)})")


# ---------------------------------------------------------------- recipe


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    root: Sequence
    source: str = "<recipe>"
    scale: float = 1.0  # the LQ comes out at 1/scale of the HQ size (keep_size: false); 1: the HQ size

    @property
    def keep_size(self) -> bool:
        return self.scale == 1

    def sample(self, seed: int, shape: tuple[int, int]) -> Plan:
        """Draw the plan for one image. Depends only on (recipe, seed, shape)."""
        steps: list[Step] = []
        self.root.draw(rng_from(seed), (int(shape[0]), int(shape[1])), steps)
        return Plan(tuple(steps), int(seed), self.scale)

    def _output(self) -> dict[str, Any]:
        return {} if self.keep_size else {"keep_size": False, "scale": self.scale}

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe (defaults filled in), as saved in dataset manifests."""
        return {"name": self.name, "description": self.description, **self._output(),
                "steps": [n.to_dict() for n in self.root.steps]}

    @property
    def hash(self) -> str:
        """sha256 of the canonical resolved steps and output size (name and description do not count)."""
        content: Any = [n.to_dict() for n in self.root.steps]
        if not self.keep_size:  # same-size recipes hash as they did before the LQ size could change
            content = {"steps": content, **self._output()}
        text = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: Any, source: str = "<recipe>", name: str | None = None) -> Recipe:
        """Validate a recipe mapping; errors name ``source``, the key path and the reason."""
        try:
            body = _fields("recipe", data, {"name", "description", "steps", "keep_size", "scale"}, {"steps"})
            desc = body.get("description", "")
            for key, value in (("description", desc), ("name", body.get("name", ""))):
                if not isinstance(value, str):
                    raise _Invalid(key, f"expected a string, got {_short(value)}")
            scale = _output_scale(body)
            root = Sequence(_steps("steps", body["steps"]))
        except _Invalid as e:
            path = e.path.removeprefix("recipe.")
            raise RecipeError(f"{source}: {path}: {e.reason}") from None
        except RecursionError:  # e.g. a YAML alias that contains itself
            raise RecipeError(f"{source}: steps: nested too deeply (a step that contains itself?)") from None
        return cls(str(body.get("name") or name or Path(source).stem), desc.strip(), root, source, scale)


def _output_scale(body: dict[str, Any]) -> float:
    """The LQ scale from the recipe's ``keep_size`` (default true) and ``scale`` keys."""
    keep = body.get("keep_size", True)
    if not isinstance(keep, bool):
        raise _Invalid("keep_size", f"expected true or false, got {keep!r}")
    if keep:
        if "scale" in body:
            raise _Invalid("scale", "only with keep_size: false (the LQ at 1/scale of the HQ size)")
        return 1.0
    scale = body.get("scale")
    if scale is None:
        raise _Invalid("scale", "missing: keep_size: false needs the LQ's scale (e.g. 4 for a quarter of the HQ size)")
    if not (is_number(scale) and 1 <= scale <= 64):
        raise _Invalid("scale", f"expected a number in [1, 64] (the HQ is scale times the LQ), got {scale!r}")
    return float(scale)


def recipes_dir() -> Path:
    """Folder of the shipped recipes (installed as package data ``facedeg.recipes``)."""
    try:
        return Path(str(resources.files("facedeg.recipes")))
    except ModuleNotFoundError:  # running from a source tree without installing
        return Path(__file__).resolve().parent.parent / "recipes"


def shipped_recipes() -> dict[str, Path]:
    return {p.stem: p for p in sorted(recipes_dir().glob("*.yaml"))}


def load_recipe_file(path: str | Path) -> Recipe:
    """A recipe YAML file, read within the limits of :mod:`facedeg.yamlfile` (size, nesting, aliases)."""
    path = Path(path)
    data = read_yaml(path, RecipeError, "recipe")
    return Recipe.from_dict(data, source=str(path), name=path.stem)


def load_recipe(name_or_path: str | Path | Recipe) -> Recipe:
    """A shipped recipe by name (``mixed``) or a YAML file by path; a Recipe is returned as is."""
    if isinstance(name_or_path, Recipe):
        return name_or_path
    text = str(name_or_path)
    shipped = shipped_recipes()
    if text in shipped:
        return load_recipe_file(shipped[text])
    if Path(text).is_file() or text.endswith((".yaml", ".yml")):
        return load_recipe_file(text)
    raise RecipeError(f"unknown recipe {text!r}: shipped recipes are {', '.join(shipped)}; or give a path to a .yaml file")
