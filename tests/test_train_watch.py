"""Watching a run: TensorBoard events (read back with tensorboard's own reader), validation and sample
grids by default, the EMA generator (formula, checkpoints, exact resume, restore/eval's choice), W&B."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _train_util import tiny, tiny_shards
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_fid import random_state
from test_lpips import write_weight_files
from typer.testing import CliRunner

from cli.hifacegan_cli import app
from hifacegan.config import auto_every, resolve_config
from hifacegan.ema import EMA, decay_at
from hifacegan.restore import load_generator
from hifacegan.train import load_checkpoint, train

LOSSES = ("g_gan", "g_feat", "g_l1", "d_real", "d_fake")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return tiny_shards(tmp_path_factory.mktemp("shards"))


def records(run_dir, event="train"):
    """log.jsonl's records of `event` by step (a later line for the same step wins)."""
    lines = (Path(run_dir) / "log.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines) if r.get("event") == event}


def board(run_dir) -> EventAccumulator:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def scalars(events: EventAccumulator, tag: str) -> dict[int, float]:
    return {e.step: e.value for e in events.Scalars(tag)}


@pytest.mark.parametrize(("decay", "step", "expected"), [
    (0.999, 0, 0.1), (0.999, 90, 0.91), (0.999, 10_000, 0.999), (0.5, 0, 0.1), (0.5, 100, 0.5)])
def test_ema_decay_warms_up_to_its_value(decay, step, expected):
    assert decay_at(decay, step) == pytest.approx(expected)


def test_ema_update_is_the_average_and_copies_buffers():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
    ema = EMA(net, 0.9)
    reference = {k: v.double().clone() for k, v in net.named_parameters()}
    for step in range(30):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
            net[1].running_mean.add_(1.0)
        ema.update(net, step)
        d = decay_at(0.9, step)
        reference = {k: d * reference[k] + (1 - d) * p.double() for k, p in net.named_parameters()}
    for k, p in ema.model.named_parameters():
        assert torch.allclose(p.double(), reference[k], atol=1e-5), k
        assert not p.requires_grad and not torch.allclose(p, dict(net.named_parameters())[k])
    assert torch.equal(ema.model[1].running_mean, net[1].running_mean) and not ema.model.training


@pytest.mark.parametrize(("max_steps", "every"), [(1000, 100), (5, 1), (40_000, 2000), (250_000, 2000)])
def test_default_cadence_shows_progress_early(max_steps, every):
    cfg = resolve_config(None, {"data": "x", "out": "y", "max_steps": max_steps})
    assert cfg.val_every == every and cfg.sample_every == min(every, 1000) == auto_every(max_steps, 1000)
    for n in (cfg.val_every, cfg.sample_every):
        points = range(n, max_steps + 1, n)
        assert len(points) >= min(4, max_steps) and points[0] <= max(1, max_steps // 10)


def test_default_run_validates_and_samples_each_tenth(shards, tmp_path):
    cfg = tiny(shards, tmp_path / "run", max_steps=4, ckpt_every=4, val_every=None, sample_every=None)
    train(cfg, progress=False)
    assert sorted(records(tmp_path / "run", "val")) == [1, 2, 3, 4]
    assert len(list((tmp_path / "run" / "samples").glob("step_*.png"))) == 4


@pytest.fixture(scope="module")
def metric_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metric_nets")
    alexnet, linear = write_weight_files(tmp)
    torch.save(random_state(), tmp / "inception.pth")
    return {"lpips_alexnet": str(alexnet), "lpips_linear": str(linear), "fid_inception": str(tmp / "inception.pth")}


def test_tensorboard_events_hold_the_logged_numbers_and_grids(shards, tmp_path, metric_files):
    run = tmp_path / "run"
    train(tiny(shards, run, max_steps=2, ckpt_every=2, val_every=1, sample_every=1, **metric_files), progress=False)
    events = board(run)
    tags = set(events.Tags()["scalars"])
    assert {f"loss/{k}" for k in LOSSES} | {"lr/g", "lr/d", "perf/images_per_s", "perf/data_wait_share"} <= tags
    logged, val = records(run), records(run, "val")
    for key, tag in (("g_l1", "loss/g_l1"), ("lr_g", "lr/g"), ("img_per_s", "perf/images_per_s"),
                     ("data_wait", "perf/data_wait_share")):
        assert scalars(events, tag) == pytest.approx({s: r[key] for s, r in logged.items()}, rel=1e-6), tag
    for metric in ("psnr", "ssim", "lpips", "fid", "psnr_lq", "ssim_lq", "lpips_lq", "fid_lq"):
        assert scalars(events, f"val/{metric}") == pytest.approx({s: r[f"val_{metric}"] for s, r in val.items()},
                                                                  rel=1e-6, abs=1e-4), metric
    assert val[1]["model"] == "EMA" and val[2]["val_fid"] > 0 and 0 < val[2]["val_lpips"] < val[2]["val_fid"] + 10
    images = events.Images("samples")
    assert [im.step for im in images] == [1, 2]
    for im in images:  # the PNG in samples/ is the same captioned grid: 3 caption bands + LQ, output, HQ rows
        tb = cv2.imdecode(np.frombuffer(im.encoded_image_string, np.uint8), cv2.IMREAD_COLOR)
        png = cv2.imread(str(run / "samples" / f"step_{im.step:08d}.png"))
        assert tb.shape == png.shape == (3 * 16 + 3 * 64, 2 * 64, 3) and np.array_equal(tb, png)
        assert png[:16].max() > 200 and png[:16].mean() < 60  # white caption text on black


def test_validation_never_changes_the_training_trajectory(shards, tmp_path):
    kw = dict(max_steps=3, ckpt_every=3, decay_start=0.5)
    train(tiny(shards, tmp_path / "watched", val_every=1, sample_every=1, **kw), progress=False)
    train(tiny(shards, tmp_path / "plain", **kw), progress=False)
    watched, plain = records(tmp_path / "watched"), records(tmp_path / "plain")
    assert len(records(tmp_path / "watched", "val")) == 3 and not records(tmp_path / "plain", "val")
    assert [{k: r[k] for k in LOSSES} for r in watched.values()] == [{k: r[k] for k in LOSSES} for r in plain.values()]
    a, b = (load_checkpoint(tmp_path / r / "checkpoints" / "latest.pt") for r in ("watched", "plain"))
    for key in ("G", "D", "G_ema"):
        assert all(torch.equal(v, b[key][k]) for k, v in a[key].items()), key


def test_last_validation_equals_eval_of_the_saved_model(shards, tmp_path):
    """Validation scores what `hifacegan eval` scores by default (the EMA output rounded to 8 bits, RGB),
    so a run's last validation and eval of its checkpoint on the same val pairs agree."""
    from hifacegan.restore import evaluate
    run = tmp_path / "run"
    train(tiny(shards, run, max_steps=2, ckpt_every=2, val_every=2, ema_decay=0.5), progress=False)
    val = records(run, "val")[2]
    G, _ = load_generator(run / "checkpoints" / "latest.pt")
    got = evaluate(G, str(shards))
    assert got["samples"] == val["val_samples"] == 2
    for name in ("psnr", "ssim"):
        assert got["metrics"][f"{name}_restored"] == pytest.approx(val[f"val_{name}"], abs=2e-4), name
        assert got["metrics"][f"{name}_lq"] == pytest.approx(val[f"val_{name}_lq"], abs=2e-4), name


def test_validation_scores_the_output_rounded_to_8_bits():
    """An output a fifth of a gray level off the HQ is the HQ once rounded, as eval and the PNGs see it."""
    from hifacegan.validation import Validator

    class Offset(torch.nn.Module):  # LQ + 0.2/255 (inputs and outputs in [-1, 1])
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.tensor(0.4 / 255))

        def forward(self, x):
            return x + self.bias

    img = torch.from_numpy(np.random.default_rng(0).integers(10, 240, (2, 32, 32, 3), dtype=np.uint8))
    val = Validator([{"lq": img, "hq": img.clone()}], torch.device("cpu"), bf16=False).validate(Offset(), 1)
    assert val["val_psnr"] == 100 and val["val_ssim"] == pytest.approx(1)  # float output: 62 dB


def test_ema_is_resumed_exactly_and_tensorboard_shows_one_curve(shards, tmp_path):
    kw = dict(max_steps=4, ckpt_every=2, val_every=2, ema_decay=0.9)
    train(tiny(shards, tmp_path / "straight", **kw), progress=False)
    train(tiny(shards, tmp_path / "resumed", **kw), progress=False, until=3)  # step 3 is lost: no checkpoint
    train(tiny(shards, tmp_path / "resumed", resume=True, **kw), progress=False)
    a, b = (load_checkpoint(tmp_path / r / "checkpoints" / "latest.pt") for r in ("straight", "resumed"))
    assert all(torch.equal(v, b["G_ema"][k]) for k, v in a["G_ema"].items())
    assert not all(torch.equal(v, a["G"][k]) for k, v in a["G_ema"].items())
    assert records(tmp_path / "straight", "val")[4] == records(tmp_path / "resumed", "val")[4]
    straight, resumed = board(tmp_path / "straight"), board(tmp_path / "resumed")
    for tag in ("loss/g_l1", "val/psnr"):  # the interrupted run's step 3 is hidden (purge_step), not doubled
        assert scalars(resumed, tag) == scalars(straight, tag)
        assert [e.step for e in resumed.Scalars(tag)] == sorted(scalars(straight, tag))


def test_restore_and_eval_use_the_ema_generator_unless_no_ema(shards, tmp_path):
    train(tiny(shards, tmp_path / "ema", max_steps=2, ckpt_every=2, ema_decay=0.5), progress=False)
    train(tiny(shards, tmp_path / "off", max_steps=2, ckpt_every=2, ema_decay=0), progress=False)
    ckpt = tmp_path / "ema" / "checkpoints" / "latest.pt"
    ck = load_checkpoint(ckpt)
    for ema, key in ((True, "G_ema"), (False, "G")):
        G, info = load_generator(ckpt, ema=ema)
        assert info["weights"] == ("ema" if ema else "raw")
        assert all(torch.equal(v, ck[key][k]) for k, v in G.state_dict().items())
    off = tmp_path / "off" / "checkpoints" / "latest.pt"
    assert "G_ema" not in load_checkpoint(off) and load_generator(off)[1]["weights"] == "raw"
    face = tmp_path / "face.png"
    cv2.imwrite(str(face), np.full((64, 64, 3), 128, np.uint8))
    outputs = {}
    for flag in ([], ["--no-ema"]):
        res = CliRunner().invoke(app, ["restore", str(face), "--checkpoint", str(ckpt), "--out",
                                       str(tmp_path / f"out{len(flag)}"), "--device", "cpu", *flag])
        assert res.exit_code == 0 and ("raw G" if flag else "ema G") in res.output, res.output
        outputs[len(flag)] = cv2.imread(str(tmp_path / f"out{len(flag)}" / "face.png"))
    assert not np.array_equal(outputs[0], outputs[1])
    res = CliRunner().invoke(app, ["eval", "--checkpoint", str(ckpt), "--data", str(shards), "--no-ema",
                                   "--device", "cpu"])
    assert res.exit_code == 0 and "raw G" in res.output, res.output


def test_cli_options_reach_the_run(shards, tmp_path):
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "--data", str(shards), "--out", str(run), "--size", "64", "--ngf", "8",
                                   "--max-steps", "2", "--workers", "0", "--ckpt-every", "2", "--log-every", "2",
                                   "--val-every", "2", "--sample-every", "1", "--val-samples", "1",
                                   "--ema-decay", "0.99"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((run / "config.json").read_text())["train"]
    assert (cfg["log_every"], cfg["val_every"], cfg["sample_every"], cfg["val_samples"], cfg["ema_decay"]) == \
        (2, 2, 1, 1, 0.99)
    assert sorted(records(run)) == [2] and records(run, "val")[2]["val_samples"] == 1
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_00000001.png", "step_00000002.png"]
    assert "tensorboard --logdir" in res.output


@pytest.mark.parametrize(("args", "message"), [
    (["--wandb", "proj"], "--wandb: the wandb package is not installed (pip install wandb), or leave out --wandb"),
    (["--ema-decay", "1"], "ema_decay must be in (0, 1), or 0 for no EMA generator, got 1.0"),
    (["--lpips-alexnet", "x.pth"], "--lpips-alexnet: file not found: x.pth"),
])
def test_option_errors_are_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    res = CliRunner().invoke(app, ["train", "--data", "x", "--out", str(tmp_path / "run"), *args])
    assert res.exit_code == 2 and res.output.strip() == f"error: {message}", res.output
    assert not (tmp_path / "run").exists()


def test_wandb_offline_run(shards, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is optional (pip install wandb)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    train(tiny(shards, run, max_steps=1, ckpt_every=1, sample_every=1, wandb="hifacegan-test"), progress=False)
    run_id = (run / "wandb-id.txt").read_text().strip()
    assert list((run / "wandb").glob(f"offline-run-*-{run_id}"))
