"""The facedeg CLI: recipes, degrade, preview through Typer's runner, and once as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import facedeg
from cli.facedeg_cli import app
from facedeg.imread import read_image
from facedeg.plan import Plan
from facedeg.preview import preview_variants
from facedeg.recipe import load_recipe
from facedeg.samples import sample_paths

runner = CliRunner()


def test_recipes_list_and_show() -> None:
    res = runner.invoke(app, ["recipes"])
    assert res.exit_code == 0
    assert "mixed" in res.output and "random order" in res.output
    res = runner.invoke(app, ["recipes", "show", "jpeg"])
    assert res.exit_code == 0 and "compression: [50, 85]" in res.output and "# hash:" in res.output


def test_degrade_writes_lq_and_plan(tmp_path: Path) -> None:
    src = sample_paths()[1]
    out, plan_out = tmp_path / "lq.png", tmp_path / "plan.json"
    args = ["degrade", str(src), "--recipe", "mixed", "--seed", "5", "--out", str(out), "--plan-out", str(plan_out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    lq = np.asarray(Image.open(out))
    hq = np.asarray(Image.open(src).convert("RGB"))
    assert lq.shape == hq.shape
    plan = Plan.from_json(json.loads(plan_out.read_text()))
    assert np.array_equal(plan.apply(hq), lq)
    assert runner.invoke(app, args).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(out)), lq)


def test_preview_default_sample_and_steps(tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    res = runner.invoke(app, ["preview", "--recipe", "mixed", "--n", "3", "--tile", "64", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.count("  #") == 3 and "→" in res.output
    w, h = Image.open(out).size
    assert w > 4 * 64 and h > 64
    res = runner.invoke(app, ["preview", str(sample_paths()[0]), "--recipe", "mixed", "--steps",
                              "--tile", "64", "--out", str(out)])
    assert res.exit_code == 0 and "jpeg {" in res.output


@pytest.mark.parametrize("steps", [False, True])
def test_preview_variant_i_is_degrade_with_seed_plus_i(tmp_path: Path, steps: bool) -> None:
    # one meaning of --seed: variant 0 of `preview --seed 3` is `degrade --seed 3`, variant 2 is seed 5
    src = str(sample_paths()[2])
    args = ["preview", src, "--recipe", "mixed", "--seed", "3", "--n", "3", "--tile", "64",
            "--out", str(tmp_path / "sheet.png")]
    res = runner.invoke(app, args + (["--steps"] if steps else []))
    assert res.exit_code == 0, res.output
    shown = [line.split(": ", 1) for line in res.output.splitlines() if line.startswith("  #")]
    assert [head for head, _ in shown] == (["  #0  seed 3"] if steps else ["  #0  seed 3", "  #1  seed 4", "  #2  seed 5"])
    for i, (_, summary) in enumerate(shown):
        plan_out = tmp_path / f"plan{i}.json"
        res = runner.invoke(app, ["degrade", src, "--recipe", "mixed", "--seed", str(3 + i),
                                  "--out", str(tmp_path / f"lq{i}.png"), "--plan-out", str(plan_out)])
        assert res.exit_code == 0, res.output
        assert res.output.strip().endswith(summary)
        plan = Plan.from_json(json.loads(plan_out.read_text()))
        assert plan.seed == 3 + i
    hq = read_image(src)
    plans = preview_variants(hq, load_recipe("mixed"), n=3, seed=3, tile=64)[1]
    for i, plan in enumerate(plans):
        lq, want = facedeg.degrade(hq, "mixed", 3 + i)
        assert plan.to_json() == want.to_json() and np.array_equal(plan.apply(hq), lq)


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - gaussian_noise: {sigma: [40, 20]}\n")
    cases = [
        (["degrade", str(tmp_path / "missing.png"), "-r", "mixed", "-o", str(tmp_path / "o.png")], "missing.png"),
        (["degrade", str(sample_paths()[0]), "-r", str(bad), "-o", str(tmp_path / "o.png")],
         "steps[0].gaussian_noise.sigma"),
        (["preview", "--recipe", "nope", "--out", str(tmp_path / "p.png")], "unknown recipe 'nope'"),
        (["preview", "--out", str(tmp_path / "p.txt")], "output must end with"),
        # regressions: unwritable outputs used to end in a traceback
        (["degrade", str(sample_paths()[0]), "-r", "jpeg", "-o", str(tmp_path / "o.png"), "--plan-out", str(tmp_path)],
         "is a directory"),
        (["degrade", str(sample_paths()[0]), "-r", "jpeg", "-o", str(bad / "o.png")], "cannot create its folder"),
        (["preview", "--n", "1", "--out", str(bad / "p.png")], "cannot create its folder"),
        (["degrade", str(sample_paths()[0]), "-r", "jpeg", "-o", str(tmp_path / "o.png"),
          "--plan-out", str(bad / "p.json")], "cannot create its folder"),
    ]
    for args, needle in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.output
        assert "Traceback" not in res.output


def test_real_subprocess(tmp_path: Path) -> None:
    exe = [sys.executable, "-m", "cli.facedeg_cli"]
    out = tmp_path / "p.png"
    ok = subprocess.run([*exe, "preview", "--recipe", "noise", "--n", "2", "--tile", "64", "--out", str(out)],
                        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert out.exists()
    bad = subprocess.run([*exe, "preview", "--n", "abc"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr


def test_every_command_has_help_with_examples() -> None:
    for cmd in (["recipes"], ["degrade"], ["preview"], ["recipes", "show"]):
        res = runner.invoke(app, [*cmd, "--help"])
        assert res.exit_code == 0, cmd
        assert "Example" in res.output, cmd


def test_facedeg_never_imports_torch() -> None:
    code = ("import sys, facedeg, facedeg.preview, cli.facedeg_cli; "
            "sys.exit(1 if any(m == 'torch' or m.startswith('torch.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0

