"""``facedeg build``: plan the shards, run them on a backend, resume after a crash, write the manifest.

Plan: sorted inputs -> keys ``{index:08d}[_{variant}]`` -> a deterministic train/val split per source
image -> shards of ``shard_size`` pairs. Each shard is one task (:mod:`facedeg.build.task`) run inline,
in joblib processes or on Dask; a shard that already exists with its state file is not rebuilt.
``dataset.json`` is written last, atomically; everything but its ``run`` field is deterministic.

>>> cfg = BuildConfig(recipe="jpeg", out="/tmp/x", size=64)
>>> cfg.shard_size, cfg.crop
(1000, 'center')
"""

from __future__ import annotations

import math
import platform
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import PIL

import facedeg
from facedeg.build.backends import BACKENDS, ProgressFn, ProgressPoller, run_tasks
from facedeg.build.inputs import Inputs, discover
from facedeg.build.outdir import (
    TOP_LEVEL,
    build_lock,
    is_done,
    out_errors,
    prepare_out,
    refuse_inputs_inside,
)
from facedeg.build.shards import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    SPLITS,
    sample_key,
    shard_name,
    wids_index,
    write_json_atomic,
)
from facedeg.build.task import Job, Pair, ShardTask, state_dir
from facedeg.codec import HQ_FORMATS
from facedeg.crop import CROP_MODES, DEFAULT_MIN_FACE, AlignOptions
from facedeg.errors import BuildError
from facedeg.files import makedirs
from facedeg.imread import DEFAULT_MAX_PIXELS
from facedeg.recipe import load_recipe
from facedeg.seeds import derive_seed
from facedeg.sizes import lq_size

DEMO_PAIRS = 64  # with the bundled samples and no --variants, draw enough variants for this many pairs


@dataclass(frozen=True)
class BuildConfig:
    recipe: str
    out: str | Path
    input: str | None = None
    size: int = 512
    crop: str = "center"
    variants: int | None = None  # None: 1, or enough for DEMO_PAIRS with the bundled samples
    val_fraction: float = 0.02
    shard_size: int = 1000
    seed: int = 0
    workers: int = 1
    backend: str = "local"
    scheduler: str | None = None
    hq_format: str = "png"
    strict: bool = False
    overwrite: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    png_level: int | None = None  # None: the fast shard PNG profile (see facedeg.codec.encode_png)
    passthrough: bool = True  # store already-final 8-bit RGB PNG inputs as they are
    faces: str = "largest"  # --crop align: largest | all
    min_face: float = DEFAULT_MIN_FACE  # --crop align: eye-to-mouth pixels
    no_face: str = "skip"  # --crop align: skip | center

    def align_options(self) -> AlignOptions | None:
        return AlignOptions(self.faces, self.min_face, self.no_face) if self.crop == "align" else None

    def check(self) -> None:
        """Raise :class:`BuildError` naming the first bad option."""
        problems = [
            (self.size < 8 or self.size > 8192, f"--size must be in [8, 8192], got {self.size}"),
            (self.crop not in CROP_MODES, f"--crop must be one of {', '.join(CROP_MODES)}, got {self.crop!r}"),
            (self.variants is not None and self.variants < 1, f"--variants must be >= 1, got {self.variants}"),
            (not 0.0 <= self.val_fraction < 1.0, f"--val-fraction must be in [0, 1), got {self.val_fraction}"),
            (self.shard_size < 1, f"--shard-size must be >= 1, got {self.shard_size}"),
            (self.seed < 0, f"--seed must be >= 0, got {self.seed}"),
            (self.workers < 1, f"--workers must be >= 1, got {self.workers}"),
            (self.backend not in BACKENDS, f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}"),
            (self.scheduler is not None and self.backend != "dask", "--scheduler needs --backend dask"),
            (self.hq_format not in HQ_FORMATS, f"--hq-format must be one of {', '.join(HQ_FORMATS)}, got {self.hq_format!r}"),
            (self.max_pixels < 1, f"--max-pixels must be >= 1, got {self.max_pixels}"),
            (self.png_level is not None and not 0 <= self.png_level <= 9, f"png_level must be in [0, 9], got {self.png_level}"),
        ] + AlignOptions(self.faces, self.min_face, self.no_face).problems()
        for bad, message in problems:
            if bad:
                raise BuildError(message)


@dataclass
class BuildReport:
    out: Path
    manifest: dict
    shards_built: int
    shards_reused: int
    wall_s: float
    stats: dict = field(default_factory=dict)  # seconds per stage, summed over tasks built now

    @property
    def pairs(self) -> int:
        return sum(c["pairs"] for c in self.manifest["counts"].values())


# --------------------------------------------------------------------------- planning


def split_sources(rels: list[str], val_fraction: float, seed: int) -> list[str]:
    """Split name per source: the ``round(n * val_fraction)`` sources (at least one when the fraction
    is positive and there are two or more) with the lowest per-source hash go to ``val``."""
    n = len(rels)
    n_val = 0 if val_fraction <= 0 or n < 2 else min(n - 1, max(1, round(n * val_fraction)))
    order = sorted(range(n), key=lambda i: (derive_seed(seed, "split", rels[i]), i))
    val = set(order[:n_val])
    return ["val" if i in val else "train" for i in range(n)]


def plan_tasks(inputs: Inputs, variants: int, val_fraction: float, shard_size: int, seed: int) -> list[ShardTask]:
    """Cut the (source, variant) pairs of each split into shard tasks, in key order."""
    sources = inputs.sources
    splits = split_sources([s.rel for s in sources], val_fraction, seed)
    tasks = []
    for split in SPLITS:
        pairs = [
            (i, k)
            for i in range(len(sources))
            if splits[i] == split
            for k in range(variants)
        ]
        for n, start in enumerate(range(0, len(pairs), shard_size)):
            chunk = pairs[start : start + shard_size]
            used = sorted({i for i, _ in chunk})
            local = {i: j for j, i in enumerate(used)}
            task_pairs = tuple(
                Pair(sample_key(i, k if variants > 1 else None), local[i], k) for i, k in chunk
            )
            tasks.append(ShardTask(shard_name(split, n), split, tuple(sources[i] for i in used), task_pairs))
    return tasks


def _face_identity(config: BuildConfig) -> dict | None:
    """What decides aligned crops (None without --crop align). Loading the detector here also makes a
    missing ``faces`` extra one error before any work starts."""
    if config.crop != "align":
        return None
    from facedeg.faces import get_detector

    return {"select": config.faces, "min_face": config.min_face, "no_face": config.no_face, "border": "reflect",
            "detector": get_detector().settings()}


def library_versions() -> dict:
    """Versions of what affects pixels or bytes (codecs come from OpenCV's build information)."""
    info = {"facedeg": facedeg.__version__, "numpy": np.__version__, "opencv": cv2.__version__, "pillow": PIL.__version__}
    for line in cv2.getBuildInformation().splitlines():
        head, _, value = line.strip().partition(":")
        if head in ("JPEG", "PNG", "WEBP", "ZLib") and value.strip():
            info[f"opencv_{head.lower()}"] = value.strip()
    return info


# --------------------------------------------------------------------------- running


def build(config: BuildConfig, on_progress: ProgressFn | None = None) -> BuildReport:
    """Build (or finish) the dataset described by ``config``; see the module docstring."""
    t_start = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    config.check()
    recipe = load_recipe(config.recipe)
    inputs = discover(config.input).without_unreadable()
    if config.strict and inputs.rejected:
        first = inputs.rejected[0]
        raise BuildError(f"{first['source']}: {first['reason']} (stopped by --strict)")
    if not inputs.sources:
        first = inputs.rejected[0]
        raise BuildError(f"no usable input: all {len(inputs.rejected)} inputs were skipped (first: {first['source']}: {first['reason']})")
    variants = config.variants or (math.ceil(DEMO_PAIRS / len(inputs.sources)) if inputs.kind == "samples" else 1)
    identity = {
        "format_version": FORMAT_VERSION,
        "facedeg_version": facedeg.__version__,
        "recipe_name": recipe.name,
        "recipe_hash": recipe.hash,
        "seed": config.seed,
        "size": config.size,
        "crop": config.crop,
        "variants": variants,
        "val_fraction": config.val_fraction,
        "shard_size": config.shard_size,
        "hq_format": config.hq_format,
        "max_pixels": config.max_pixels,
        "png_level": config.png_level,
        "passthrough": config.passthrough,
        "inputs": {"kind": inputs.kind, "count": len(inputs.sources), "fingerprint": inputs.fingerprint()},
        "libraries": library_versions(),  # resuming with other codecs would mix their bytes
        "faces": _face_identity(config),
    }
    out = Path(config.out)
    refuse_inputs_inside(inputs, out)
    tasks = plan_tasks(inputs, variants, config.val_fraction, config.shard_size, config.seed)
    stamp = inputs.stamp()
    with build_lock(out):
        with out_errors(out):
            finished = prepare_out(out, identity, stamp, config.overwrite)
            if finished is not None:
                return BuildReport(out, finished, 0, len(tasks), time.perf_counter() - t_start)
            makedirs(state_dir(out) / "shards", out)
            makedirs(state_dir(out) / "progress", out)
            write_json_atomic(state_dir(out) / "config.json", {**identity, "inputs_stamp": stamp}, out)

        job = Job(
            out=str(out.absolute()), recipe=recipe.to_dict(), recipe_hash=recipe.hash, seed=config.seed,
            size=config.size, crop=config.crop, hq_format=config.hq_format, max_pixels=config.max_pixels,
            png_level=config.png_level, passthrough=config.passthrough, strict=config.strict,
            align=config.align_options(),
        )
        pending = [t for t in tasks if is_done(out, t.name) is None]
        total = sum(len(t.pairs) for t in tasks)
        already = total - sum(len(t.pairs) for t in pending)
        stats: dict = {}
        with ProgressPoller(out, pending, already, total, on_progress):
            for result in run_tasks(pending, job, config.backend, config.workers, config.scheduler):
                for k, v in result["stats"].items():
                    stats[k] = stats.get(k, 0.0) + v
                if result["facedeg_version"] != facedeg.__version__:
                    raise BuildError(f"worker runs facedeg {result['facedeg_version']}, this process {facedeg.__version__}")

        results = []
        for t in tasks:
            r = is_done(out, t.name)
            if r is None:
                raise BuildError(
                    f"shard {t.name} is missing from {out} after its task finished; with a Dask cluster, "
                    "OUT must be on a file system shared by every worker"
                )
            results.append(r)
        manifest = _manifest(identity, recipe.to_dict(), results, inputs)
        # the LQ size rule (facedeg/sizes.py): scale 1 = the HQ size; 4 = a quarter of it, floored
        manifest["scale"] = recipe.scale
        manifest["lq_size"] = list(lq_size((config.size, config.size), recipe.scale))
        with out_errors(out):
            for r in results:
                if not r["samples"]:  # every source of this shard failed: no empty shard in the dataset
                    (out / r["name"]).unlink(missing_ok=True)
        if sum(c["pairs"] for c in manifest["counts"].values()) == 0:
            first = manifest["skipped"][0] if manifest["skipped"] else {"source": "?", "reason": "?"}
            raise BuildError(
                f"no usable input: all {len(manifest['skipped'])} inputs were skipped (first: {first['source']}: {first['reason']})"
            )
        wall = time.perf_counter() - t_start
        built_pairs = sum(len(t.pairs) for t in pending)
        manifest["run"] = {
            "started_utc": started,
            "wall_s": round(wall, 3),
            "backend": config.backend,
            "workers": config.workers,
            "input": inputs.root,
            "shards_built": len(pending),
            "shards_reused": len(tasks) - len(pending),
            "pairs_per_s": round(built_pairs / wall, 2) if wall > 0 else None,
            "stage_seconds": {k: round(v, 3) for k, v in stats.items()},
            "host": platform.node(),
        }
        with out_errors(out):
            for split in SPLITS:
                if manifest["counts"][split]["shards"]:
                    write_json_atomic(out / f"{split}.wids.json", wids_index(manifest["shards"], split), out)
            write_json_atomic(out / MANIFEST, manifest, out)
        shutil.rmtree(state_dir(out), ignore_errors=True)
        return BuildReport(out, manifest, len(pending), len(tasks) - len(pending), wall, stats)


#: Identity fields the manifest shows at its top level (the rest of the identity is under "build").
def _manifest(identity: dict, recipe_tree: dict, results: list[dict], inputs: Inputs) -> dict:
    skipped: dict[str, str] = {r["source"]: r["reason"] for r in inputs.rejected}
    faces: dict[str, dict] = {}
    for r in results:
        for s in r["skipped"]:
            skipped.setdefault(s["source"], s["reason"])
        faces.update(r.get("faces", {}))
    results = [r for r in results if r["samples"]]  # a shard whose every source failed is not listed
    counts = {
        split: {
            "images": len({src for r in results if r["split"] == split for src in r["sources"]}),
            "pairs": sum(r["samples"] for r in results if r["split"] == split),
            "shards": sum(1 for r in results if r["split"] == split),
        }
        for split in SPLITS
    }
    keep = ("name", "split", "samples", "bytes", "sha256", "md5")
    return {
        "format": FORMAT_NAME,
        **{k: identity[k] for k in TOP_LEVEL},
        "build": {k: v for k, v in identity.items() if k not in (*TOP_LEVEL, "recipe_name", "recipe_hash")},
        "recipe": {"name": identity["recipe_name"], "hash": identity["recipe_hash"], "tree": recipe_tree},
        "counts": counts,
        "shards": [{k: r[k] for k in keep} for r in results],
        "skipped": [{"source": k, "reason": v} for k, v in sorted(skipped.items())],
        **({"faces": _face_counts(faces)} if identity.get("faces") else {}),
    }


def _face_counts(per_source: dict[str, dict]) -> dict:
    """Totals over the inputs: faces found, faces under --min-face, inputs with no face found."""
    return {"found": sum(c["found"] for c in per_source.values()),
            "small": sum(c["small"] for c in per_source.values()),
            "inputs_without_face": sum(1 for c in per_source.values() if c["found"] == 0)}
