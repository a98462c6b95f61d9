"""A real ``facedeg build`` process killed with SIGKILL mid-build leaves only complete shards, and
rerunning the same command finishes the rest and ends with the bytes of an uninterrupted build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from _build_util import face, manifest_without_run, save, shard_bytes

from facedeg.build import BuildConfig, build
from facedeg.errors import BuildError

REPO = Path(__file__).resolve().parent.parent
ARGS = ["--recipe", "mixed", "--size", "128", "--shard-size", "3", "--val-fraction", "0", "--seed", "5"]


def start(photos: Path, out: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "cli.facedeg_cli", "build", *ARGS, "--input", str(photos), "--out", str(out)]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_after_new_shard(proc: subprocess.Popen, out: Path, have: int, timeout: float = 60.0) -> None:
    """SIGKILL ``proc`` as soon as more than ``have`` shards exist under ``out``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(out.glob("*.tar"))) > have:
            break
        time.sleep(0.002)
    assert proc.poll() is None, "build finished before it could be killed: make it bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def assert_only_complete_shards(out: Path, ref: dict[str, bytes]) -> int:
    tars = shard_bytes(out)
    for name, data in tars.items():
        assert data == ref[name], f"{name} exists but is not the complete shard"
        with tarfile.open(out / name) as tar:
            assert len(tar.getnames()) % 3 == 0
    assert not (out / "dataset.json").exists()
    return len(tars)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for i in range(36):
        save(face(i, 384, 384), root / f"{i:03d}.png")
    return root


def test_sigkill_then_rerun_is_byte_identical(photos: Path, tmp_path: Path) -> None:
    ref_out = tmp_path / "ref"
    build(BuildConfig(recipe="mixed", out=ref_out, input=str(photos), size=128, shard_size=3, val_fraction=0, seed=5))
    ref = shard_bytes(ref_out)
    assert len(ref) == 12

    out = tmp_path / "out"
    kill_after_new_shard(start(photos, out, tmp_path), out, have=0)
    first = assert_only_complete_shards(out, ref)
    assert 1 <= first < 12

    kill_after_new_shard(start(photos, out, tmp_path), out, have=first)  # killed again, later
    second = assert_only_complete_shards(out, ref)
    assert first < second < 12

    proc = start(photos, out, tmp_path)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert f"{second} reused from an earlier run" in stdout
    assert shard_bytes(out) == ref
    assert manifest_without_run(out) == manifest_without_run(ref_out)
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".tar")) == ["dataset.json", "train.wids.json"]


def _crash_after_first_shard(monkeypatch, config: BuildConfig) -> None:
    """Run ``config`` until one shard is done, then interrupt it like a kill would."""
    import facedeg.build.builder as build_module

    real = build_module.run_tasks

    def one_then_die(*args, **kwargs):
        yield next(real(*args, **kwargs))
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module, "run_tasks", one_then_die)
    with pytest.raises(KeyboardInterrupt):
        build(config)
    monkeypatch.setattr(build_module, "run_tasks", real)


def test_inputs_edited_in_place_are_not_mixed_on_resume(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "in"
    for i in range(3):  # BMP: rewriting a photo keeps its byte size
        save(face(i, 40, 40), src / f"{i}.bmp")
    config = BuildConfig(recipe="jpeg", out=tmp_path / "out", input=str(src), size=32, val_fraction=0, shard_size=1)
    _crash_after_first_shard(monkeypatch, config)
    for i in range(3):
        save(face(i + 3, 40, 40), src / f"{i}.bmp")
        os.utime(src / f"{i}.bmp", ns=(1, 10**18 + i))
    with pytest.raises(BuildError, match="inputs: files changed since the interrupted build"):
        build(config)
    report = build(BuildConfig(**{**config.__dict__, "overwrite": True}))
    assert report.shards_built == 3 and report.shards_reused == 0


def test_killed_after_the_manifest_rerun_cleans_the_state(tmp_path: Path) -> None:
    config = BuildConfig(recipe="jpeg", out=tmp_path / "out", size=32, variants=1)
    build(config)
    (tmp_path / "out" / ".facedeg-build" / "shards").mkdir(parents=True)  # as if killed before its removal
    report = build(config)
    assert report.shards_built == 0 and not (tmp_path / "out" / ".facedeg-build").exists()
