"""Hostile and careless input to hifacegan (issue 8): nothing written through links in the run or output
folder, a failed start leaves nothing behind, a resumed log reads like one run, output names of any
encoding, damaged or diverged checkpoints said for what they are, a diverging loss warned about."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _shards import write_shards

from facedeg.errors import FacedegError
from facedeg.samples import sample_paths
from hifacegan.checkpoint import CheckpointError, load_checkpoint, load_state, save_checkpoint
from hifacegan.config import resolve_config
from hifacegan.data import resolve_shards
from hifacegan.errors import ConfigError, DataError, HiFaceGANError
from hifacegan.models import build_generator
from hifacegan.restore import list_inputs, load_generator
from hifacegan.runlog import divergence, kept_records
from hifacegan.train import train
from hifacegan.validation import write_png
from hifacegan.weights import load_state_file

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(size=64, ngf=8, ndf=8, batch_size=2, workers=0, log_every=1, sample_every=1, val_every=1000,
            val_samples=2, max_steps=1, ckpt_every=1)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards"), 4, 2, per_shard=2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real (untrained) generator checkpoint, as training writes it, without running a training step."""
    G = build_generator("hifacegan", 8, 64)
    path = tmp_path_factory.mktemp("ck") / "g.pt"
    torch.save({"G": G.state_dict(), "step": 0, "config": {"generator": dict(G.config)}}, path)
    return path


def tiny(data, out, **kw):
    return resolve_config(None, {"data": str(data), "out": str(out), **TINY, **kw})


def steps_logged(run: Path) -> list[tuple[str, int]]:
    return [(r["event"], r["step"]) for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())]


# --------------------------------------------------------------------------- 1. links in the run folder

RUN_LINKS = [  # (names in the run folder, link to a file or a folder outside, --resume)
    ((".hifacegan-train.lock",), "file", False),
    (("log.jsonl", "config.json"), "file", True),
]


@pytest.mark.parametrize(("names", "kind", "resume"), RUN_LINKS)
def test_training_never_writes_through_a_link_in_its_run_folder(shards, tmp_path, names, kind, resume) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("DATA")
    run = tmp_path / "run"
    run.mkdir()
    for name in names:
        (run / name).symlink_to(outside / "victim.txt" if kind == "file" else outside)
    try:
        train(tiny(shards, run, resume=resume), progress=False)
    except (FacedegError, HiFaceGANError) as e:
        assert "symbolic link" in str(e) and names[0] in str(e) and "\n" not in str(e)
    else:  # our own file names: each link is replaced by the file, never written through
        assert not any((run / name).is_symlink() for name in names)
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert (outside / "victim.txt").read_text() == "DATA"


def test_checkpoints_and_sample_grids_never_go_through_a_linked_folder(tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    for name in ("checkpoints", "samples"):
        (run / name).symlink_to(outside)
    with pytest.raises(FacedegError, match="checkpoints: is a symbolic link"):
        save_checkpoint({"step": torch.zeros(1)}, run / "checkpoints", 1, keep=2)
    with pytest.raises(FacedegError, match="samples: is a symbolic link"):
        write_png(np.zeros((64, 192, 3), np.uint8), run / "samples" / "step.png")
    assert list(outside.iterdir()) == []


def test_restore_never_writes_through_a_link_in_out(checkpoint, tmp_path) -> None:
    G, _ = load_generator(checkpoint)
    from hifacegan.restore import restore_files

    face = sample_paths()[0]
    victim = tmp_path / "victim.png"
    victim.write_text("DATA")
    inp = tmp_path / "in"
    (inp / "sub").mkdir(parents=True)
    (inp / "sub" / "a.png").write_bytes(face.read_bytes())
    (inp / "b.png").write_bytes(face.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").symlink_to(victim)  # a file name we write: replaced, not followed
    (out / "sub").symlink_to(tmp_path)  # a folder on the way: refused
    with pytest.raises(FacedegError, match="sub: is a symbolic link"):
        restore_files(G, inp, out)
    assert victim.read_text() == "DATA" and not (tmp_path / "a.png").exists()


# --------------------------------------------------------------------------- 3. output names of any encoding


def test_restore_writes_names_that_are_not_utf8(checkpoint, tmp_path) -> None:
    """cv2.imwrite crashed the process (SIGSEGV) on such a name: run the CLI in its own process."""
    bad = os.fsdecode(b"bad\xffutf8")
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / f"{bad}.png").write_bytes(sample_paths()[0].read_bytes())
    code = "import sys; from cli.hifacegan_cli import main; sys.argv[0] = 'hifacegan'; main()"
    r = subprocess.run([sys.executable, "-c", code, "restore", str(inp), "--checkpoint", str(checkpoint), "--out",
                        str(tmp_path / f"out{bad}"), "--device", "cpu"], capture_output=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8:strict"})
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert (tmp_path / f"out{bad}" / f"{bad}.png").stat().st_size > 1000


# --------------------------------------------------------------------------- 8. failed starts and resumed logs


def test_a_failed_start_writes_nothing_and_blocks_no_retry(shards, tmp_path) -> None:
    bad = write_shards(tmp_path / "bad", 2, 0, per_shard=2, corrupt=("00000000", "00000001"))
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)  # an existing, empty run folder
    with pytest.raises(DataError, match="no usable samples"):
        train(tiny(bad / "train-000000.tar", run), progress=False)
    assert list(run.iterdir()) == []
    (run / "log.jsonl").write_text('{"event": "train", "step": 5}\n')  # left by an older, checkpoint-less start
    train(tiny(shards, run), progress=False)  # no --resume needed: there was no run to protect
    assert steps_logged(run) == [("train", 1), ("end", 1)]
    with pytest.raises(ConfigError, match="already holds a training run"):
        train(tiny(shards, run), progress=False)


def test_a_resumed_log_reads_like_one_run(shards, tmp_path) -> None:
    run = tmp_path / "run"
    cfg = dict(max_steps=2, ckpt_every=1, sample_every=1000)
    train(tiny(shards, run, **cfg), progress=False, until=1)  # stopped after step 1 and its checkpoint ...
    with open(run / "log.jsonl", "a") as f:  # ... and killed after logging step 2, before its checkpoint
        f.write('{"event": "train", "step": 2, "g_gan": 1.0}\n{"event": "val", "st')
    train(tiny(shards, run, resume=True, **cfg), progress=False)
    train(tiny(shards, run, resume=True, **cfg), progress=False)  # already finished: nothing to add
    assert steps_logged(run) == [("train", 1), ("train", 2), ("end", 2)]
    assert kept_records('{"event": "val", "step": 2}\n{"event": "train", "step": 3}\n{"eve', 2) == [
        '{"event": "val", "step": 2}']


# --------------------------------------------------------------------------- 9. damaged checkpoints, divergence


def _damaged(state: dict, how: str) -> dict:
    if how == "non-tensor":
        return {k: 1 for k in state}
    if how == "nested dict":
        return {k: {"x": v} for k, v in state.items()}
    return {k: v.clone().fill_(float("nan" if how == "nan" else "inf")) if v.is_floating_point() else v
            for k, v in state.items()}


@pytest.mark.parametrize(("how", "expected"), [("non-tensor", "is of type int, not a tensor"),
                                               ("nested dict", "is of type dict, not a tensor"),
                                               ("nan", "non-finite weights"), ("inf", "non-finite weights")])
def test_damaged_or_diverged_checkpoints_are_said_for_what_they_are(checkpoint, tmp_path, how, expected) -> None:
    ck = torch.load(checkpoint, weights_only=True)
    path = tmp_path / "damaged.pt"
    torch.save({**ck, "G": _damaged(ck["G"], how)}, path)
    with pytest.raises(CheckpointError, match=expected) as info:
        load_generator(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    G = build_generator("hifacegan", 8, 64)
    with pytest.raises(CheckpointError, match=expected):
        load_state(G, _damaged(G.state_dict(), how), "generator", path)


def test_a_diverging_loss_is_warned_about(shards, tmp_path, capsys) -> None:
    train(tiny(shards, tmp_path / "run", lr_g=1e9, lr_d=1e9, max_steps=2, ckpt_every=2, sample_every=1000),
          progress=False)
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "lower the learning rates" in warnings[0]
    assert divergence({"g_gan": 1.0, "d_real": 0.7, "g_l1": 12.0}, 3) is None


SPECIAL = {  # what reads the path -> the error it must raise
    "shards": (lambda p: resolve_shards(str(p)), DataError),
    "checkpoint": (load_checkpoint, CheckpointError),
    "restore input": (list_inputs, HiFaceGANError),
    "weight file": (load_state_file, ValueError),
    "--vgg-weights": (lambda p: resolve_config(None, {"data": "d", "out": "o", "vgg_weights": str(p)}), ConfigError),
}


@pytest.mark.parametrize("kind", ["FIFO", "link loop"])
@pytest.mark.parametrize("what", SPECIAL)
def test_fifos_and_link_loops_are_reported_for_what_they_are(tmp_path, what, kind) -> None:
    path = tmp_path / "x.tar"
    if kind == "FIFO":
        os.mkfifo(path)
    else:
        path.symlink_to(path.name)
    read, error = SPECIAL[what]
    with pytest.raises(error, match="a FIFO, not a regular file" if kind == "FIFO" else "symbolic link loop"):
        read(path)


def test_the_next_checkpoint_clears_what_a_killed_save_left(tmp_path) -> None:
    ckpt = tmp_path / "run" / "checkpoints"
    ckpt.mkdir(parents=True)
    left = ["step_00000001.pt.0123456789ab.tmp", "latest.pt.fedcba987654.tmp"]  # a save killed half-way
    mine = ["notes.tmp", "step_00000001.pt.tmp"]  # not facedeg's unique temporary names: the user's
    for name in left + mine:
        (ckpt / name).write_bytes(b"x")
    save_checkpoint({"step": torch.zeros(1)}, ckpt, 2, keep=2)
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(["latest.pt", "step_00000002.pt", *mine])
