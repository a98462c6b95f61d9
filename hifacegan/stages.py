"""The loader's stages: each an iterator -> iterator function whose state travels in the samples
(webdataset's pipeline style). `hifacegan.data.PairStream` composes them per loader worker:

    shard_rounds -> read_shards | read_files -> shuffle_rounds -> number_rounds -> skip_to
                 -> load_pairs -> batches

A sample is a dict: raw ones hold `__key__`, `__url__`, `round`, `index` and member bytes (or an error
item, `__error__`, that the error policy counts in stream order); loaded ones hold `key`, `url`,
`round`, `index`, uint8 `lq`/`hq` and the running `skipped` count. A batch carries its worker's cursor.
"""

from __future__ import annotations

import itertools
import logging
import random
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds

from facedeg.build.shards import MEMBER_SUFFIXES
from facedeg.seeds import derive_seed
from hifacegan.errors import DataError, HiFaceGANError

log = logging.getLogger("hifacegan.data")  # the loader's one logger (its stages live here)

Cursor = tuple[int, int, int]  # (round, index of the next sample in that round, samples skipped so far)
START: Cursor = (0, 0, 0)


def assign_shards(urls: list[str], rank: int, world: int, worker: int, workers: int,
                  share: bool = False) -> tuple[list[int], int, int]:
    """This (rank, worker)'s shards as indices into `urls`, and its sample slice (stride, offset).

    Enough shards: a disjoint share of them, all their samples (stride 1). Fewer shards than
    (rank, worker) pairs: all shards, and the pair keeps sample i of shard s when (s + i) % stride ==
    offset, so pairs still read disjoint samples; with `share`, all shards and all their samples."""
    pairs, pair = world * workers, rank * workers + worker
    index = list(range(len(urls)))
    if len(urls) >= pairs:
        return index[rank::world][worker::workers], 1, 0
    return (index, 1, 0) if share else (index, pairs, pair)


def shard_rounds(urls: list[str], mine: list[int], stride: int, offset: int, *, seed: int, rank: int,
                 worker: int, first_round: int = 0) -> Iterator[dict[str, Any]]:
    """Endless shard sources {"url", "round", "keep": (stride, keep)}: round r is `mine` in an order
    seeded by (seed, rank, worker, r). `keep` selects this pair's slice of the shard's samples."""
    for rnd in itertools.count(first_round):
        order = random.Random(derive_seed(seed, "order", rank, worker, rnd)).sample(mine, len(mine))
        for i in order:
            yield {"url": urls[i], "round": rnd, "keep": (stride, (offset - i) % stride)}


def read_tar(url: str, members: Iterable[str] = MEMBER_SUFFIXES) -> Iterator[dict[str, Any]]:
    """Samples of one shard as {"__key__", "__url__", member suffix: bytes}, reading only `members` (default: the
    members of facedeg's shard table; anything else, pickles included, is never read).

    Consecutive members with the same key (the text before the first dot) form a sample. A broken
    stream (truncated download, bad header) ends the shard with one error item
    {"__url__", "__error__": exception, "__where__": "after key K"} that the error policy counts in
    stream order; the sample being read is dropped, every complete one before it is kept.

    Our own reader rather than `webdataset.tarfile_to_samples`, which (1.0.2) keeps only `__url__` of
    the source, so a shard's round and sample slice could not travel to its samples; yields the partial
    sample of a truncated shard and reports that one break twice; and names the file, never the key.
    """
    wanted = frozenset(members)
    sample: dict[str, Any] = {}
    last = ""
    try:
        with wds.gopen(url) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for info in tar:
                key, _, suffix = Path(info.name).name.partition(".")
                suffix = suffix.lower()
                if not info.isfile() or suffix not in wanted:
                    continue
                if sample and sample["__key__"] != key:
                    last = sample["__key__"]
                    yield sample
                    sample = {}
                f = tar.extractfile(info)
                sample.setdefault("__key__", key)
                sample.setdefault("__url__", url)
                sample[suffix] = f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError, ValueError) as exn:
        yield {"__key__": "", "__url__": url, "__error__": exn,
               "__where__": f"after key {last}" if last else "at its start"}
        return
    if sample:
        yield sample


def read_shards(sources: Iterable[dict[str, Any]], no_samples: Callable[[int], DataError],
                members: Iterable[str] = MEMBER_SUFFIXES) -> Iterator[dict[str, Any]]:
    """Raw samples of each source's shard, those in its `keep` slice, tagged with the source's round.
    A round that yields nothing at all (empty shards, or a slice that keeps nothing) raises
    `no_samples(0)` when the next round starts (so an endless stream of empty rounds cannot spin)."""
    current, count = None, 0
    for src in sources:
        if src["round"] != current:
            if current is not None and count == 0:
                raise no_samples(0)
            current, count = src["round"], 0
        stride, keep = src["keep"]
        for i, raw in enumerate(read_tar(src["url"], members)):
            if "__error__" in raw or i % stride == keep:
                count += 1
                raw["round"] = src["round"]
                yield raw


def read_files(sources: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """An image folder's files as raw samples {"__key__", "__url__", "file", "round"} (read when loaded)."""
    for src in sources:
        yield {"__key__": Path(src["url"]).stem, "__url__": src["url"], "file": src["url"], "round": src["round"]}


def shuffle_rounds(samples: Iterable[dict[str, Any]], bufsize: int,
                   seed_of_round: Callable[[int], int]) -> Iterator[dict[str, Any]]:
    """Shuffle buffer that never mixes two rounds: it drains when a new round starts, so a sample comes
    out once per round (a plain buffer over an endless cycle can hold two copies). Round r is shuffled
    by its own generator, seeded with `seed_of_round(r)`, so a stream started at round r needs nothing
    from earlier rounds. Raw (undecoded) samples are shuffled: cheap to hold and to skip."""
    buf: list[dict[str, Any]] = []
    rng = random.Random(0)

    def pick() -> dict[str, Any]:
        i = rng.randrange(len(buf))
        buf[i], buf[-1] = buf[-1], buf[i]
        return buf.pop()

    current = None
    for sample in samples:
        if sample["round"] != current:
            while buf:
                yield pick()
            current = sample["round"]
            rng = random.Random(seed_of_round(current))
        buf.append(sample)
        if len(buf) >= bufsize:
            yield pick()
    while buf:
        yield pick()


def number_rounds(samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Tag each sample with its "index" within its round (the position a cursor counts)."""
    current, index = None, 0
    for sample in samples:
        if sample["round"] != current:
            current, index = sample["round"], 0
        sample["index"] = index
        index += 1
        yield sample


def skip_to(samples: Iterable[dict[str, Any]], cursor: Cursor) -> Iterator[dict[str, Any]]:
    """Drop the samples before `cursor` (round, index) without decoding them."""
    start = cursor[:2]
    for sample in samples:
        if (sample["round"], sample["index"]) >= start:
            yield sample


def _warn_skip(url: str, where: str, exn: BaseException) -> None:
    reason = str(exn.args[0] if exn.args else exn)[:200]
    log.warning("skipping corrupt data in shard %s (%s): %s: %s", url, where, type(exn).__name__, reason)


def load_pairs(samples: Iterable[dict[str, Any]], load: Callable[[dict[str, Any]], dict[str, Any]],
               no_samples: Callable[[int], DataError], skipped: int = 0) -> Iterator[dict[str, Any]]:
    """`load` each raw sample into a pair, with the error policy: a corrupt sample (or a broken shard's
    error item) is logged, counted and dropped, and each pair carries the running count ("skipped",
    starting at `skipped`). A HiFaceGANError stops the stream. A round that ends without one usable
    sample raises `no_samples(skipped)` (a round seen only from a cursor on is not judged)."""
    current, judged, usable = None, False, False
    for raw in samples:
        if raw["round"] != current:
            if judged and not usable:
                raise no_samples(skipped)
            current, judged, usable = raw["round"], raw["index"] == 0, False
        if "__error__" in raw:
            skipped += 1
            _warn_skip(raw["__url__"], raw["__where__"], raw["__error__"])
            continue
        try:
            pair = load(raw)
        except HiFaceGANError:
            raise
        except Exception as exn:  # a corrupt sample must not stop training
            skipped += 1
            _warn_skip(raw["__url__"], f"key {raw['__key__']}", exn)
            continue
        usable = True
        pair["skipped"] = skipped
        yield pair


def batches(pairs: Iterable[dict[str, Any]], batch_size: int, worker: int, *, limit: int | None = None,
            keep_partial: bool = False) -> Iterator[dict[str, Any]]:
    """Stack pairs into uint8 NHWC batches; each batch carries its worker and cursor."""
    batch: list[dict[str, Any]] = []
    for pair in itertools.islice(pairs, limit):
        batch.append(pair)
        if len(batch) == batch_size:
            yield collate(batch, worker)
            batch = []
    if batch and keep_partial:
        yield collate(batch, worker)


def collate(batch: list[dict[str, Any]], worker: int) -> dict[str, Any]:
    last = batch[-1]
    return {
        "lq": torch.from_numpy(np.stack([s["lq"] for s in batch])),
        "hq": torch.from_numpy(np.stack([s["hq"] for s in batch])),
        "keys": [s["key"] for s in batch],
        "shards": [s["url"] for s in batch],
        "worker": worker,
        "skipped": last["skipped"],
        "cursor": (last["round"], last["index"] + 1, last["skipped"]),
    }
