"""Streaming training data from facedeg shards (webdataset tar files) or image folders.

Per loader worker the stream is: shard cycle -> tar members -> decode (or degrade) -> shuffle buffer -> batch.

- Shards are split explicitly: rank r takes shards r::world, and each DataLoader worker takes every
  n-th of those, when there are at least as many shards as (rank, worker) pairs. With fewer shards,
  every pair reads all of them but keeps a disjoint slice of the samples (sample i of shard s when
  (s + i) % pairs == pair), so no sample is read twice per round on any rank. On-the-fly mode
  (`degrade`) shares the shards instead: each worker makes its own LQ from a shared HQ.
- The shard cycle is endless: a fresh permutation, seeded by (seed, epoch, rank, worker, round), each time
  the list is used up. Every sample is read once before any repeats, and no rank ever runs dry, so with
  `with_epoch(steps)` every rank yields exactly the same number of batches (no DDP hang).
- Only the members of facedeg's shard table (`facedeg.build.shards.MEMBERS`: hq, lq, json) are read; everything else (pickles included)
  is never even loaded. Batches hold uint8 NHWC tensors; float conversion and the flip happen on the
  device in `to_device`.
- A corrupt sample, or the rest of a broken shard, is skipped with a warning naming shard and key, and
  counted (`skipped` in each batch: the worker's running total).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import braceexpand
import cv2
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

import facedeg
from facedeg.build.heap import keep_heap
from facedeg.build.shards import LQ_MEMBER, MEMBER_SUFFIXES, MEMBERS, find_member
from facedeg.codec import decode
from facedeg.crop import crop_and_resize
from facedeg.files import file_problem
from facedeg.imread import IMAGE_EXTENSIONS, read_image
from hifacegan.errors import DataError, HiFaceGANError

log = logging.getLogger("hifacegan.data")

IMAGE_EXTS = frozenset(IMAGE_EXTENSIONS)  # the same files facedeg build reads


# ----------------------------------------------------------------------------- locating data


def _manifest_shards(manifest: dict[str, Any], split: str) -> list[str] | None:
    """Shard file names of `split` listed in a facedeg dataset.json (None when it lists no shards)."""
    shards = manifest.get("shards") if isinstance(manifest, dict) else None
    if not isinstance(shards, list):
        return None
    return [s["name"] for s in shards if isinstance(s, dict) and s.get("split") == split and "name" in s]


def resolve_shards(spec: str | Path, split: str = "train") -> list[str]:
    """Shard paths from a dataset DIR (its dataset.json), a brace pattern, a glob, or a comma-separated list.

    Raises DataError naming what is missing.
    """
    spec = str(spec)
    path = Path(spec)
    if path.is_dir():
        mf = path / "dataset.json"
        names = None
        if mf.is_file():
            try:
                names = _manifest_shards(json.loads(mf.read_text()), split)
            except (json.JSONDecodeError, AttributeError, TypeError) as exc:
                raise DataError(f"{mf}: cannot read the manifest: {exc}") from None
        if names is None:
            names = sorted(p.name for p in path.glob(f"{split}-*.tar"))
        urls = [str(path / n) for n in names]
        if not urls:
            raise DataError(f"{path}: no {split} shards (dataset.json lists none and no {split}-*.tar exists)")
    else:
        urls = [u for part in spec.split(",") if part for u in braceexpand.braceexpand(part)]
        if any(ch in spec for ch in "*?["):
            urls = [str(p) for u in urls for p in sorted(Path(u).parent.glob(Path(u).name))] or urls
    local = [u for u in urls if "://" not in u and not u.startswith("pipe:")]
    missing = [(u, why) for u in local if (why := file_problem(u))]
    if missing:
        (first, why), more = missing[0], f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        origin = f" (from '{spec}')" if spec != first else ""
        head = "shard not found" if why in ("no such file", "broken symbolic link") else f"shard unreadable ({why})"
        raise DataError(f"{head}: {first}{more}{origin}")
    if not urls:
        raise DataError(f"no shards match '{spec}'")
    return urls


def default_val_spec(data: str) -> str | None:
    """`--data DIR` implies DIR's val shards for validation, when it has any."""
    if Path(data).is_dir():
        try:
            resolve_shards(data, "val")
            return data
        except DataError:
            return None
    return None


def list_images(folder: str | Path) -> list[str]:
    files = sorted(str(p) for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise DataError(f"{folder}: no image files found")
    return files


# ----------------------------------------------------------------------------- error policy


class _Skips:
    """Error policy: log a warning naming shard and key, count, continue (no sleeping).

    The stream keeps `url` (the shard being read) and `key` (its last complete sample) up to date."""

    def __init__(self) -> None:
        self.count, self.url, self.key = 0, "?", ""

    def __call__(self, exn: BaseException, key: str | None = None, url: str | None = None) -> bool:
        where = f"key {key}" if key is not None else (f"after key {self.key}" if self.key else "at its start")
        reason = str(exn.args[0] if exn.args else exn)[:200]
        self.count += 1
        log.warning("skipping corrupt data in shard %s (%s): %s: %s", url or self.url, where, type(exn).__name__, reason)
        return True


# ----------------------------------------------------------------------------- the stream


def read_tar(url: str, on_error: _Skips) -> Iterator[dict[str, Any]]:
    """Samples of one shard as {"__key__", "__url__", member suffix: bytes}, reading only the members of the shard table (MEMBER_SUFFIXES).

    Consecutive members with the same key (the text before the first dot) form a sample. A broken
    stream (truncated download, bad header) ends the shard with one warning; the sample being read is
    dropped, every complete one before it is kept."""
    on_error.url, on_error.key = url, ""
    sample: dict[str, Any] = {}
    try:
        with wds.gopen(url) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for info in tar:
                key, _, suffix = Path(info.name).name.partition(".")
                if not info.isfile() or suffix.lower() not in MEMBER_SUFFIXES:
                    continue
                if sample and sample["__key__"] != key:
                    on_error.key = sample["__key__"]
                    yield sample
                    sample = {}
                f = tar.extractfile(info)
                sample.setdefault("__key__", key)
                sample.setdefault("__url__", url)
                sample[suffix.lower()] = f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError, ValueError) as exn:
        on_error(exn)
        return
    if sample:
        yield sample


def stable_seed(*parts: int | str) -> int:
    """A 64-bit seed from ints and strings, the same on every machine and Python run."""
    words = [p if isinstance(p, int) else int.from_bytes(hashlib.blake2b(p.encode(), digest_size=8).digest(),
                                                         "little") for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0])


def shuffle_rounds(samples: Iterator[dict[str, Any]], bufsize: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    """Shuffle buffer that never mixes two rounds of the shard cycle: it drains when a new round starts,
    so a sample comes out once per round (a plain buffer over an endless cycle can hold two copies)."""
    buf: list[dict[str, Any]] = []

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
        buf.append(sample)
        if len(buf) >= bufsize:
            yield pick()
    while buf:
        yield pick()


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


class PairStream(IterableDataset):
    """Batches of uint8 (lq, hq) pairs from shards or an image folder, as described in the module doc.

    `degrade`: a facedeg recipe name/path; then LQ is made from HQ in the worker with seed
    derive_seed(seed, epoch, rank, worker, index) (train) or derive_seed(seed, "val", key) (val).
    `train=False` gives one ordered pass over all sources with no node split (for validation).
    """

    def __init__(self, sources: list[str], size: int, batch_size: int, *, seed: int = 0, epoch: int = 0,
                 rank: int = 0, world: int = 1, degrade: str | None = None, train: bool = True,
                 shuffle_buffer: int = 256, folder: bool = False, limit: int | None = None) -> None:
        super().__init__()
        if not sources:
            raise DataError("empty shard set")
        self.sources, self.size, self.batch_size = list(sources), size, batch_size
        self.seed, self.epoch, self.rank, self.world = seed, epoch, rank, world
        self.degrade, self.train, self.folder = degrade, train, folder
        self.shuffle_buffer, self.limit = shuffle_buffer, limit
        if folder and not degrade:
            raise DataError("a folder of images has no LQ: pass --degrade RECIPE to degrade on the fly")

    def _sources(self, worker: int, workers: int) -> Iterator[dict[str, Any]]:
        if not self.train:
            yield from ({"url": u} for u in self.sources)
            return
        mine, stride, offset = assign_shards(self.sources, self.rank, self.world, worker, workers,
                                             share=bool(self.degrade))
        for rnd in range(1 << 62):
            self.round = rnd
            before = self.decoded
            order = random.Random(stable_seed(self.seed, self.epoch, self.rank, worker, rnd)).sample(mine, len(mine))
            yield from ({"url": self.sources[i], "keep": (stride, (offset - i) % stride)} for i in order)
            if self.decoded == before:
                slice_note = (f"; this loader keeps 1 in {stride} samples: fewer samples than ranks x workers?"
                              if stride > 1 else "")
                raise DataError(f"no usable samples in {len(mine)} shard(s) starting with {self.sources[mine[0]]} "
                                f"({self.skips.count} skipped as corrupt{slice_note})")

    def _raw_samples(self, srcs: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for src in srcs:
            stride, keep = src.get("keep", (1, 0))
            if self.folder:
                raws: Iterator[dict[str, Any]] = iter([{"__key__": Path(src["url"]).stem, "__url__": src["url"],
                                                        "file": src["url"]}])
            else:
                raws = read_tar(src["url"], self.skips)
            yield from (raw for i, raw in enumerate(raws) if i % stride == keep)

    def _decode(self, raw: dict[str, Any], worker: int) -> dict[str, Any]:
        key, url = raw["__key__"], raw["__url__"]
        if self.folder:  # robust read (EXIF, gray, alpha, 16-bit), center crop, resize
            hq = crop_and_resize(read_image(raw["file"]), self.size)[0]
        else:
            hq_name = find_member(raw, "hq")
            if hq_name is None:
                raise ValueError(f"no {'/'.join(MEMBERS['hq'])} member")
            hq = self._sized(decode(raw[hq_name], hq_name))
        if self.degrade:
            if self._recipe is None:
                self._recipe = facedeg.load_recipe(self.degrade)
            if self.train:
                seed = facedeg.derive_seed(self.seed, self.epoch, self.rank, worker, self.decoded)
            else:
                seed = facedeg.derive_seed(self.seed, "val", key)
            lq = self._recipe.sample(seed, hq.shape[:2]).apply(hq)
        else:
            if LQ_MEMBER not in raw:
                if not self.train:  # val/eval data is a pair set by definition: stop, don't skip every sample
                    raise DataError(f"{url}: sample {key} has no lq.png: validation and eval need paired shards "
                                    "(from facedeg build); HQ-only data needs on-the-fly degradation "
                                    "(hifacegan train --degrade RECIPE)")
                raise ValueError("no lq.png member (HQ-only data needs --degrade RECIPE)")
            lq = self._sized(decode(raw[LQ_MEMBER], LQ_MEMBER))
        return {"key": key, "url": url, "lq": lq, "hq": hq, "round": self.round}

    def _sized(self, img: np.ndarray) -> np.ndarray:
        if img.shape[:2] != (self.size, self.size):  # e.g. 512 shards for a quick 256 run
            img = crop_and_resize(img, self.size)[0]
        return img

    def _decode_all(self, raws: Iterator[dict[str, Any]], worker: int) -> Iterator[dict[str, Any]]:
        for raw in raws:
            try:
                sample = self._decode(raw, worker)
            except HiFaceGANError:
                raise
            except Exception as exn:  # a corrupt sample must not stop training
                self.skips(exn, key=raw["__key__"], url=raw["__url__"])
                continue
            self.decoded += 1
            yield sample

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None:
            cv2.setNumThreads(1)
            keep_heap()  # loader workers decode (and degrade) big images: keep freed buffers mapped
        self.skips, self.decoded, self._recipe, self.round = _Skips(), 0, None, 0
        samples = self._decode_all(self._raw_samples(self._sources(worker, workers)), worker)
        if self.train and self.shuffle_buffer > 1:
            rng = random.Random(stable_seed(self.seed, self.epoch, self.rank, worker, "shuffle"))
            samples = shuffle_rounds(samples, self.shuffle_buffer, rng)
        batch: list[dict[str, Any]] = []
        emitted = 0
        for sample in samples:
            if self.limit is not None and emitted >= self.limit:
                break
            batch.append(sample)
            emitted += 1
            if len(batch) == self.batch_size:
                yield self._collate(batch, worker)
                batch = []
        if batch and not self.train:
            yield self._collate(batch, worker)

    def _collate(self, batch: list[dict[str, Any]], worker: int) -> dict[str, Any]:
        return {
            "lq": torch.from_numpy(np.stack([s["lq"] for s in batch])),
            "hq": torch.from_numpy(np.stack([s["hq"] for s in batch])),
            "keys": [s["key"] for s in batch],
            "shards": [s["url"] for s in batch],
            "worker": worker,
            "skipped": self.skips.count,
        }


# ----------------------------------------------------------------------------- loaders


def _is_folder(spec: str) -> bool:
    p = Path(spec)
    return p.is_dir() and not (p / "dataset.json").is_file() and not any(p.glob("*.tar"))


def check_source(spec: str, split: str = "train", degrade: str | None = None) -> str:
    """Validate a data option before training starts; returns a short description for the log."""
    if degrade:
        facedeg.load_recipe(degrade)  # RecipeError here, not later inside a loader worker
    if _is_folder(spec):
        if not degrade:
            raise DataError(f"{spec}: a folder of images has no LQ: pass --degrade RECIPE to degrade on the fly")
        return f"{len(list_images(spec))} images in {spec} (degraded on the fly with '{degrade}')"
    urls = resolve_shards(spec, split)
    how = f" (HQ degraded on the fly with '{degrade}')" if degrade else ""
    return f"{len(urls)} {split} shard(s) from {spec}{how}"


def make_stream(spec: str, size: int, batch_size: int, *, split: str = "train", **kw: Any) -> PairStream:
    folder = _is_folder(spec)
    sources = list_images(spec) if folder else resolve_shards(spec, split)
    return PairStream(sources, size, batch_size, folder=folder, **kw)


def train_loader(spec: str, size: int, batch_size: int, *, steps: int, workers: int, seed: int, epoch: int,
                 rank: int = 0, world: int = 1, degrade: str | None = None, shuffle_buffer: int = 256,
                 pin_memory: bool = False) -> wds.WebLoader:
    """Exactly `steps` batches per epoch on every rank."""
    stream = make_stream(spec, size, batch_size, seed=seed, epoch=epoch, rank=rank, world=world,
                         degrade=degrade, shuffle_buffer=shuffle_buffer)
    return wds.WebLoader(stream, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                         prefetch_factor=4 if workers else None,
                         multiprocessing_context=_worker_context() if workers else None).with_epoch(steps)


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers start from a clean forkserver with our modules preloaded: quick to start, and safe where a
    plain fork is not (a fork after OpenCV or OpenMP started threads in this process can deadlock)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["hifacegan.data"])
    return ctx


def val_batches(spec: str, size: int, batch_size: int, *, limit: int, seed: int = 0,
                degrade: str | None = None) -> Iterator[dict[str, Any]]:
    """One ordered pass over the first `limit` val samples, in the main process."""
    yield from make_stream(spec, size, batch_size, split="val", seed=seed, degrade=degrade, train=False,
                           limit=limit)


def to_device(batch: dict[str, Any], device: torch.device, *, flip_seed: int | None = None,
              channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 NHWC batch -> float NCHW in [-1, 1] on `device`; with `flip_seed`, the same random
    horizontal flip for LQ and HQ of each sample (the decision is drawn on the CPU, so it is reproducible)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    lq, hq = (batch[k].to(device, non_blocking=True).permute(0, 3, 1, 2).float()
              .div_(127.5).sub_(1.0).contiguous(memory_format=fmt) for k in ("lq", "hq"))
    if flip_seed is not None:
        g = torch.Generator().manual_seed(flip_seed)
        flip = (torch.rand(lq.shape[0], generator=g) < 0.5).view(-1, 1, 1, 1).to(device)
        lq, hq = torch.where(flip, lq.flip(3), lq), torch.where(flip, hq.flip(3), hq)
    return lq, hq
