"""facedeg.build.shards: deterministic tar bytes, fixed metadata, safe member names, atomic files."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from facedeg.build.shards import (
    ShardWriter,
    check_member,
    iter_tar_samples,
    sample_key,
    shard_name,
    wids_index,
)
from facedeg.errors import BuildError
from facedeg.files import atomic_file, tmp_target


def write(samples: list[tuple[str, dict[str, bytes]]]) -> tuple[bytes, ShardWriter]:
    buf = io.BytesIO()
    with ShardWriter(buf) as w:
        for key, members in samples:
            w.add(key, members)
    return buf.getvalue(), w


SAMPLES = [
    ("00000000", {"hq.png": b"H" * 700, "lq.png": b"L" * 10, "json": b"{}"}),
    ("00000001_2", {"hq.jpg": b"J" * 3, "lq.png": b"", "json": b"[]"}),
]


def test_bytes_are_reproducible_and_hashes_match() -> None:
    a, w = write(SAMPLES)
    b, _ = write(SAMPLES)
    assert a == b
    assert w.sha256 == hashlib.sha256(a).hexdigest() and w.md5 == hashlib.md5(a).hexdigest()
    assert w.size == len(a) and w.count == 2 and len(a) % 10240 == 0


def test_members_have_fixed_metadata_in_order() -> None:
    data, _ = write(SAMPLES)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == [
        "00000000.hq.png", "00000000.lq.png", "00000000.json",
        "00000001_2.hq.jpg", "00000001_2.lq.png", "00000001_2.json",
    ]
    for i in infos:
        assert (i.mtime, i.uid, i.gid, i.uname, i.gname, i.mode, i.type) == (0, 0, 0, "", "", 0o444, tarfile.REGTYPE)


def test_iter_tar_samples_groups_members(tmp_path) -> None:
    data, _ = write(SAMPLES)
    (tmp_path / "s.tar").write_bytes(data)
    got = list(iter_tar_samples(tmp_path / "s.tar"))
    assert [k for k, _ in got] == ["00000000", "00000001_2"]
    assert got[0][1]["hq.png"] == b"H" * 700 and got[1][1]["json"] == b"[]"


@pytest.mark.parametrize("key", ["../00000001", "0000001", "00000001.x", "00000001/a", "/etc/passwd", "00000001_a", ""])
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(BuildError):
        check_member(key, "json")


@pytest.mark.parametrize("suffix", ["../json", "hq/png", "HQ.png", ".json", "json."])
def test_unsafe_suffixes_are_refused(suffix: str) -> None:
    with pytest.raises(BuildError):
        check_member("00000001", suffix)


def test_names() -> None:
    assert sample_key(12) == "00000012" and sample_key(12, 3) == "00000012_3"
    assert shard_name("val", 7) == "val-000007.tar"
    with pytest.raises(BuildError):
        shard_name("../train", 0)


def test_atomic_file_appears_only_when_complete(tmp_path) -> None:
    target = tmp_path / "train-000000.tar"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as f:
            f.write(b"partial")
            assert not target.exists() and [p.name[:17] for p in tmp_path.glob("*.tmp")] == ["train-000000.tar."]
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_file(target) as f:
        f.write(b"done")
    assert target.read_bytes() == b"done" and [p.name for p in tmp_path.iterdir()] == ["train-000000.tar"]


def test_wids_index_format() -> None:
    shards = [
        {"name": "train-000000.tar", "split": "train", "samples": 3, "bytes": 10240, "sha256": "s", "md5": "m"},
        {"name": "val-000000.tar", "split": "val", "samples": 1, "bytes": 10240, "sha256": "t", "md5": "n"},
    ]
    idx = wids_index(shards, "train")
    assert idx["__kind__"] == "wids-shard-index-v1"
    assert idx["shardlist"] == [{"url": "train-000000.tar", "md5sum": "m", "nsamples": 3, "filesize": 10240}]


def test_atomic_file_does_not_write_through_a_leftover_symlink(tmp_path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "dataset.json.tmp").symlink_to(outside)
    with atomic_file(out / "dataset.json") as f:
        f.write(b"{}")
    assert outside.read_bytes() == b"precious" and (out / "dataset.json").read_bytes() == b"{}"


def test_two_writers_of_one_file_never_expose_a_partial_one(tmp_path) -> None:
    """An orphaned worker of a killed build and the rerun may write the same shard at once."""
    target = tmp_path / "train-000000.tar"
    with atomic_file(target) as rerun:
        rerun.write(b"partial")
        with atomic_file(target) as orphan:
            orphan.write(b"complete")
        assert target.read_bytes() == b"complete"
        rerun.write(b" and complete")
    assert target.read_bytes() == b"partial and complete" and [p.name for p in tmp_path.iterdir()] == [target.name]
    assert tmp_target("train-000000.tar.0123456789ab.tmp") == "train-000000.tar" and tmp_target("x.tmp") is None  # a user's file, not ours
