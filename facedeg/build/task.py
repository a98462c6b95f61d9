"""One shard task: read its sources, crop/resize, degrade each variant, write the tar atomically.

This is the unit of work that joblib processes or Dask workers run. It depends only on its
arguments (plain picklable data) and writes only ``OUT/{name}`` and the task's state file, so the
same task gives the same bytes on any worker, in any order.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

import facedeg
from facedeg.build.heap import keep_heap
from facedeg.build.inputs import Source
from facedeg.build.shards import JSON_MEMBER, LQ_MEMBER, SRC_MEMBER, ShardWriter, write_json_atomic
from facedeg.codec import decode, encode, encode_png, psnr
from facedeg.crop import AlignOptions, NoFaceError, align_faces, crop_and_resize
from facedeg.errors import BuildError, ImageError
from facedeg.files import atomic_file
from facedeg.imread import decode_image_ex
from facedeg.recipe import Recipe
from facedeg.seeds import derive_seed
from facedeg.sizes import to_hq_size

STATE_DIR = ".facedeg-build"
STAGES = ("read", "align", "degrade", "encode_hq", "encode_lq", "write")  # align: --crop align only


@dataclass(frozen=True)
class Job:
    """Settings shared by every task of a build (everything that decides the bytes)."""

    out: str
    recipe: dict
    recipe_hash: str
    seed: int
    size: int
    crop: str
    hq_format: str
    max_pixels: int
    png_level: int | None
    passthrough: bool
    strict: bool
    align: AlignOptions | None = None  # --crop align: how faces are picked


@dataclass(frozen=True)
class Pair:
    key: str
    source: int  # index into ShardTask.sources
    variant: int


@dataclass(frozen=True)
class ShardTask:
    name: str
    split: str
    sources: tuple[Source, ...]
    pairs: tuple[Pair, ...] = field(default_factory=tuple)


def state_dir(out: str | Path) -> Path:
    return Path(out) / STATE_DIR


def result_path(out: str | Path, name: str) -> Path:
    return state_dir(out) / "shards" / (name + ".json")


def progress_path(out: str | Path, name: str) -> Path:
    return state_dir(out) / "progress" / name


_RECIPES: dict[str, Recipe] = {}


def _recipe(job: Job) -> Recipe:
    recipe = _RECIPES.get(job.recipe_hash)
    if recipe is None:
        recipe = Recipe.from_dict(job.recipe, source="<build manifest>")
        if recipe.hash != job.recipe_hash:
            raise BuildError(f"recipe rebuilt on the worker has hash {recipe.hash[:12]}, expected {job.recipe_hash[:12]}")
        _RECIPES[job.recipe_hash] = recipe
    return recipe


class _Progress:
    """Tells the main process how many pairs this task has handled, via a small file in the state dir."""

    def __init__(self, path: Path, root: Path) -> None:
        self.path, self.root, self.done, self.last = path, root, 0, 0.0

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last > 0.2:
            self.last = now
            try:
                with atomic_file(self.path, self.root, durable=False) as f:
                    f.write(str(self.done).encode())
            except OSError:
                pass  # progress is cosmetic


def run_shard(task: ShardTask, job: Job) -> dict:
    """Build one shard; return its result (also stored as the task's state file) plus stage timings."""
    keep_heap()  # fewer page faults per image buffer: see facedeg/heap.py
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # one process = one core; also keeps results independent of thread count
    try:
        return _run(task, job)
    except OSError as e:  # reading sources maps to ImageError, so this is writing into OUT
        where = e.filename or Path(job.out) / task.name
        raise BuildError(
            f"cannot write {where}: {e.strerror or e} (with Dask, OUT must be on a file system every worker shares)"
        ) from None
    finally:
        cv2.setNumThreads(threads)


def _run(task: ShardTask, job: Job) -> dict:
    recipe = _recipe(job)
    out = Path(job.out)
    stats = dict.fromkeys(STAGES, 0.0)
    progress = _Progress(progress_path(out, task.name), out)
    skipped: dict[str, str] = {}
    faces: dict[str, dict] = {}  # source -> {"found", "small"} with --crop align
    cache: tuple[int, list[dict]] | None = None
    used_sources: set[str] = set()
    with atomic_file(out / task.name, out) as f:
        writer = ShardWriter(f)
        for pair in task.pairs:
            src = task.sources[pair.source]
            if src.rel in skipped:
                progress.step()
                continue
            if cache is None or cache[0] != pair.source:
                try:
                    cache = (pair.source, _prepare(src, job, stats, faces))
                except NoFaceError as e:  # a readable photo without a usable face: skipped even with --strict
                    skipped[src.rel] = str(e)
                    faces[src.rel] = e.counts
                    progress.step()
                    continue
                except ImageError as e:
                    if job.strict:
                        raise BuildError(f"{e} (stopped by --strict)") from None
                    skipped[src.rel] = str(e).removeprefix(f"{src.rel}: ")
                    progress.step()
                    continue
            used_sources.add(src.rel)
            for j, hq in enumerate(cache[1]):
                key = pair.key if len(cache[1]) == 1 and (job.align is None or job.align.select == "largest") \
                    else face_key(pair.key, j)
                members = _pair_members(pair, key, task.split, src, hq, recipe, job, stats)
                t0 = time.perf_counter()
                writer.add(key, members)
                stats["write"] += time.perf_counter() - t0
            progress.step()
        t0 = time.perf_counter()
        writer.close()
        result = {
            "name": task.name,
            "split": task.split,
            "samples": writer.count,
            "sources": sorted(used_sources),
            "bytes": writer.size,
            "sha256": writer.sha256,
            "md5": writer.md5,
            "skipped": [{"source": k, "reason": v} for k, v in sorted(skipped.items())],
            **({"faces": dict(sorted(faces.items()))} if job.align is not None else {}),
            "facedeg_version": facedeg.__version__,
        }
        # the state file goes first: once the tar has its final name, the shard is done
        write_json_atomic(result_path(out, task.name), result, out)
    stats["write"] += time.perf_counter() - t0  # includes fsync and rename
    return {**result, "stats": stats}


def face_key(key: str, face: int) -> str:
    """``00000012_3`` -> ``00000012_f1_3`` for face 1 of a ``--faces all`` build (the variant stays last)."""
    index, _, variant = key.partition("_")
    return f"{index}_f{face}" + (f"_{variant}" if variant else "")


def _prepare(src: Source, job: Job, stats: dict, faces: dict) -> list[dict]:
    """Read, decode, crop/resize and encode the HQ(s) of one source (shared by its variants): one per
    used face with ``--crop align``, else one."""
    t_read = time.perf_counter()
    data = src.read()
    sha = hashlib.sha256(data).hexdigest()
    decoded = decode_image_ex(data, src.rel, job.max_pixels)
    h, w = decoded.rgb.shape[:2]
    t0 = time.perf_counter()
    stats["read"] += t0 - t_read
    if job.align is not None:
        crops, counts = align_faces(decoded.rgb, job.size, job.align)
        faces[src.rel] = counts
        stats["align"] += time.perf_counter() - t0
        return [_encode_hq(hq, crop, data, decoded.plain_png, False, [w, h], sha, src, job, stats) for hq, crop in crops]
    hq, crop = crop_and_resize(decoded.rgb, job.size, job.crop)
    untouched = hq is decoded.rgb or (hq.shape == decoded.rgb.shape and crop["box"] == [0, 0, w, h])
    stats["read"] += time.perf_counter() - t0
    return [_encode_hq(hq, crop, data, decoded.plain_png, untouched, [w, h], sha, src, job, stats)]


def _encode_hq(hq: np.ndarray, crop: dict, data: bytes, plain_png: bool, untouched: bool, source_size: list[int],
               sha: str, src: Source, job: Job, stats: dict) -> dict:
    t0 = time.perf_counter()
    passthrough = job.passthrough and job.hq_format == "png" and plain_png and untouched
    if passthrough:
        hq_bytes = data
    else:
        hq_bytes = encode(hq, job.hq_format, job.png_level)
        if job.hq_format != "png":  # lossy HQ: degrade what readers will decode, so replay holds
            hq = decode(hq_bytes, src.rel)
    stats["encode_hq"] += time.perf_counter() - t0
    return {
        "rgb": hq,
        "bytes": hq_bytes,
        "passthrough": passthrough,
        "crop": crop,
        "source_size": source_size,
        "sha256": sha,
    }


def _pair_members(pair: Pair, key: str, split: str, src: Source, hq: dict, recipe: Recipe, job: Job,
                  stats: dict) -> dict:
    t0 = time.perf_counter()
    seed = derive_seed(job.seed, key)
    plan = recipe.sample(seed, (job.size, job.size))
    members: dict[str, bytes] = {}
    hq_rgb, hq_bytes, passthrough = hq["rgb"], hq["bytes"], hq["passthrough"]
    if not plan.touches_hq:
        lq = plan.apply(hq_rgb)
    else:  # the stored HQ is the HQ after its steps: the target the model should produce
        hq_rgb, lq = plan.apply_pair(hq["rgb"])
        t_enc = time.perf_counter()
        hq_bytes, passthrough = encode(hq_rgb, job.hq_format, job.png_level), False
        if job.hq_format != "png":  # lossy HQ: continue from what readers decode, so replay holds
            hq_rgb = decode(hq_bytes, src.rel)
            if plan.replays_from_hq:
                lq = plan.lq_from_hq(hq_rgb)
        if not plan.replays_from_hq:
            members[SRC_MEMBER] = encode_png(hq["rgb"], job.png_level)
        stats["encode_hq"] += time.perf_counter() - t_enc
    t1 = time.perf_counter()
    lq_bytes = encode_png(lq, job.png_level)
    stats["degrade"] += t1 - t0
    stats["encode_lq"] += time.perf_counter() - t1
    meta = {
        "key": key,
        "split": split,
        "variant": pair.variant,
        "seed": seed,
        "plan": plan.to_json(),
        "summary": plan.summary(),
        "branch": plan.branch(),
        "psnr": psnr(hq_rgb, to_hq_size(lq, hq_rgb.shape)),  # a smaller LQ: bicubic up first
        "source": src.rel,
        "source_sha256": hq["sha256"],
        "source_size": hq["source_size"],
        "crop": hq["crop"],
        "size": job.size,
        "lq_size": [int(lq.shape[0]), int(lq.shape[1])],
        "hq": {"format": job.hq_format, "passthrough": passthrough},
        "recipe_hash": job.recipe_hash,
    }
    text = json.dumps(meta, sort_keys=True, ensure_ascii=True, allow_nan=False)
    return {f"hq.{job.hq_format}": hq_bytes, LQ_MEMBER: lq_bytes, JSON_MEMBER: text.encode("utf-8"), **members}
