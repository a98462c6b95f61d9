"""facedeg build: determinism across workers and backends, readers, splits, passthrough, mixing guard."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import webdataset as wds
from _build_util import face, files_under, make_photos, manifest_without_run, save, shard_bytes
from PIL import Image
from typer.testing import CliRunner

from facedeg import derive_seed
from facedeg.build import BuildConfig, build, split_sources
from facedeg.codec import decode
from facedeg.errors import BuildError
from facedeg.plan import Plan

MEMBER = re.compile(r"^[0-9]{8}(_[0-9]+)?\.(hq\.png|lq\.png|json)$")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    make_photos(root, 8)
    save(face(3, 64, 64), root / "z_exact.png")  # already final: 8-bit RGB PNG at the target size
    return root


def config(photos, out, **kw) -> BuildConfig:
    base = dict(recipe="mixed", out=out, input=str(photos), size=64, variants=2, val_fraction=0.25, shard_size=3, seed=7)
    return BuildConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def ref(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    report = build(config(photos, out))
    return out, report


def samples(out) -> list[dict]:
    metas = []
    for p in sorted(out.glob("*.tar")):
        with tarfile.open(p) as tar:
            metas += [json.load(tar.extractfile(m)) for m in tar if m.name.endswith(".json")]
    return metas


def test_ref_build_layout(ref) -> None:
    out, report = ref
    m = report.manifest
    assert m["counts"] == {"train": {"images": 7, "pairs": 14, "shards": 5}, "val": {"images": 2, "pairs": 4, "shards": 2}}
    assert sorted(p.name for p in out.iterdir()) == [
        "dataset.json", "train-000000.tar", "train-000001.tar", "train-000002.tar", "train-000003.tar",
        "train-000004.tar", "train.wids.json", "val-000000.tar", "val-000001.tar", "val.wids.json",
    ]
    for s in m["shards"]:
        data = (out / s["name"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (s["bytes"], s["sha256"])
    wids = json.loads((out / "val.wids.json").read_text())
    assert wids["__kind__"] == "wids-shard-index-v1" and [e["url"] for e in wids["shardlist"]] == ["val-000000.tar", "val-000001.tar"]
    assert {"opencv", "numpy", "opencv_jpeg", "opencv_png"} <= set(m["libraries"])
    assert m["recipe"]["tree"]["steps"] and m["recipe"]["hash"] and "recipe_hash" not in m["build"]
    assert "wall_s" in m["run"] and "wall" not in json.dumps(manifest_without_run(out))


def test_same_bytes_with_2_workers_and_on_dask(ref, photos, tmp_path) -> None:
    out, _ = ref
    build(config(photos, tmp_path / "j2", workers=2))
    build(config(photos, tmp_path / "dask", workers=2, backend="dask"))  # a real LocalCluster, 2 processes
    for other in (tmp_path / "j2", tmp_path / "dask"):
        assert shard_bytes(other) == shard_bytes(out)
        assert manifest_without_run(other) == manifest_without_run(out)
        for split in ("train", "val"):
            assert (other / f"{split}.wids.json").read_bytes() == (out / f"{split}.wids.json").read_bytes()
    assert json.loads((tmp_path / "dask" / "dataset.json").read_text())["run"]["backend"] == "dask"


def test_dask_cluster_by_scheduler_address(ref, photos, tmp_path) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        build(config(photos, tmp_path / "remote", workers=2, backend="dask", scheduler=cluster.scheduler_address))
    assert shard_bytes(tmp_path / "remote") == shard_bytes(ref[0])
    assert manifest_without_run(tmp_path / "remote") == manifest_without_run(ref[0])


def test_plain_webdataset_and_tarfile_read_the_shards(ref) -> None:
    out, report = ref
    urls = [str(out / s["name"]) for s in report.manifest["shards"]]
    ds = wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("rgb8")
    got = list(ds)
    assert len(got) == 18
    for s in got:
        assert s["hq.png"].shape == s["lq.png"].shape == (64, 64, 3) and s["hq.png"].dtype == np.uint8
        assert s["json"]["key"] == s["__key__"]
    for url in urls:
        with tarfile.open(url) as tar:
            assert all(MEMBER.match(n) for n in tar.getnames())
    if shutil.which("tar"):
        listing = subprocess.run(["tar", "-tf", urls[0]], capture_output=True, text=True, check=True).stdout.split()
        assert listing == tarfile.open(urls[0]).getnames()


def test_sample_json_records_plan_seed_source_and_replays(ref, photos) -> None:
    out, _ = ref
    metas = samples(out)
    by_source: dict[str, set[str]] = {}
    for meta in metas:
        assert re.fullmatch(r"[0-9]{8}_[01]", meta["key"])
        assert meta["seed"] == derive_seed(7, meta["key"]) == meta["plan"]["seed"]
        src = photos / meta["source"]
        assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
        assert meta["crop"]["mode"] == "center" and meta["size"] == 64
        by_source.setdefault(meta["source"], set()).add(meta["split"])
    assert all(len(splits) == 1 for splits in by_source.values())  # no face in both splits
    assert len(by_source) == 9
    with tarfile.open(out / "val-000000.tar") as tar:
        m = {n.name: tar.extractfile(n).read() for n in tar}
    key = sorted(n for n in m if n.endswith(".json"))[0][:-5]
    plan = Plan.from_json(json.loads(m[f"{key}.json"])["plan"])
    assert (plan.apply(decode(m[f"{key}.hq.png"])) == decode(m[f"{key}.lq.png"])).all()


def test_face_crop_is_recorded_and_deterministic(tmp_path) -> None:
    src = tmp_path / "in"
    save(face(0, 200, 260), src / "portrait.png")  # a real face, off-square
    save(np.full((90, 120, 3), 127, np.uint8), src / "wall.png")  # nothing to find
    outs = []
    for workers in (1, 2):
        outs.append(tmp_path / f"o{workers}")
        build(BuildConfig(recipe="jpeg", out=outs[-1], input=str(src), size=32, crop="face", val_fraction=0,
                          shard_size=1, workers=workers))
    assert shard_bytes(outs[0]) == shard_bytes(outs[1])
    crops = {m["source"]: m["crop"] for m in samples(outs[0])}
    assert crops["portrait.png"]["face"] is not None and crops["portrait.png"]["fallback"] is None
    assert crops["wall.png"]["face"] is None and "center" in crops["wall.png"]["fallback"]


def test_split_is_per_source_and_stable() -> None:
    rels = [f"img{i}.png" for i in range(100)]
    splits = split_sources(rels, 0.1, 0)
    assert splits.count("val") == 10 and splits == split_sources(rels, 0.1, 0)
    assert split_sources(rels[:3], 0.02, 0).count("val") == 1  # at least one val image
    assert split_sources(rels[:3], 0.0, 0).count("val") == 0


def test_hq_passthrough_keeps_source_bytes(ref, photos) -> None:
    out, _ = ref
    exact = (photos / "z_exact.png").read_bytes()
    found = {}
    for p in out.glob("*.tar"):
        with tarfile.open(p) as tar:
            for m in tar:
                if m.name.endswith(".json"):
                    meta = json.load(tar.extractfile(m))
                    found[meta["source"]] = (meta["hq"]["passthrough"], tar.extractfile(m.name.replace(".json", ".hq.png")).read())
    assert found["z_exact.png"] == (True, exact)
    assert found["a/p001.png"][0] is False  # 96x80: cropped and resized
    assert found["b/c/p000.jpg"][0] is False


def test_rerun_mismatch_and_overwrite(ref, photos, tmp_path) -> None:
    out = tmp_path / "out"
    shutil.copytree(ref[0], out)
    again = build(config(photos, out))
    assert again.shards_built == 0 and shard_bytes(out) == shard_bytes(ref[0])
    for change, pattern in [({"seed": 8}, "--seed: 7 in OUT vs 8 now"), ({"recipe": "jpeg"}, "recipe: mixed"),
                            ({"size": 32}, "--size"), ({"variants": 3}, "--variants"), ({"crop": "none"}, "--crop")]:
        with pytest.raises(BuildError, match=re.escape(pattern)):
            build(config(photos, out, **change))
    manifest = json.loads((out / "dataset.json").read_text())
    manifest["libraries"]["opencv"] = "0.0"
    (out / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(BuildError, match=r"library versions: opencv 0\.0 in OUT vs opencv \S+ now"):
        build(config(photos, out))
    more = tmp_path / "more"
    shutil.copytree(photos, more)
    save(face(9, 70, 70), more / "new.png")
    with pytest.raises(BuildError, match=r"inputs: 9 files \w+ in OUT vs 10 files"):
        build(config(more, out))
    (out / "keep-me.txt").write_text("user file")
    report = build(config(photos, out, seed=8, overwrite=True))
    assert report.manifest["seed"] == 8 and (out / "keep-me.txt").exists()
    assert shard_bytes(out) != shard_bytes(ref[0])
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "train-000000.tar").write_bytes(b"x")
    with pytest.raises(BuildError, match="unknown build"):
        build(config(photos, unknown))


@pytest.fixture(scope="module")
def awkward(tmp_path_factory):
    """A folder of awkward files: bad ones, and good ones with awkward names or layouts."""
    root = tmp_path_factory.mktemp("awkward")
    good = face(0, 80, 80)
    save(good, root / "ünï cödé face.PNG")
    save(good, root / "UPPER.JPG")
    save(good, root / "dir.jpg" / "inside.png")  # a directory named like an image
    Image.fromarray(good).convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray(good).convert("RGBA").save(root / "alpha.png")
    Image.fromarray(good).convert("P").save(root / "palette.gif")
    (root / "16bit.png").write_bytes(_png16(good))
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.png").write_text("not an image at all")
    (root / "truncated.png").write_bytes((root / "alpha.png").read_bytes()[:300])
    Image.new("1", (3000, 3000)).save(root / "bomb.png")
    (root / "readme.txt").write_text("ignored: not an image extension")
    return root


def _png16(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", rgb[:, :, ::-1].astype(np.uint16) * 257)
    return buf.tobytes()


def test_awkward_inputs_are_skipped_with_reasons(awkward, tmp_path) -> None:
    before = files_under(tmp_path)
    out = tmp_path / "out"
    report = build(BuildConfig(recipe="jpeg", out=out, input=str(awkward), size=32, val_fraction=0, max_pixels=4_000_000))
    skipped = {s["source"]: s["reason"] for s in report.manifest["skipped"]}
    assert set(skipped) == {"empty.jpg", "notes.png", "truncated.png", "bomb.png"}
    assert skipped["empty.jpg"] == "empty file"
    assert "not a recognised image" in skipped["notes.png"]
    assert "truncated" in skipped["truncated.png"]
    assert "decompression bomb" in skipped["bomb.png"]
    used = {m["source"] for m in samples(out)}
    assert used == {"ünï cödé face.PNG", "UPPER.JPG", "dir.jpg/inside.png", "cmyk.jpg", "alpha.png", "palette.gif", "16bit.png"}
    assert files_under(tmp_path) - before == {"out"} | {f"out/{p}" for p in files_under(out)}  # nothing outside OUT
    for workers in (1, 2):  # the error crosses the process boundary intact
        with pytest.raises(BuildError, match=r"(empty\.jpg: empty file|notes\.png|truncated\.png|bomb\.png).*--strict"):
            build(BuildConfig(recipe="jpeg", out=tmp_path / f"strict{workers}", input=str(awkward), size=32, strict=True,
                              max_pixels=4_000_000, workers=workers, shard_size=1))
    (awkward / "empty.jpg").unlink()  # found by stat alone; the others need decoding, in the workers
    try:
        with pytest.raises(BuildError, match=r"(notes\.png|truncated\.png|bomb\.png).*--strict"):
            build(BuildConfig(recipe="jpeg", out=tmp_path / "strict_j2", input=str(awkward), size=32, strict=True,
                              max_pixels=4_000_000, workers=2, shard_size=1))
    finally:
        (awkward / "empty.jpg").write_bytes(b"")


def test_no_usable_input_fails(tmp_path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(b"")
    (tmp_path / "in" / "b.png").write_text("x")
    with pytest.raises(BuildError, match="no usable input: all 2 inputs were skipped"):
        build(BuildConfig(recipe="jpeg", out=tmp_path / "out", input=str(tmp_path / "in"), size=32))
    with pytest.raises(BuildError, match="no image files"):
        build(BuildConfig(recipe="jpeg", out=tmp_path / "out2", input=str(tmp_path / "out")))


def test_tar_and_list_inputs(ref, photos, tmp_path) -> None:
    out, _ = ref
    report = build(BuildConfig(recipe="jpeg", out=tmp_path / "t", input=str(out / "train-{000000..000004}.tar"), size=32, val_fraction=0))
    srcs = {m["source"] for m in samples(tmp_path / "t")}
    assert len(srcs) == 14 and all(re.fullmatch(r"train-00000[0-4]\.tar/[0-9]{8}_[01]\.hq\.png", s) for s in srcs)
    assert report.manifest["build"]["inputs"]["kind"] == "tar"
    lst = tmp_path / "list.txt"
    lst.write_text(f"# chosen\n{photos / 'z_exact.png'}\n\n{photos / 'a/p001.png'}\n{photos / 'z_exact.png'}\n")
    report = build(BuildConfig(recipe="jpeg", out=tmp_path / "l", input=str(lst), size=32, val_fraction=0))
    assert report.manifest["counts"]["train"]["pairs"] == 2
    assert [s["reason"] for s in report.manifest["skipped"]] == ["listed more than once (later entries ignored)"]


def test_default_input_is_the_bundled_faces(tmp_path) -> None:
    report = build(BuildConfig(recipe="jpeg", out=tmp_path / "demo", size=32))
    assert report.pairs >= 64 and report.manifest["build"]["inputs"]["kind"] == "samples"


def test_one_build_at_a_time_per_out(ref, photos, tmp_path) -> None:
    import fcntl

    from cli.facedeg_cli import app

    out = tmp_path / "out"
    shutil.copytree(ref[0], out)
    def contents() -> dict[str, bytes]:
        return {n: (out / n).read_bytes() for n in files_under(out) if (out / n).is_file()}

    before = None
    with open(out / ".facedeg-build.lock", "a+") as held:  # what a running build holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242 on elsewhere\n")
        held.flush()
        before = contents()
        with pytest.raises(BuildError, match=r"being written by another facedeg build \(pid 4242 on elsewhere\)"):
            build(config(photos, out))
        result = CliRunner().invoke(app, ["build", "-r", "mixed", "-o", str(out), "-i", str(photos), "--size", "64"])
        assert result.exit_code == 2 and result.output.startswith("error: ") and "another facedeg build" in result.output
        assert contents() == before, "a refused build touches nothing"
    report = build(config(photos, out))  # released: this one finishes the build
    assert report.shards_built == 0 and shard_bytes(out) == shard_bytes(ref[0])


def test_cli_errors_are_one_line(ref, tmp_path) -> None:
    from cli.facedeg_cli import app

    runner = CliRunner()
    for args, pattern in [
        (["build", "-r", "mixed", "-o", str(tmp_path / "o"), "--size", "0"], "error: --size must be in"),
        (["build", "-r", "nope", "-o", str(tmp_path / "o")], "error: unknown recipe 'nope'"),
        (["build", "-r", "mixed", "-o", str(tmp_path / "o"), "-i", str(tmp_path / "missing")], "does not exist"),
        (["build", "-r", "jpeg", "-o", str(ref[0])], "different settings"),
        (["verify", str(tmp_path)], "no manifest"),
        (["replay", str(ref[0]), "99999999"], "not found"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        text = result.output.strip()
        assert text.startswith("error: ") and pattern in text and "\n" not in text and "Traceback" not in text
    help_text = runner.invoke(app, ["build", "--help"]).output
    assert "Examples" in help_text and "--variants" in help_text


def test_inputs_get_absolute_paths_and_odd_folder_names(photos, tmp_path, monkeypatch) -> None:
    from facedeg.build.inputs import discover

    for name in ("photos{1}", "x.tar"):  # folders, not tar patterns
        shutil.copytree(photos, tmp_path / name)
        assert discover(str(tmp_path / name)).kind == "folder"
    monkeypatch.chdir(tmp_path)  # remote Dask workers have another working directory: paths must not be relative
    for spec in ("x.tar", "x.tar/z_exact.png"):
        assert all(Path(s.path).is_absolute() for s in discover(spec).sources)


def test_unreadable_subfolder_is_reported_not_dropped(photos, tmp_path, monkeypatch) -> None:
    import os

    from facedeg.build.inputs import discover

    root = tmp_path / "in"
    shutil.copytree(photos, root)
    real = os.scandir

    def scandir(path="."):
        if str(path).endswith("b"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    inputs = discover(str(root))
    assert inputs.rejected == ({"source": "b/", "reason": "unreadable folder (Permission denied)"},)
    assert not any(s.rel.startswith("b/") for s in inputs.sources)


def test_out_and_scheduler_errors_are_build_errors(photos, tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(BuildError, match="--out: cannot write .*file/sub: Not a directory"):
        build(config(photos, tmp_path / "file" / "sub"))
    with pytest.raises(BuildError, match="--scheduler: cannot connect to foo"):
        build(config(photos, tmp_path / "o", backend="dask", scheduler="foo"))
    with pytest.raises(BuildError, match="--max-pixels must be >= 1"):
        build(config(photos, tmp_path / "o", max_pixels=0))
