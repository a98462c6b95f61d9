"""Streaming loader: shard resolution, splitting, determinism, exact resume, decoding policy, on-the-fly degradation."""

from __future__ import annotations

import itertools
import logging
import tarfile
from collections import defaultdict

import pytest
import torch
from _shards import write_folder, write_shards

from facedeg.build.shards import MEMBER_SUFFIXES
from hifacegan import data, stages
from hifacegan.errors import DataError


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    # 16 train samples in 4 shards of 4; 4 val samples in 1 shard; pickles that must never be loaded
    return write_shards(tmp_path_factory.mktemp("shards"), 16, 4, per_shard=4, pickles=True)


def take(loader, n: int) -> list[dict]:
    """The first n batches of an (endless) train loader; its workers stop when the iterator goes."""
    return list(itertools.islice(iter(loader), n))


def keys_by_worker(batches) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for batch in batches:
        out[batch["worker"]] += batch["keys"]
    return out


def test_resolve_dir_pattern_glob_and_list(shards):
    train = data.resolve_shards(shards)
    assert [p.rsplit("/", 1)[1] for p in train] == [f"train-{i:06d}.tar" for i in range(4)]
    assert len(data.resolve_shards(shards, "val")) == 1
    assert data.resolve_shards(f"{shards}/train-{{000000..000003}}.tar") == train
    assert data.resolve_shards(f"{shards}/train-*.tar") == train
    assert data.resolve_shards(f"{train[0]},{train[1]}") == train[:2]
    assert data.default_val_spec(str(shards)) == str(shards)


def test_resolve_errors_name_what_is_missing(shards, tmp_path):
    with pytest.raises(DataError, match=r"shard not found: .*train-000004\.tar \(and 1 more\)"):
        data.resolve_shards(f"{shards}/train-{{000003..000005}}.tar")
    with pytest.raises(DataError, match="no train shards"):
        data.resolve_shards(tmp_path)
    with pytest.raises(DataError, match="folder of images has no LQ"):
        data.check_source(str(write_folder(tmp_path / "imgs", 1)))


def test_batches_are_uint8_and_pickles_never_loaded(shards):
    batches = take(data.train_loader(str(shards), 64, 2, workers=0, seed=0), 2)
    for b in batches:
        assert b["lq"].dtype == torch.uint8 and b["lq"].shape == (2, 64, 64, 3) and b["hq"].shape == (2, 64, 64, 3)
        assert set(b) == {"lq", "hq", "keys", "shards", "worker", "skipped", "cursor"}
    assert not (shards / "PWNED").exists()


def test_the_reader_keeps_exactly_the_shard_member_table(tmp_path):
    # a member the table lists is read without touching the loader; one it does not list never is
    root = write_shards(tmp_path / "m", 2, 0, per_shard=2, pickles=True)
    raws = list(stages.read_tar(str(root / "train-000000.tar")))
    assert [r["__key__"] for r in raws] == ["00000000", "00000001"]
    assert all(set(r) == {"__key__", "__url__", "hq.png", "lq.png", "json"} for r in raws)
    assert set(MEMBER_SUFFIXES) >= {"hq.png", "lq.png", "json"} and "pyd" not in MEMBER_SUFFIXES
    assert all(set(r) == {"__key__", "__url__", "hq.png", "pyd"}
               for r in stages.read_tar(str(root / "train-000000.tar"), members=("hq.png", "pyd")))


def test_no_repeats_within_a_round_per_worker_and_disjoint_workers(shards):
    # 2 workers x 2 shards x 4 samples: 4 batches of 2 read 4 samples per worker
    per_worker = keys_by_worker(take(data.train_loader(str(shards), 64, 2, workers=2, seed=0, shuffle_buffer=3), 4))
    assert sorted(per_worker) == [0, 1]
    for keys in per_worker.values():
        assert len(keys) == 4 and len(set(keys)) == 4
    assert not set(per_worker[0]) & set(per_worker[1])


def test_ranks_read_disjoint_shards_and_same_batch_count(shards):
    seen = {}
    for rank in (0, 1):
        batches = take(data.train_loader(str(shards), 64, 2, workers=0, seed=0, rank=rank, world=2), 3)
        assert len(batches) == 3  # every rank's stream is endless: a batch per step, on every rank
        seen[rank] = {s for b in batches for s in b["shards"]}
    assert seen[0] and seen[1] and not seen[0] & seen[1]


def test_fewer_shards_than_ranks_or_workers_still_no_repeats(tmp_path):
    # 2 shards of 4 for 4 ranks (or 2 workers on 1 shard): each reads disjoint samples, not whole shards
    root = write_shards(tmp_path / "few", 8, 0, per_shard=4)
    per_rank = [[k for b in take(data.train_loader(str(root), 64, 1, workers=0, seed=0, rank=r, world=4), 2)
                 for k in b["keys"]] for r in range(4)]
    assert sorted(k for keys in per_rank for k in keys) == [f"{i:08d}" for i in range(8)]
    one = f"{root}/train-000000.tar"
    per_worker = keys_by_worker(take(data.train_loader(one, 64, 1, workers=2, seed=0), 4))
    assert sorted(per_worker) == [0, 1] and sorted(per_worker[0] + per_worker[1]) == [f"{i:08d}" for i in range(4)]
    with pytest.raises(DataError, match="keeps 1 in 8 samples"):  # fewer samples than ranks x workers
        take(data.train_loader(one, 64, 1, workers=0, seed=0, rank=7, world=8), 1)


def test_stream_rounds_are_seeded_permutations(shards):
    def order(seed=0):
        return [k for b in take(data.train_loader(str(shards), 64, 2, workers=0, seed=seed), 16) for k in b["keys"]]

    first = order()
    assert first == order()
    assert first != order(seed=1)
    every = [f"{i:08d}" for i in range(16)]
    assert sorted(first[:16]) == sorted(first[16:]) == every  # each round: every sample exactly once
    assert first[:16] != first[16:]  # in a fresh order


@pytest.mark.parametrize(("workers", "hq_only"), [(0, False), (2, False), (0, True)])
def test_a_stream_started_from_its_cursors_continues_it_exactly(tmp_path, workers, hq_only):
    # 12 samples in 4 shards, one corrupt, a shuffle buffer: batches cross rounds and carry skips;
    # HQ-only data degraded on the fly: the LQ seed travels with the sample position
    root = write_shards(tmp_path / "d", 12, 0, per_shard=3, corrupt=("00000004",), hq_only=hq_only)
    kw = dict(workers=workers, seed=3, shuffle_buffer=4, degrade="jpeg" if hq_only else None)
    straight = take(data.train_loader(str(root), 64, 2, **kw), 12)
    assert straight[-1]["skipped"] >= (0 if hq_only else 1)
    for k in (3, 6) if workers else (1, 4, 7):
        cursors = {}
        for b in straight[:k]:
            cursors[b["worker"]] = b["cursor"]
        resumed = take(data.train_loader(str(root), 64, 2, step=k, cursors=cursors, **kw), 12 - k)
        for a, b in zip(straight[k:], resumed, strict=True):
            assert (a["keys"], a["worker"], a["skipped"]) == (b["keys"], b["worker"], b["skipped"])
            assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["hq"], b["hq"])


def test_resume_cursors_from_checkpoints():
    saved = [data.stream_state({0: (2, 5, 1), 1: (3, 0, 0)}, world=1, workers=2)]
    assert data.resume_cursors(saved, 0, 1, 2) == ({0: (2, 5, 1), 1: (3, 0, 0)}, None)
    cursors, note = data.resume_cursors(saved, 0, 1, 4)  # another --workers: a fresh round for all
    assert cursors == {0: (4, 0, 1), 1: (4, 0, 0), 2: (4, 0, 0), 3: (4, 0, 0)}
    assert "1 process(es) x 2 worker(s), now 1 x 4" in note
    assert data.resume_cursors(None, 0, 1, 2)[0] == {} and "no stream position" in data.resume_cursors(None, 0, 1, 2)[1]


def test_corrupt_sample_is_skipped_named_and_counted(tmp_path, caplog):
    root = write_shards(tmp_path / "bad", 4, 0, per_shard=2, corrupt=("00000001",))
    shard = root / "train-000001.tar"
    with tarfile.open(shard) as tar:
        cut = tar.getmembers()[3].offset_data + 10  # inside 00000003.hq.png: a truncated download
    with open(shard, "r+b") as f:
        f.truncate(cut)
    with caplog.at_level(logging.WARNING, logger="hifacegan.data"):
        batches = take(data.train_loader(str(root), 64, 1, workers=0, seed=0, shuffle_buffer=1), 3)
    assert {k for b in batches for k in b["keys"]} == {"00000000", "00000002"}  # 3rd batch: next round
    messages = [r.getMessage() for r in caplog.records]
    assert any("train-000000.tar (key 00000001)" in m and "lq.png" in m for m in messages)
    assert any("train-000001.tar (after key 00000002)" in m for m in messages)
    assert batches[-1]["skipped"] >= 2


def test_no_usable_samples_is_an_error(tmp_path):
    (tmp_path / "train-000000.tar").write_bytes(b"")
    tarfile.open(tmp_path / "train-000001.tar", "w").close()
    with pytest.raises(DataError, match="no usable samples in 2 shard"):
        take(data.train_loader(str(tmp_path), 64, 2, workers=0, seed=0), 1)
    hq_only = write_shards(tmp_path / "hq", 2, 0, hq_only=True)
    with pytest.raises(DataError, match="no usable samples"):
        take(data.train_loader(str(hq_only), 64, 2, workers=0, seed=0), 1)


def test_hq_only_val_data_without_degrade_stops_with_one_error(tmp_path, caplog):
    hq_only = write_shards(tmp_path / "hq", 2, 2, hq_only=True)
    with pytest.raises(DataError, match=r"val-000000\.tar: sample \S+ has no lq\.png: validation and eval need "
                                        r"paired shards"):
        list(data.val_batches(str(hq_only), 64, 2, limit=4))
    assert "skipping" not in caplog.text, "not one warning per sample"
    assert len(list(data.val_batches(str(hq_only), 64, 2, limit=4, degrade="jpeg"))) == 1  # degraded on the fly


def test_on_the_fly_lq_differs_across_workers(tmp_path):
    folder = write_folder(tmp_path / "one", n=1, size=80)  # one image: both workers read it
    batches = take(data.train_loader(str(folder), 64, 1, workers=2, seed=0, degrade="mixed"), 2)
    assert sorted(b["worker"] for b in batches) == [0, 1]
    assert torch.equal(batches[0]["hq"], batches[1]["hq"])
    assert not torch.equal(batches[0]["lq"], batches[1]["lq"])


def test_on_the_fly_from_hq_only_shards_is_reproducible(tmp_path):
    root = write_shards(tmp_path / "hq", 4, 2, hq_only=True)

    def run():  # 4 samples, batches of 2: rounds 0 and 1
        return take(data.train_loader(str(root), 64, 2, workers=0, seed=0, degrade="jpeg"), 4)

    a, b = run(), run()
    assert all(torch.equal(x["lq"], y["lq"]) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0]["hq"], a[0]["lq"])
    by_round = [{k: lq for bt in a[r:r + 2] for k, lq in zip(bt["keys"], bt["lq"], strict=True)} for r in (0, 2)]
    assert set(by_round[0]) == set(by_round[1])  # the same HQs in both rounds, with fresh LQs
    assert all(not torch.equal(by_round[0][k], by_round[1][k]) for k in by_round[0])
    val = list(data.val_batches(str(root), 64, 2, limit=2, degrade="jpeg"))
    assert torch.equal(val[0]["lq"], next(data.val_batches(str(root), 64, 2, limit=2, degrade="jpeg"))["lq"])


def test_to_device_same_flip_for_lq_and_hq():
    img = torch.arange(4 * 8 * 8 * 3, dtype=torch.int64).remainder(256).to(torch.uint8).view(4, 8, 8, 3)
    batch = {"lq": img, "hq": img.clone()}
    lq, hq = data.to_device(batch, torch.device("cpu"), flip_seed=1, channels_last=True)
    assert lq.dtype == torch.float32 and lq.shape == (4, 3, 8, 8) and lq.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(lq, hq) and lq.min() >= -1 and lq.max() <= 1
    plain = data.to_device(batch, torch.device("cpu"))[0]
    flipped = [bool(torch.equal(lq[i], plain[i].flip(2))) for i in range(4)]
    kept = [bool(torch.equal(lq[i], plain[i])) for i in range(4)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    again = data.to_device(batch, torch.device("cpu"), flip_seed=1)[0]
    assert torch.equal(again, lq)
    flips = {tuple(torch.equal(data.to_device(batch, torch.device("cpu"), flip_seed=s)[0][i], plain[i])
                   for i in range(4)) for s in range(8)}
    assert len(flips) > 1  # the flip decision depends on the seed
