"""Training loop on CPU at tiny sizes: a step, overfitting, exact resume, checkpoints, DDP with torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _shards import write_folder, write_shards
from _train_util import tiny, tiny_shards

from hifacegan.config import resolve_config
from hifacegan.data import val_batches
from hifacegan.errors import CheckpointError, ConfigError, DataError
from hifacegan.models import build_generator
from hifacegan.train import load_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return tiny_shards(tmp_path_factory.mktemp("shards"))


def records(run_dir, event="train"):
    lines = (Path(run_dir) / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == event]


def test_one_step_changes_weights_with_finite_losses(shards, tmp_path):
    cfg = tiny(shards, tmp_path / "run", max_steps=1, ckpt_every=1, sample_every=1, val_every=1)
    torch.manual_seed(cfg.seed)
    before = build_generator(cfg.variant, cfg.ngf, cfg.size).state_dict()
    result = train(cfg, progress=False)
    after = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["G"]
    changed = [k for k, v in before.items() if v.dtype.is_floating_point and not torch.equal(v, after[k])]
    assert len(changed) > len(before) // 2
    losses = {k: result[k] for k in ("g_gan", "g_feat", "g_l1", "d_real", "d_fake")}
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    assert (tmp_path / "run" / "samples" / "step_00000001.png").is_file()
    val = records(tmp_path / "run", "val")[0]
    assert val["val_samples"] == 2 and 5 < val["val_psnr_lq"] < 60


def test_overfit_two_real_faces_lowers_l1(tmp_path):
    data = write_shards(tmp_path / "pair", 2, 0, per_shard=2)
    cfg = tiny(data, tmp_path / "run", max_steps=50, ckpt_every=50, log_every=10, decay_start=1.0)
    batch = next(val_batches(str(data / "train-000000.tar"), 64, 2, limit=2))
    lq = batch["lq"].permute(0, 3, 1, 2).float() / 127.5 - 1
    hq = batch["hq"].permute(0, 3, 1, 2).float() / 127.5 - 1

    def l1(G):
        with torch.no_grad():
            return (G.eval()(lq) - hq).abs().mean().item()

    torch.manual_seed(cfg.seed)
    start = l1(build_generator(cfg.variant, cfg.ngf, cfg.size))
    train(cfg, progress=False)
    G = build_generator(cfg.variant, cfg.ngf, cfg.size)
    G.load_state_dict(load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["G"])
    end = l1(G)
    assert end < 0.75 * start, (start, end)


LOSSES = ("g_gan", "g_feat", "g_l1", "d_real", "d_fake", "lr_g", "lr_d", "skipped")


def trajectory(run_dir) -> list[dict]:
    return [{"step": r["step"], **{k: r[k] for k in LOSSES}} for r in records(run_dir)]


def test_stopped_at_any_step_and_resumed_equals_the_uninterrupted_run(tmp_path):
    # 2 loader workers, a shuffle buffer and a corrupt sample: the stream is continued from the saved
    # cursors (odd and even stops: the resumed loader's workers rotate); decay_start 0.5: the LR
    # schedule is decaying across the stops
    data = write_shards(tmp_path / "d", 10, 2, per_shard=2, corrupt=("00000003",))
    kw = dict(max_steps=4, ckpt_every=1, decay_start=0.5, workers=2, shuffle_buffer=3)
    train(tiny(data, tmp_path / "straight", **kw), progress=False)
    straight = trajectory(tmp_path / "straight")
    assert [r["step"] for r in straight] == [1, 2, 3, 4] and straight[-1]["skipped"] >= 1
    ck_a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "latest.pt")
    for stop in (1, 2):
        run = tmp_path / f"stop{stop}"
        train(tiny(data, run, **kw), progress=False, until=stop)
        assert [r["step"] for r in records(run)] == list(range(1, stop + 1))
        train(tiny(data, run, resume=True, **kw), progress=False)
        assert trajectory(run) == straight, f"stopped at {stop}"
        ck_b = load_checkpoint(run / "checkpoints" / "latest.pt")
        assert all(torch.equal(v, ck_b["G"][k]) for k, v in ck_a["G"].items())
        assert ck_b["data"] == ck_a["data"]


def test_data_stream_does_not_depend_on_checkpoint_or_validation_cadence(shards, tmp_path):
    # the loader once restarted every ckpt_every steps with a new seed: step 4 saw other samples
    often = dict(ckpt_every=1, val_every=1, sample_every=1)
    rarely = dict(ckpt_every=5, val_every=1000, sample_every=1000)
    for name, cadence in (("often", often), ("rarely", rarely)):
        train(tiny(shards, tmp_path / name, max_steps=4, **cadence), progress=False)
    assert len(records(tmp_path / "often", "val")) == 4
    assert trajectory(tmp_path / "often") == trajectory(tmp_path / "rarely")


def test_checkpoint_contents_atomic_names_and_keep_last(shards, tmp_path):
    train(tiny(shards, tmp_path / "run", max_steps=3, ckpt_every=1, keep_ckpts=2, ngf=4), progress=False)
    ckdir = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckdir.iterdir()) == ["latest.pt", "step_00000002.pt", "step_00000003.pt"]
    assert (ckdir / "latest.pt").read_bytes() == (ckdir / "step_00000003.pt").read_bytes()
    ck = torch.load(ckdir / "latest.pt", map_location="cpu", weights_only=True)
    assert {"G", "D", "opt_g", "opt_d", "sched_g", "sched_d", "step", "rng", "config"} <= set(ck)
    assert set(ck["rng"][0]) == {"torch", "cuda", "numpy", "python"} and ck["step"] == 3
    assert ck["config"]["generator"] == {"variant": "hifacegan", "ngf": 4, "size": 64, "norm": "instance",
                                         "io_range": "signed"}
    assert ck["config"]["discriminator"]["ndf"] == 8 and ck["config"]["train"]["max_steps"] == 3


def test_resume_with_another_architecture_names_the_shapes(shards, tmp_path):
    train(tiny(shards, tmp_path / "run", max_steps=1, ckpt_every=1), progress=False)
    with pytest.raises(CheckpointError, match=r"generator is from another architecture: shape mismatch .*"
                                              r"checkpoint \(\d+, \d+, 3, 3\) vs model \(\d+, \d+, 3, 3\)"):
        train(tiny(shards, tmp_path / "run", max_steps=2, ngf=16, resume=True), progress=False)


def test_an_existing_run_dir_needs_resume(shards, tmp_path):
    train(tiny(shards, tmp_path / "run", max_steps=1, ckpt_every=1), progress=False)
    log_before = (tmp_path / "run" / "log.jsonl").read_bytes()
    ckpt_before = (tmp_path / "run" / "checkpoints" / "latest.pt").read_bytes()
    with pytest.raises(ConfigError, match=r"run already holds a training run: pass --resume"):
        train(tiny(shards, tmp_path / "run", max_steps=2, ckpt_every=1), progress=False)
    assert (tmp_path / "run" / "log.jsonl").read_bytes() == log_before, "the old log is untouched"
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").read_bytes() == ckpt_before
    assert train(tiny(shards, tmp_path / "run", max_steps=2, ckpt_every=1, resume=True), progress=False)["step"] == 2


def test_an_out_that_is_a_file_is_a_config_error(shards, tmp_path):
    (tmp_path / "afile").write_text("keep me")
    for out in (tmp_path / "afile", tmp_path / "afile" / "run"):
        with pytest.raises(ConfigError, match=r"--out: .*afile exists and is not a directory"):
            train(tiny(shards, out, max_steps=1), progress=False)
    assert (tmp_path / "afile").read_text() == "keep me"


def test_a_plain_pickle_checkpoint_gives_no_torch_warning(tmp_path):
    import pickle
    import warnings

    (tmp_path / "x.pt").write_bytes(pickle.dumps({"G": 1}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match="unreadable checkpoint"):
            load_checkpoint(tmp_path / "x.pt")
    assert not caught, [str(w.message) for w in caught]  # the CLI error stays one line


def test_one_trainer_per_run_dir(shards, tmp_path):
    from facedeg.build.lockfile import FolderLock

    run = tmp_path / "run"
    run.mkdir()
    with FolderLock(run / ".hifacegan-train.lock"):  # what a running trainer holds (e.g. a requeued job's twin)
        with pytest.raises(ConfigError, match=rf"run is being trained by another process \(pid {os.getpid()} on "):
            train(tiny(shards, run, max_steps=1, resume=True), progress=False)
        assert [p.name for p in run.iterdir()] == [".hifacegan-train.lock"], "nothing written"
    assert train(tiny(shards, run, max_steps=1, ckpt_every=1), progress=False)["step"] == 1
    assert not (run / ".hifacegan-train.lock").exists(), "the lock file goes when the run ends"
    with pytest.raises(DataError):  # a run that fails before writing anything leaves no empty folder behind
        train(tiny(tmp_path / "no-such-shards", tmp_path / "new" / "run", max_steps=1), progress=False)
    assert not (tmp_path / "new" / "run").exists()


def test_cuda_code_path_bf16_channels_last_runs_on_cpu(shards, tmp_path):
    cfg = tiny(shards, tmp_path / "run", max_steps=1, ckpt_every=1, precision="bf16", channels_last="on",
               sample_every=1, val_every=1)
    result = train(cfg, progress=False)
    assert all(torch.isfinite(torch.tensor(result[k])) for k in ("g_gan", "g_feat", "g_l1", "d_real", "d_fake"))


def test_on_the_fly_training_from_an_image_folder(tmp_path):
    folder = write_folder(tmp_path / "faces", n=4, size=96)
    cfg = tiny(folder, tmp_path / "run", max_steps=2, ckpt_every=2, degrade="jpeg", workers=1)
    result = train(cfg, progress=False)
    assert result["step"] == 2 and torch.isfinite(torch.tensor(result["g_l1"]))
    assert len(result["shards_read"][0]) == 4  # the 4 image files


def test_clear_errors(shards, tmp_path):
    with pytest.raises(DataError, match="shard not found: .*nothing-000001.tar"):
        train(tiny(f"{shards}/nothing-{{000001..000002}}.tar", tmp_path / "a", max_steps=1), progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train-000000.tar").write_bytes(b"")
    with pytest.raises(DataError, match="no usable samples"):
        train(tiny(empty, tmp_path / "b", max_steps=1), progress=False)
    with pytest.raises(ConfigError, match="size must be a multiple of 32"):
        tiny(shards, tmp_path / "c", size=100)
    (tmp_path / "cfg.yaml").write_text("ngf: 8\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        resolve_config(tmp_path / "cfg.yaml", {"data": "x", "out": "y"})


def test_skipped_count_adds_up_across_rounds_and_resumes(tmp_path):
    # the corrupt sample is read (and skipped) once per round (2 samples, batch 1: a round per step);
    # the count travels in the checkpoint, so a resumed run continues it
    data = write_shards(tmp_path / "bad", 2, 0, per_shard=2, corrupt=("00000000",))
    kw = dict(batch_size=1, max_steps=3, ckpt_every=1, shuffle_buffer=1)
    train(tiny(data, tmp_path / "run", **kw), progress=False, until=2)
    train(tiny(data, tmp_path / "run", resume=True, **kw), progress=False)
    assert [r["skipped"] for r in records(tmp_path / "run")] == [1, 2, 3]
    assert records(tmp_path / "run", "end")[-1]["skipped"] == 3


def test_resume_from_a_generator_only_checkpoint_is_an_error(shards, tmp_path):
    train(tiny(shards, tmp_path / "run", max_steps=1, ckpt_every=1), progress=False)
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    ck = load_checkpoint(latest)
    latest.unlink()
    torch.save({"G": ck["G"], "config": ck["config"]}, latest)
    with pytest.raises(CheckpointError, match="cannot resume from it: no D, opt_g"):
        train(tiny(shards, tmp_path / "run", max_steps=2, resume=True), progress=False)


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("seed: -1", "seed must be >= 0"),
    ("betas: [2, 3]", r"betas must both be in \[0, 1\)"),
    ("lr_d: .nan", "lr_d must be a finite number"),
    ("lr_g: -1", "lr_g must be a finite number"),
    ("w_feat: -5", "w_feat must be a finite number"),
    ("val_samples: 0", "val_samples must be positive"),
])
def test_config_values_out_of_range(tmp_path, yaml_text, message):
    (tmp_path / "cfg.yaml").write_text(yaml_text + "\n")
    with pytest.raises(ConfigError, match=message):
        resolve_config(tmp_path / "cfg.yaml", {"data": "x", "out": "y"})


def test_config_file_then_cli_overrides(tmp_path):
    (tmp_path / "cfg.yaml").write_text("data: shards/\nout: runs/a\nngf: 16\nbatch-size: 4\nbetas: [0.5, 0.99]\n")
    cfg = resolve_config(tmp_path / "cfg.yaml", {"ngf": 8, "size": None})
    assert (cfg.data, cfg.ngf, cfg.batch_size, cfg.size, cfg.betas) == ("shards/", 8, 4, 512, (0.5, 0.99))
    (tmp_path / "bad.yaml").write_text("ngf: eight\n")
    with pytest.raises(ConfigError, match="key 'ngf'"):
        resolve_config(tmp_path / "bad.yaml", {})


def test_torchrun_two_processes_gloo_read_disjoint_shards(shards, tmp_path):
    (tmp_path / "cfg.yaml").write_text("ndf: 8\nval_samples: 2\nsample_every: 3\nval_every: 3\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "cli.hifacegan_cli", "train", "--data", str(shards), "--out", str(tmp_path / "run"),
           "--config", str(tmp_path / "cfg.yaml"), "--size", "64", "--ngf", "8", "--max-steps", "3",
           "--workers", "1", "--log-every", "1", "--ckpt-every", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "2 x cpu" in proc.stdout
    end = records(tmp_path / "run", "end")[0]
    rank0, rank1 = map(set, end["shards_read"])
    assert rank0 and rank1 and not rank0 & rank1
    assert [r["step"] for r in records(tmp_path / "run")] == [1, 2, 3]
    assert (tmp_path / "run" / "checkpoints" / "step_00000003.pt").is_file()
    assert records(tmp_path / "run", "val")[0]["val_samples"] == 2


_MEAN_OVER_RANKS = '''
import sys, torch
from pathlib import Path
from hifacegan import dist
dist.init("cpu")
rank = dist.rank()
mine = torch.tensor([1.0 + rank, float("nan") if rank == 1 else 5.0])  # only rank 1 has a NaN
Path(sys.argv[1], f"rank{rank}.txt").write_text(str(dist.mean_over_ranks(mine).tolist()))
dist.cleanup()
'''


def test_losses_are_averaged_over_ranks_so_a_nan_stops_every_rank(tmp_path):
    (tmp_path / "mean.py").write_text(_MEAN_OVER_RANKS)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(tmp_path / "mean.py"), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    seen = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert seen == ["[1.5, nan]", "[1.5, nan]"]  # both ranks see rank 1's NaN: both stop


@pytest.mark.skipif(not os.environ.get("HIFACEGAN_TEST_COMPILE"),
                    reason="torch.compile on CPU takes about 3 minutes on 2 cores; set HIFACEGAN_TEST_COMPILE=1")
def test_compile_path_on_cpu(shards, tmp_path):
    result = train(tiny(shards, tmp_path / "run", max_steps=2, ckpt_every=2, compile=True), progress=False)
    assert all(torch.isfinite(torch.tensor(result[k])) for k in ("g_gan", "g_feat", "g_l1", "d_real", "d_fake"))
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert not any(k.startswith("_orig_mod") for k in ck["G"])  # the plain module's names, loadable anywhere
