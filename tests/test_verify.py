"""facedeg verify / inspect / replay, through the library and the CLI."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import numpy as np
import pytest
from _build_util import make_photos
from typer.testing import CliRunner

from cli.facedeg_cli import app
from facedeg.build import BuildConfig, build
from facedeg.build.shards import ShardWriter
from facedeg.build.verify import inspect, replay, verify
from facedeg.codec import decode, encode_png

runner = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    photos = tmp_path_factory.mktemp("photos")
    make_photos(photos, 6)
    out = tmp_path_factory.mktemp("built")
    build(BuildConfig(recipe="mixed", out=out, input=str(photos), size=48, variants=2, val_fraction=0.2, shard_size=4))
    return out


@pytest.fixture
def copy(built, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(built, out)
    return out


def test_clean_build_verifies(built) -> None:
    report = verify(built)
    assert report.ok and report.shards == 4 and report.samples == 12
    result = runner.invoke(app, ["verify", str(built)])
    assert result.exit_code == 0 and "ok (4 shards, 12 samples verified)" in result.output


def test_flipped_byte_is_detected(copy) -> None:
    path = copy / "train-000001.tar"
    data = bytearray(path.read_bytes())
    data[2000] ^= 0x01  # inside the first member's data
    path.write_bytes(bytes(data))
    report = verify(copy)
    assert not report.ok
    assert "train-000001.tar: sha256 mismatch (file changed since the build)" in report.problems
    result = runner.invoke(app, ["verify", str(copy)])
    assert result.exit_code == 1 and "FAIL train-000001.tar: sha256 mismatch" in result.output


def test_missing_and_extra_shards_are_detected(copy) -> None:
    (copy / "val-000000.tar").rename(copy / "val-000009.tar")
    report = verify(copy)
    assert "val-000000.tar: missing" in report.problems
    assert "val-000009.tar: shard file not listed in dataset.json" in report.problems
    result = runner.invoke(app, ["verify", str(copy), "--no-decode"])
    assert result.exit_code == 1 and "FAIL val-000000.tar: missing" in result.output


def test_truncated_shard_and_missing_member(copy) -> None:
    path = copy / "train-000000.tar"
    path.write_bytes(path.read_bytes()[:5000])
    with tarfile.open(copy / "train-000001.tar") as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar]
    buf = io.BytesIO()
    with ShardWriter(buf) as w:
        for name, data in members:
            key, _, suffix = name.partition(".")
            if suffix != "lq.png" or key != members[0][0].split(".")[0]:
                w.add(key, {suffix: data})
    (copy / "train-000001.tar").write_bytes(buf.getvalue())
    problems = verify(copy).problems
    assert any(p.startswith("train-000000.tar: size 5000 bytes") for p in problems)
    assert any(p.startswith("train-000000.tar: unreadable tar") or "samples, manifest says" in p for p in problems)
    assert any(p.startswith("train-000001.tar: ") and "no lq.png member" in p for p in problems)


def test_replay_confirms_and_reports_first_difference(copy) -> None:
    with tarfile.open(copy / "val-000000.tar") as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar]
    key = members[0][0].split(".")[0]
    r = replay(copy, key)
    assert r.identical and r.shard == "val-000000.tar" and "→" in r.summary
    result = runner.invoke(app, ["replay", str(copy), key])
    assert result.exit_code == 0 and "identical" in result.output

    buf = io.BytesIO()
    with ShardWriter(buf) as w:
        for name, data in members:
            k, _, suffix = name.partition(".")
            if k == key and suffix == "lq.png":
                lq = decode(data).copy()
                lq[3, 5, 1] ^= 0x10
                data = encode_png(lq)
            w.add(k, {suffix: data})
    (copy / "val-000000.tar").write_bytes(buf.getvalue())
    r = replay(copy, key)
    assert not r.identical and r.differing == 1 and r.first[:3] == (3, 5, 1)
    result = runner.invoke(app, ["replay", str(copy), key])
    assert result.exit_code == 1 and "first at y=3 x=5 channel=G" in result.output


def test_inspect_counts_ops_params_and_psnr(built) -> None:
    info = inspect(built)
    assert info["samples"] == 12 and info["counts"]["val"]["pairs"] == 2
    assert info["ops_fired"]["jpeg"] == 12 and info["ops_fired"]["downsample"] == 12
    assert 15 <= info["params"]["jpeg.quality"]["min"] <= info["params"]["jpeg.quality"]["max"] <= 50
    assert not any(name.endswith(".seed") for name in info["params"])
    assert sum(b["n"] for b in info["psnr_by_branch"].values()) == 12
    for b in info["psnr_by_branch"].values():
        assert 5 < b["min"] <= b["median"] <= b["max"] < 60
    result = runner.invoke(app, ["inspect", str(built)])
    assert result.exit_code == 0 and "ops fired:" in result.output and "PSNR" in result.output
    as_json = json.loads(runner.invoke(app, ["inspect", str(built), "--json"]).output)
    assert as_json["ops_fired"] == info["ops_fired"]
    assert np.isfinite([b["median"] for b in as_json["psnr_by_branch"].values()]).all()


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_lossy_hq_formats_still_replay_exactly(tmp_path, fmt) -> None:
    out = tmp_path / fmt
    build(BuildConfig(recipe="mixed", out=out, size=48, variants=2, val_fraction=0, hq_format=fmt))
    with tarfile.open(out / "train-000000.tar") as tar:
        names = tar.getnames()
    assert names[0].endswith(f".hq.{fmt}")
    assert verify(out).ok
    assert replay(out, names[0].split(".")[0]).identical


def test_non_object_json_is_one_problem_and_the_shard_is_still_read(copy) -> None:
    path = copy / "val-000000.tar"
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar]
    buf = io.BytesIO()
    with ShardWriter(buf) as w:
        for i, (name, data) in enumerate(members):
            key, _, suffix = name.partition(".")
            w.add(key, {suffix: b"[]" if i == 2 else data})
    path.write_bytes(buf.getvalue())
    problems = [p for p in verify(copy).problems if "sha256" not in p]
    assert problems == [f"val-000000.tar: {members[0][0].split('.')[0]}: bad json (a JSON list, expected an object)"]


def test_inspect_and_replay_on_a_damaged_build_fail_in_one_line(copy) -> None:
    path = copy / "train-000000.tar"
    with tarfile.open(path) as tar:
        key = tar.getnames()[0].split(".")[0]
    path.write_bytes(path.read_bytes()[:5000])
    for args in (["inspect", str(copy)], ["replay", str(copy), key]):
        result = runner.invoke(app, args)
        text = result.output.strip()
        assert result.exit_code == 2 and "\n" not in text, (args, result.output)
        assert text.startswith(f"error: {path}: unreadable") and "facedeg verify" in text
    path.unlink()
    result = runner.invoke(app, ["inspect", str(copy)])
    assert result.exit_code == 2 and result.output.strip().startswith(f"error: {path}: missing")
