"""Recipes: shipped files load, plans are reproducible, validation names file, key path and reason."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import facedeg
from facedeg.errors import RecipeError
from facedeg.plan import Plan
from facedeg.recipe import Recipe, load_recipe, shipped_recipes
from facedeg.sizes import lq_size

SHIPPED = ["blur", "codeformer", "downsample", "gfpgan", "jpeg", "mixed", "mosaic", "noise", "realesrgan",
           "realesrgan-same-size"]


def test_shipped_recipes_present_and_documented() -> None:
    assert sorted(shipped_recipes()) == SHIPPED
    for name, path in shipped_recipes().items():
        assert path.read_text().startswith("#"), f"{name}.yaml must start with a comment"
        assert load_recipe(name).description


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipe_replays_bit_exact(name: str, small_face: np.ndarray) -> None:
    recipe = load_recipe(name)
    for seed in range(4):
        lq, plan = facedeg.degrade(small_face, recipe, seed)
        assert lq.shape == (*lq_size(small_face.shape, recipe.scale), 3) and lq.dtype == np.uint8
        stored = json.loads(json.dumps(plan.to_json()))
        assert np.array_equal(Plan.from_json(stored).apply(small_face), lq)
        assert recipe.sample(seed, small_face.shape[:2]) == plan


def test_mixed_applies_all_four_in_random_order() -> None:
    recipe = load_recipe("mixed")
    families = {"motion_blur": "blur", "gaussian_blur": "blur", "gaussian_noise": "noise",
                "laplace_noise": "noise", "poisson_noise": "noise", "jpeg": "jpeg", "downsample": "down"}
    orders = set()
    for seed in range(40):
        ops = recipe.sample(seed, (512, 512)).ops_fired()
        fams = [families[o] for o in ops]
        assert sorted(fams) == ["blur", "down", "jpeg", "noise"]
        orders.add(tuple(fams))
    assert len(orders) > 10


def test_plan_depends_only_on_seed() -> None:
    recipe = load_recipe("mixed")
    a = [recipe.sample(facedeg.derive_seed(0, f"{k:08d}"), (64, 64)) for k in range(10)]
    b = [recipe.sample(facedeg.derive_seed(0, f"{k:08d}"), (64, 64)) for k in reversed(range(10))]
    assert a == b[::-1]
    assert len({p.summary() for p in a}) > 5


def test_hash_is_stable_and_content_based(tmp_path: Path) -> None:
    r = load_recipe("jpeg")
    copy = tmp_path / "renamed.yaml"
    copy.write_text("# other comment\ndescription: another text\nsteps:\n  - jpeg: {compression: [50, 85]}\n")
    assert load_recipe(copy).hash == r.hash
    copy.write_text("description: x\nsteps:\n  - jpeg: {compression: [50, 86]}\n")
    assert load_recipe(copy).hash != r.hash
    assert Recipe.from_dict(r.to_dict()).hash == r.hash


def test_some_of_and_maybe_and_weights() -> None:
    r = Recipe.from_dict({"steps": [
        {"some_of": {"n": [1, 2], "steps": [{"jpeg": {"quality": 50}}, {"mosaic": {"block": 4}},
                                             {"webp": {"quality": 50}}]}},
        {"maybe": {"p": 0.5, "steps": [{"gaussian_noise": {"sigma": 5}}]}},
        {"one_of": {"weights": [1, 0], "steps": [{"downsample": {"scale": 2}}, {"defocus_blur": {"radius": 2}}]}},
    ]})
    counts = {"noise": 0}
    for seed in range(200):
        ops = r.sample(seed, (32, 32)).ops_fired()
        assert ops[-1] == "downsample" and "defocus_blur" not in ops
        assert 1 <= len([o for o in ops if o in ("jpeg", "mosaic", "webp")]) <= 2
        counts["noise"] += "gaussian_noise" in ops
    assert 70 < counts["noise"] < 130


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text,expected", [
    ("steps:\n  - jpeg: {quality: 30}\n  - gaussian_noise: {sigma: [40, 20]}\n",
     "steps[1].gaussian_noise.sigma: expected [min, max] of numbers with 0 <= min <= max <= 255, got [40, 20]"),
    ("steps:\n  - jpeg: {quality: [0, 50]}\n", "steps[0].jpeg.quality: expected [min, max] of integers"),
    ("steps:\n  - jpeg: {qualty: 30}\n", "steps[0].jpeg.qualty: unknown argument (valid: quality, compression)"),
    ("steps:\n  - jpg: {quality: 30}\n", "steps[0].jpg: unknown op or node"),
    ("steps:\n  - jpeg: {}\n", "steps[0].jpeg.quality: missing required argument (or give compression"),
    ("steps:\n  - jpeg: {quality: 30, compression: 50}\n", "steps[0].jpeg.compression: give quality or compression, not both"),
    ("steps:\n  - motion_blur: {length: 9, direction: [-1, 1]}\n", "steps[0].motion_blur.direction: only used with kernel: imgaug"),
    ("steps:\n  - gaussian_blur: {sigma: 3, truncate: 2sigma}\n", "steps[0].gaussian_blur.truncate: expected one of 3sigma, imgaug"),
    ("steps:\n  - downsample: {scale: [4, 8], draw: inverse}\n", "steps[0].downsample.draw: expected one of factor, fraction"),
    ("steps:\n  - mosaic: {block: 16, rounding: up}\n", "steps[0].mosaic.rounding: expected one of nearest, floor"),
    ("stepz: []\n", "recipe: expected|stepz: unknown key"),
    ("description: x\n", "steps: missing required key"),
    ("steps: []\n", "steps: expected a non-empty list"),
    ("steps:\n  - maybe: {p: 1.5, steps: [{jpeg: {quality: 30}}]}\n", "steps[0].maybe.p: expected a probability"),
    ("steps:\n  - one_of: {weights: [1], steps: [{jpeg: {quality: 3}}, {webp: {quality: 3}}]}\n",
     "steps[0].one_of.weights: expected 2 non-negative numbers"),
    ("steps:\n  - some_of: {n: 3, steps: [{jpeg: {quality: 3}}]}\n", "steps[0].some_of.n: expected"),
    ("steps:\n  - random_order:\n      - downsample: {scale: [4, 8], down: bilinear}\n",
     "steps[0].random_order[0].downsample.down: expected one of nearest, linear, cubic, area, lanczos"),
    ("steps:\n  - jpeg: {quality: 30}\n    webp: {quality: 30}\n", "steps[0]: expected a single-key mapping"),
    ("steps:\n  - poisson_noise: {lam: 3, scale: 1}\n", "steps[0].poisson_noise.lam: give exactly one"),
    ("steps: [jpeg: {quality: 30}\n", "invalid YAML at line"),
    ("steps:\n  - albumentations: {transform: GaussNoise, args: {std_limit: [0.1, 0.2]}}\n",
     "steps[0].albumentations.args: GaussNoise: Argument(s) 'std_limit' are not valid"),
    # regressions found in review: each used to crash later, pass silently, or print several lines
    ("steps:\n  - one_of: {weights: [.inf, 1], steps: [{jpeg: {quality: 3}}, {webp: {quality: 3}}]}\n",
     "steps[0].one_of.weights: expected 2 non-negative numbers"),
    ("steps:\n  - one_of: {weights: [1.0e+308, 1.0e+308], steps: [{jpeg: {quality: 3}}, {webp: {quality: 3}}]}\n",
     "steps[0].one_of.weights: expected 2 non-negative numbers"),
    ("steps:\n  - jpeg: {quality: 3}\nsteps:\n  - webp: {quality: 3}\n", "invalid YAML at line 3, column 1: duplicate key 'steps'"),
    ("steps:\n  - jpeg: {quality: 3, quality: 90}\n", "duplicate key 'quality'"),
    ("steps:\n  - mosaic: {block: [1, 1" + "0" * 400 + "]}\n", "steps[0].mosaic.block: expected [min, max] of integers"),
    ("steps:\n  - gaussian_blur: {sigma: 3, max_kernel: 1" + "0" * 400 + "}\n", "steps[0].gaussian_blur.max_kernel"),
    ("name: [1]\nsteps:\n  - jpeg: {quality: 3}\n", "name: expected a string"),
    ("steps: &s\n  - sequence: *s\n", "nested too deeply"),
    ("\x00steps: []\n", "invalid YAML: unacceptable character"),
    ("", "recipe: expected a mapping"),
    ("- jpeg: {quality: 3}\n", "recipe: expected a mapping"),
    ("steps:\n  - jpeg: {quality: true}\n", "steps[0].jpeg.quality: expected [min, max] of integers"),
    ("steps:\n  - gaussian_noise: {sigma: [.nan, 3]}\n", "steps[0].gaussian_noise.sigma: expected"),
])
def test_validation_messages(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert any(e in message for e in expected.split("|")), message


def test_unknown_recipe_name_lists_shipped() -> None:
    with pytest.raises(RecipeError, match="shipped recipes are blur, codeformer"):
        load_recipe("nope")


def test_missing_file() -> None:
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe("/no/such/recipe.yaml")


def test_plan_from_json_rejects_unknown_op() -> None:
    with pytest.raises(facedeg.FacedegError, match="unknown op 'explode'"):
        Plan.from_json({"steps": [{"op": "explode", "params": {}}]})


@pytest.mark.parametrize("data,needle", [
    (None, "expected an object with a 'steps' list"),
    ({"steps": {}}, "expected an object with a 'steps' list"),
    ({"steps": [1]}, "plan step 0: expected"),
    ({"steps": [{"op": "jpeg"}]}, "plan step 0: expected"),
    ({"steps": [{"op": "jpeg", "params": {}}]}, "missing param 'quality'"),
    ({"steps": [{"op": "jpeg", "params": {"quality": "abc"}}]}, "param 'quality' should be int"),
    ({"steps": [{"op": "jpeg", "params": {"quality": 30, "x": 1}}]}, "unknown param 'x'"),
    ({"steps": [{"op": "jpeg", "params": {"quality": 30}}], "seed": "x"}, "seed must be an integer"),
])
def test_plan_from_json_rejects_malformed(data, needle: str) -> None:
    with pytest.raises(facedeg.FacedegError, match=re.escape(needle)):
        Plan.from_json(data)


def test_plan_with_unusable_params_raises_facedeg_error(small_face: np.ndarray) -> None:
    # Well-typed but unusable values (a hand-edited plan) fail as one FacedegError naming the step.
    for step in ({"op": "mosaic", "params": {"block": 0}},
                 {"op": "downsample", "params": {"scale": 2.0, "down": "foo"}},
                 {"op": "gaussian_noise", "params": {"sigma": 3.0, "seed": -1}}):
        plan = Plan.from_json({"steps": [step]})
        with pytest.raises(facedeg.FacedegError, match=f"plan step 0 \\({step['op']}\\)"):
            plan.apply(small_face)


@pytest.mark.parametrize("image", [np.zeros((0, 5, 3), np.uint8), np.zeros((8, 8), np.uint8),
                                   np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32), [[1, 2]]])
def test_degrade_rejects_non_rgb8(image) -> None:
    with pytest.raises(ValueError, match="expected a non-empty uint8 HxWx3 RGB array"):
        facedeg.degrade(image, "mixed", 0)


def test_derive_seed_contract() -> None:
    assert facedeg.derive_seed(0, "00000001") == facedeg.derive_seed(0, "00000001")
    assert facedeg.derive_seed(0, "00000001") != facedeg.derive_seed(1, "00000001")
    assert facedeg.derive_seed(0, 1, 2, 3) != facedeg.derive_seed(0, 1, 3, 2)
    assert 0 <= facedeg.derive_seed(7, "x") < 2**63


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000, 1001])
def test_random_u32_equals_integers(n: int) -> None:
    """The fast uniform source gives the very values ``integers`` gives, so noise keeps its bytes."""
    from facedeg.seeds import random_u32, rng_from
    want = rng_from(99).integers(0, 1 << 32, n, dtype=np.uint32)
    assert random_u32(99, n).dtype == np.uint32 and np.array_equal(random_u32(99, n), want)
