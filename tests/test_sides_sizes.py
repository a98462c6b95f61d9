"""Steps on the HQ side, LQ sizes other than the HQ's, and the recipe errors of the Real-ESRGAN ops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_ops import OP_TABLE

from facedeg.build import BuildConfig, build
from facedeg.build.shards import SRC_MEMBER, iter_tar_samples, read_manifest
from facedeg.build.verify import inspect, replay, verify
from facedeg.errors import FacedegError, RecipeError
from facedeg.ops import LQ_ONLY, OPS
from facedeg.plan import Plan, Step
from facedeg.recipe import Recipe, load_recipe
from facedeg.sizes import fit, lq_size, pair_scale, to_hq_size


def _recipe(steps: list, **top) -> Recipe:
    return Recipe.from_dict({"steps": steps, **top}, source="r.yaml")


# ---------------------------------------------------------------- sides


@pytest.mark.parametrize("name", sorted(set(OPS) - LQ_ONLY))
def test_every_hq_side_op_keeps_the_pair_aligned(name: str, small_face: np.ndarray) -> None:
    """An op on both sides gets the same params on each: same input, same output, same size."""
    params = OPS[name](OP_TABLE[name]).sample(np.random.default_rng(3), small_face.shape[:2])
    hq, lq = Plan((Step(name, params, "both"),), 0, 1.0).apply_pair(small_face)
    assert hq.shape == small_face.shape and np.array_equal(hq, lq)
    hq_only, lq_untouched = Plan((Step(name, params, "hq"),), 0, 1.0).apply_pair(small_face)
    assert np.array_equal(hq_only, hq) and np.array_equal(lq_untouched, small_face)


def test_sides_run_in_order_and_replay_from_json(small_face: np.ndarray) -> None:
    recipe = _recipe([{"usm_sharpen": {"side": "both"}}, {"jpeg": {"quality": 20}},
                      {"grayscale": {"side": "both"}}, {"color_shift": {"shift": 30, "side": "hq"}}])
    plan = recipe.sample(1, small_face.shape[:2])
    assert [s["side"] for s in plan.to_json()["steps"]] == ["both", "lq", "both", "hq"]
    hq, lq = plan.apply_pair(small_face)
    assert (lq[..., 0] == lq[..., 1]).all() and not (hq[..., 0] == hq[..., 1]).all()  # gray, then HQ shifted
    again = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again == plan and all(np.array_equal(a, b) for a, b in zip(again.apply_pair(small_face), (hq, lq), strict=True))
    assert not plan.replays_from_hq and "[both]" in plan.summary()
    head = _recipe([{"usm_sharpen": {"side": "both"}}, {"jpeg": {"quality": 20}}]).sample(1, small_face.shape[:2])
    hq, lq = head.apply_pair(small_face)
    assert head.replays_from_hq and np.array_equal(head.lq_from_hq(hq), lq)


def test_plans_without_sides_or_scale_still_read() -> None:
    plan = Plan.from_json({"seed": 1, "steps": [{"op": "jpeg", "params": {"quality": 50}}]})
    assert plan.steps[0].side == "lq" and plan.scale is None
    with pytest.raises(FacedegError, match="bad side 'hq'"):
        Plan.from_json({"seed": 1, "steps": [{"op": "resize", "params": {"size": [4, 4]}, "side": "hq"}]})


# ---------------------------------------------------------------- sizes


def test_size_rules() -> None:
    assert lq_size((512, 512), 4) == (128, 128) and lq_size((7, 9), 4) == (1, 2)
    assert pair_scale((512, 512), (128, 128)) == 4 and pair_scale((512, 512), (512, 512)) == 1
    assert pair_scale((512, 512), (128, 96)) is None and pair_scale((64, 64), (65, 65)) is None
    img = np.full((10, 20, 3), 7, np.uint8)
    assert fit(img, (10, 20)) is img and fit(img, (5, 10)).shape == (5, 10, 3)
    assert to_hq_size(img, (40, 80, 3)).shape == (40, 80, 3)


@pytest.mark.parametrize("steps, top, lq_shape", [
    ([{"downsample": {"scale": 4, "keep_size": False}}], {}, (64, 64)),  # fitted back: issue 8 item 4
    ([{"resize": {"size": 1}}], {}, (64, 64)),
    ([{"downsample": {"scale": [2, 8], "keep_size": False}}], {"keep_size": False, "scale": 4}, (16, 16)),
    ([{"jpeg": {"quality": 30}}], {"keep_size": False, "scale": 3}, (21, 21)),
])
def test_lq_ends_at_the_recipe_size(steps, top, lq_shape, small_face: np.ndarray) -> None:
    face = small_face[:64, :64]
    recipe = _recipe(steps, **top)
    for seed in range(3):
        plan = recipe.sample(seed, (64, 64))
        lq = plan.apply(face)
        assert lq.shape == (*lq_shape, 3)
        assert np.array_equal(Plan.from_json(json.loads(json.dumps(plan.to_json()))).apply(face), lq)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("raw, where", [
    ({"steps": [{"kernel_blur": {"sigma": 1, "beta_generalized": [0, 2]}}]}, "steps[0].kernel_blur.beta_generalized:"),
    ({"steps": [{"sinc": {"omega": [0.5, 3.2]}}]}, "steps[0].sinc.omega:"),
    ({"steps": [{"sinc": {"omega": 1, "size": [6, 10]}}]}, "steps[0].sinc.size: expected odd"),
    ({"steps": [{"random_resize": {"probs": [0.5, 0.4, 0.3]}}]}, "steps[0].random_resize.probs:"),
    ({"steps": [{"random_resize": {"range": [1.2, 2]}}]}, "steps[0].random_resize.range:"),
    ({"steps": [{"kernel_blur": {"sigma": 1, "kinds": ["iso", "aniso"], "probs": [0.6, 0.6]}}]},
     "steps[0].kernel_blur.probs:"),
    ({"steps": [{"kernel_blur": {"sigma": 1, "kinds": ["iso", "aniso"], "probs": [1.0]}}]}, "steps[0].kernel_blur.probs:"),
    ({"steps": [{"jpeg": {"quality": 50}}], "keep_size": False, "scale": 0.5}, "scale: expected a number in [1, 64]"),
    ({"steps": [{"jpeg": {"quality": 50}}], "keep_size": False}, "scale: missing"),
    ({"steps": [{"jpeg": {"quality": 50}}], "scale": 2}, "scale: only with keep_size: false"),
    ({"steps": [{"maybe": {"p": 1, "steps": [{"downsample": {"scale": 2, "side": "both"}}]}}]},
     "steps[0].maybe.steps[0].downsample.side:"),
    ({"steps": [{"grayscale": {"side": "gt"}}]}, "steps[0].grayscale.side: expected one of lq, hq, both"),
    ({"steps": [{"color_jitter": {}}]}, "steps[0].color_jitter.brightness:"),
    ({"steps": [{"usm_sharpen": {"radius": 50}}]}, "steps[0].usm_sharpen.radius:"),
    ({"steps": [{"poisson_noise": {"lam": 20, "sampler": "table"}}]}, "steps[0].poisson_noise.sampler: applies to"),
    ({"steps": [{"poisson_noise": {"scale": 1, "sampler": "fast"}}]}, "steps[0].poisson_noise.sampler: expected one of"),
])
def test_bad_params_are_one_line_errors_with_the_key_path(raw, where) -> None:
    with pytest.raises(RecipeError) as e:
        Recipe.from_dict(raw, source="r.yaml")
    message = str(e.value)
    assert message.startswith(f"r.yaml: {where}") and "\n" not in message


def test_realesrgan_recipes_follow_the_published_pipeline() -> None:
    sr, same = load_recipe("realesrgan"), load_recipe("realesrgan-same-size")
    assert (sr.scale, same.scale) == (4.0, 1.0) and sr.hash != same.hash
    fired = [sr.sample(seed, (512, 512)) for seed in range(60)]
    assert all(p.steps[0].op == "usm_sharpen" and p.steps[0].side == "both" for p in fired)
    assert all(p.ops_fired().count("jpeg") == 2 for p in fired)
    assert any("sinc" in p.ops_fired() for p in fired) and any("kernel_blur" in p.ops_fired() for p in fired)
    gfpgan = load_recipe("gfpgan")
    ops = [op for seed in range(300) for op in gfpgan.sample(seed, (64, 64)).ops_fired()]
    assert 0.2 < ops.count("color_shift") / 300 < 0.4 and 0.2 < ops.count("color_jitter") / 300 < 0.4


# ---------------------------------------------------------------- builds


def _samples(out: Path) -> list[tuple[str, dict]]:
    return [(k, m) for shard in sorted(out.glob("*.tar")) for k, m in iter_tar_samples(shard)]


def test_sr_shaped_build_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "sr"
    build(BuildConfig(recipe="realesrgan", out=out, size=64, variants=3, val_fraction=0.3, shard_size=4))
    manifest = read_manifest(out)
    assert manifest["scale"] == 4 and manifest["lq_size"] == [16, 16]
    report = verify(out)
    assert report.ok, report.problems
    samples = _samples(out)
    for key, members in samples[:4]:
        meta = json.loads(members["json"])
        assert meta["lq_size"] == [16, 16] and meta["plan"]["scale"] == 4
        assert SRC_MEMBER not in members  # the USM on both sides comes first: the HQ rebuilds the LQ
        assert replay(out, key).identical
    summary = inspect(out)
    assert summary["ops_fired"]["usm_sharpen"] == len(samples)
    assert all(b["median"] < 40 for b in summary["psnr_by_branch"].values())


def test_hq_touched_after_the_lq_chain_stores_the_source(tmp_path: Path) -> None:
    recipe = tmp_path / "gray.yaml"
    recipe.write_text("steps:\n  - jpeg: {quality: 20}\n  - grayscale: {side: both}\n"
                      "  - color_shift: {shift: 40, side: hq}\n")
    out = tmp_path / "o"
    build(BuildConfig(recipe=str(recipe), out=out, size=32, variants=1, val_fraction=0))
    assert verify(out).ok
    key, members = _samples(out)[0]
    assert SRC_MEMBER in members and replay(out, key).identical


@pytest.mark.parametrize("text", ["steps: [{resize: {size: 1}}]",
                                  "steps: [{downsample: {scale: 4, keep_size: false}}]"])
def test_size_changing_recipes_build_and_verify(tmp_path: Path, text: str) -> None:
    """Issue 8 item 4: these crashed the build or failed every sample in verify."""
    (tmp_path / "r.yaml").write_text(text)
    out = tmp_path / "o"
    build(BuildConfig(recipe=str(tmp_path / "r.yaml"), out=out, size=32, variants=1, val_fraction=0))
    assert verify(out).ok and read_manifest(out)["lq_size"] == [32, 32]
