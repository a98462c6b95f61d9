"""Streaming training data from facedeg shards (webdataset tar files) or image folders.

Each loader worker runs a chain of small stages (`hifacegan/stages.py`), each an iterator -> iterator
function whose state travels in the samples (webdataset's pipeline style); `PairStream` composes them:

    shard_rounds -> read_shards | read_files -> shuffle_rounds -> number_rounds -> skip_to
                 -> load_pairs -> batches

- **One endless stream per run.** Round r of a worker is its shard list in an order seeded by
  (seed, rank, worker, r); a shuffle buffer that drains at each round's end mixes the raw samples, so
  every sample comes once per round and no rank ever runs dry (every rank yields a batch per step,
  so DDP never hangs). The order depends on the seed, the data, the batch size and the process layout
  (world size, `--workers`), never on checkpoint, validation or sample cadence.
- **Cursors.** Every batch carries its worker's cursor `(round, next index in the round, samples
  skipped so far)`. A loader started from saved cursors opens no earlier round and drops the raw
  samples before the cursor without decoding them, so a resumed run continues the very same stream.
  DataLoader hands out batch j from worker j % workers; a loader started at step s therefore rotates
  its workers so that physical worker p plays worker (p + s) % workers.
- **Splitting.** Rank r takes shards r::world and each worker every n-th of those, when there are at
  least as many shards as (rank, worker) pairs. With fewer shards, every pair reads all of them but
  keeps a disjoint slice of the samples (sample i of shard s when (s + i) % pairs == pair). On-the-fly
  mode (`degrade`) shares the shards instead: each worker makes its own LQ from a shared HQ.
- **Members.** Only the members in facedeg's shard-member table (`facedeg.build.shards.MEMBERS`) are
  read; anything else (pickles included) is never even loaded. Batches hold uint8 NHWC tensors; float
  conversion and the flip happen on the device in `to_device`.
- **Pair sizes.** An LQ smaller than its HQ (SR-shaped shards) is brought to the HQ size with bicubic
  (`match_pair`, said once); a pair whose sizes no scale explains is skipped and counted like a
  corrupt sample.
- **Errors.** A corrupt sample, or the rest of a broken shard, is skipped with a warning naming shard
  and key, and counted in stream order (`skipped` in each batch: the worker's running total). A whole
  round without one usable sample is a DataError.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import braceexpand
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

import facedeg
from facedeg.build.heap import keep_heap
from facedeg.build.shards import LQ_MEMBER, MEMBERS, find_member
from facedeg.codec import decode
from facedeg.crop import crop_and_resize
from facedeg.files import file_problem
from facedeg.imread import IMAGE_EXTENSIONS, read_image
from facedeg.recipe import Recipe
from facedeg.sizes import pair_scale, to_hq_size
from hifacegan.errors import DataError
from hifacegan.stages import (
    START,
    Cursor,
    assign_shards,
    batches,
    load_pairs,
    number_rounds,
    read_files,
    read_shards,
    shard_rounds,
    shuffle_rounds,
    skip_to,
)

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


# ----------------------------------------------------------------------------- one sample

_SAID: set[str] = set()


def match_pair(hq: np.ndarray, lq: np.ndarray) -> np.ndarray:
    """The LQ at its HQ's size, by the one rule for pairs of different sizes (``facedeg.sizes``).

    An LQ smaller than its HQ with the same aspect (an SR-shaped build: ``keep_size: false``) is
    brought up with bicubic, and the loader says so once per process; then both images go through
    the same resize to the model size, so they stay aligned. Any other pair (an LQ larger than its
    HQ, or of another aspect) is mismatched: ValueError, so the sample is skipped and counted.
    """
    if lq.shape[:2] == hq.shape[:2]:
        return lq
    if pair_scale(hq.shape, lq.shape) is None:
        raise ValueError(f"mismatched pair: LQ {lq.shape[1]}x{lq.shape[0]} cannot be brought to its HQ "
                         f"{hq.shape[1]}x{hq.shape[0]} (it must be no larger, with the same aspect)")
    note = f"{lq.shape[1]}x{lq.shape[0]}->{hq.shape[1]}x{hq.shape[0]}"
    if note not in _SAID:
        _SAID.add(note)
        log.warning("LQ %s is smaller than its HQ %s: brought to the HQ size with bicubic interpolation",
                    f"{lq.shape[1]}x{lq.shape[0]}", f"{hq.shape[1]}x{hq.shape[0]}")
    return to_hq_size(lq, hq.shape)


def fit(img: np.ndarray, size: int) -> np.ndarray:
    """An image at the model size: center crop and resize when it is not size x size already
    (e.g. 512 shards for a quick 256 run)."""
    return img if img.shape[:2] == (size, size) else crop_and_resize(img, size)[0]


def load_pair(raw: dict[str, Any], *, size: int, recipe: Recipe | None, lq_seed: Callable[[dict[str, Any]], int],
              paired: bool) -> dict[str, Any]:
    """One raw sample -> {"key", "url", "round", "index", "lq", "hq"} (uint8 HxWx3 at `size`).

    HQ: a shard's hq.* member, or an image file (robust read, center crop, resize). LQ: the shard's
    lq.png, or made from HQ by `recipe` with seed `lq_seed(raw)`. `paired` (validation, eval): a
    missing lq.png is a DataError for the whole run, not a skipped sample."""
    key, url = raw["__key__"], raw["__url__"]
    if "file" in raw:
        hq = crop_and_resize(read_image(raw["file"]), size)[0]
    else:
        name = find_member(raw, "hq")
        if name is None:
            raise ValueError(f"no {'/'.join(MEMBERS['hq'])} member")
        stored_hq = decode(raw[name], name)
        hq = fit(stored_hq, size)
    if recipe is not None:
        hq, lq = recipe.sample(lq_seed(raw), hq.shape[:2]).apply_pair(hq)  # HQ-side steps change the target
        lq = match_pair(hq, lq)
    elif LQ_MEMBER in raw:
        lq = fit(match_pair(stored_hq, decode(raw[LQ_MEMBER], LQ_MEMBER)), size)
    elif paired:  # val/eval data is a pair set by definition: stop, don't skip every sample
        raise DataError(f"{url}: sample {key} has no {LQ_MEMBER}: validation and eval need paired shards "
                        "(from facedeg build); HQ-only data needs on-the-fly degradation "
                        "(hifacegan train --degrade RECIPE)")
    else:
        raise ValueError(f"no {LQ_MEMBER} member (HQ-only data needs --degrade RECIPE)")
    return {"key": key, "url": url, "round": raw["round"], "index": raw["index"], "lq": lq, "hq": hq}


def train_lq_seed(raw: dict[str, Any], *, seed: int, rank: int, worker: int) -> int:
    """On-the-fly LQ seed of a training sample: its place in the stream, so fresh each round."""
    return facedeg.derive_seed(seed, "degrade", rank, worker, raw["round"], raw["index"])


def val_lq_seed(raw: dict[str, Any], *, seed: int) -> int:
    """On-the-fly LQ seed of a validation sample: its key, so the same throughout training."""
    return facedeg.derive_seed(seed, "val", raw["__key__"])


def no_usable_samples(skipped: int, *, shards: list[str], stride: int) -> DataError:
    note = f"; this loader keeps 1 in {stride} samples: fewer samples than ranks x workers?" if stride > 1 else ""
    return DataError(f"no usable samples in {len(shards)} shard(s) starting with {shards[0]} "
                     f"({skipped} skipped as corrupt{note})")


# ----------------------------------------------------------------------------- the stream


class PairStream(IterableDataset):
    """Batches of uint8 (lq, hq) pairs from shards or an image folder, as described in the module doc.

    `degrade`: a facedeg recipe name/path; then LQ is made from HQ in the worker with seed
    derive_seed(seed, "degrade", rank, worker, round, index) (train) or derive_seed(seed, "val", key)
    (val). `train=False` gives one ordered pass over all sources with no node split (for validation).
    `cursors` (worker -> cursor) and `shift` (the step the loader starts at) resume a stream.
    Nothing is stored on the instance while iterating.
    """

    def __init__(self, sources: list[str], size: int, batch_size: int, *, seed: int = 0, rank: int = 0,
                 world: int = 1, degrade: str | None = None, train: bool = True, shuffle_buffer: int = 256,
                 folder: bool = False, limit: int | None = None, cursors: dict[int, Cursor] | None = None,
                 shift: int = 0) -> None:
        super().__init__()
        if not sources:
            raise DataError("empty shard set")
        if folder and not degrade:
            raise DataError("a folder of images has no LQ: pass --degrade RECIPE to degrade on the fly")
        self.sources, self.size, self.batch_size = list(sources), size, batch_size
        self.seed, self.rank, self.world = seed, rank, world
        self.degrade, self.train, self.folder = degrade, train, folder
        self.shuffle_buffer, self.limit = shuffle_buffer, limit
        self.cursors = {int(w): tuple(map(int, c)) for w, c in (cursors or {}).items()}
        self.shift = shift

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        physical, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None:
            cv2.setNumThreads(1)
            keep_heap()  # loader workers decode (and degrade) big images: keep freed buffers mapped
        return self.pipeline((physical + self.shift) % workers, workers)

    def pipeline(self, worker: int, workers: int) -> Iterator[dict[str, Any]]:
        """The stages of (logical) `worker` of `workers`."""
        recipe = facedeg.load_recipe(self.degrade) if self.degrade else None
        seed, rank = self.seed, self.rank
        if self.train:
            mine, stride, offset = assign_shards(self.sources, rank, self.world, worker, workers,
                                                 share=bool(self.degrade))
            cursor = self.cursors.get(worker, START)
            sources = shard_rounds(self.sources, mine, stride, offset, seed=seed, rank=rank, worker=worker,
                                   first_round=cursor[0])
            lq_seed = partial(train_lq_seed, seed=seed, rank=rank, worker=worker)
        else:
            mine, stride, cursor = list(range(len(self.sources))), 1, START
            sources = ({"url": u, "round": 0, "keep": (1, 0)} for u in self.sources)
            lq_seed = partial(val_lq_seed, seed=seed)
        no_samples = partial(no_usable_samples, shards=[self.sources[i] for i in mine], stride=stride)
        raws = read_files(sources) if self.folder else read_shards(sources, no_samples)
        if self.train and self.shuffle_buffer > 1:
            raws = shuffle_rounds(raws, self.shuffle_buffer,
                                  lambda r: facedeg.derive_seed(seed, "shuffle", rank, worker, r))
        raws = skip_to(number_rounds(raws), cursor)
        load = partial(load_pair, size=self.size, recipe=recipe, lq_seed=lq_seed, paired=not self.train)
        pairs = load_pairs(raws, load, no_samples, skipped=cursor[2])
        return batches(pairs, self.batch_size, worker, limit=self.limit, keep_partial=not self.train)


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


def train_loader(spec: str, size: int, batch_size: int, *, workers: int, seed: int, rank: int = 0,
                 world: int = 1, degrade: str | None = None, shuffle_buffer: int = 256, pin_memory: bool = False,
                 step: int = 0, cursors: dict[int, Cursor] | None = None) -> DataLoader:
    """An endless loader: a batch per `next()` on every rank, forever. `step` and `cursors` (from
    `resume_cursors`) continue a stream that was stopped at `step`."""
    stream = make_stream(spec, size, batch_size, seed=seed, rank=rank, world=world, degrade=degrade,
                         shuffle_buffer=shuffle_buffer, cursors=cursors, shift=step % max(1, workers))
    return DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                      prefetch_factor=4 if workers else None,
                      multiprocessing_context=_worker_context() if workers else None)


@contextmanager
def open_train_stream(spec: str, size: int, batch_size: int, **kw: Any) -> Iterator[Iterator[dict[str, Any]]]:
    """`train_loader`'s batches; its workers stop when the block ends (not whenever the iterator is
    garbage-collected)."""
    batches_iter = iter(train_loader(spec, size, batch_size, **kw))
    try:
        yield batches_iter
    finally:
        shutdown = getattr(batches_iter, "_shutdown_workers", None)  # multi-process iterators only
        if shutdown is not None:
            shutdown()


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


# ----------------------------------------------------------------------------- stream state in checkpoints


def stream_state(cursors: dict[int, Cursor], world: int, workers: int) -> dict[str, Any]:
    """What a checkpoint keeps of one rank's stream (plain types: loads with weights_only=True)."""
    return {"world": world, "workers": max(1, workers), "cursors": {int(w): [int(x) for x in c] for w, c in cursors.items()}}


def skipped_total(cursors: dict[int, Cursor]) -> int:
    return sum(c[2] for c in cursors.values())


def resume_cursors(saved: list[dict[str, Any]] | None, rank: int, world: int,
                   workers: int) -> tuple[dict[int, Cursor], str | None]:
    """This rank's cursors from a checkpoint's per-rank stream states, and a note when the stream cannot
    continue exactly (an older checkpoint without them, or another world size or --workers): then every
    worker starts a fresh round after the newest saved one, keeping the skipped count."""
    if not saved:
        return {}, "data stream: the checkpoint holds no stream position (older version); starting it anew"
    mine = saved[rank] if rank < len(saved) else {}
    if len(saved) == world and mine.get("world") == world and mine.get("workers") == max(1, workers):
        return {int(w): (int(c[0]), int(c[1]), int(c[2])) for w, c in mine["cursors"].items()}, None
    fresh = 1 + max((c[0] for s in saved for c in s.get("cursors", {}).values()), default=-1)
    base = sum(c[2] for c in mine.get("cursors", {}).values())
    was = f"{saved[0].get('world')} process(es) x {saved[0].get('workers')} worker(s)"
    cursors = {w: (fresh, 0, base if w == 0 else 0) for w in range(max(1, workers))}
    return cursors, (f"data stream: the checkpoint was written by {was}, now {world} x "
                                   f"{max(1, workers)}: every worker starts at round {fresh}")


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
