"""facedeg.shards: deterministic tar bytes, fixed metadata, safe member names, atomic files."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from facedeg.errors import BuildError
from facedeg.shards import (
    ShardWriter,
    atomic_file,
    check_member,
    iter_tar_samples,
    sample_key,
    shard_name,
    wids_index,
)


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
            assert not target.exists() and (tmp_path / "train-000000.tar.tmp").exists()
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
