"""Benchmark ``facedeg build``: throughput with 1 and 2 workers, where the time goes, and overheads.

Inputs: N distinct 512x512 8-bit RGB PNG photos made from the bundled faces (mirrored, shifted,
colour-scaled), one pair each, recipe ``mixed``. Reported:

- component costs per pair measured alone in this process (read+decode+crop, degrade, encode HQ,
  encode LQ, tar write) and the throughput bound they imply;
- builds: 1 worker (HQ passthrough, the default for such inputs), 1 worker re-encoding HQ, 2 workers;
  with a warm worker pool (steady state) and the cold pool start measured separately;
- a naive baseline in the same run: a loop writing a folder of PNG pairs plus JSON;
- bytes per pair.

Usage: python benchmarks/bench_build.py [--pairs 200] [--size 512] [--json results.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from facedeg import derive_seed, load_recipe
from facedeg.build import BuildConfig, build
from facedeg.build.inputs import discover
from facedeg.build.shards import ShardWriter
from facedeg.codec import encode_png, psnr
from facedeg.crop import crop_and_resize
from facedeg.files import atomic_file
from facedeg.imread import decode_image_ex
from facedeg.samples import sample_paths


def make_inputs(root: Path, n: int, size: int) -> None:
    faces = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sample_paths()]
    for i in range(n):
        img = faces[i % len(faces)]
        if (i // len(faces)) % 2:
            img = img[:, ::-1]
        shift = (i // (2 * len(faces))) % 9 - 4
        img = np.roll(img, shift * 3, axis=1)
        gain = 0.9 + 0.2 * ((i * 7) % 11) / 10
        img = np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / f"face_{i:05d}.png"), img, [cv2.IMWRITE_PNG_COMPRESSION, 3])


def components(inputs: Path, size: int, out: Path) -> dict:
    """Per-pair seconds of each stage, run alone, single-threaded, over every input."""
    cv2.setNumThreads(1)
    recipe = load_recipe("mixed")
    sources = discover(str(inputs)).sources
    warm = crop_and_resize(decode_image_ex(sources[0].read(), "warm-up").rgb, size, "center")[0]
    for seed in range(3):  # first calls pay one-time initialisation; keep it out of the per-pair costs
        encode_png(recipe.sample(seed, (size, size)).apply(warm))
    t = dict.fromkeys(("read", "degrade", "encode_hq", "encode_lq", "write"), 0.0)
    blobs = []
    for i, s in enumerate(sources):
        t0 = time.perf_counter()
        data = s.read()
        sha = hashlib.sha256(data).hexdigest()
        hq, crop = crop_and_resize(decode_image_ex(data, s.rel).rgb, size, "center")
        t1 = time.perf_counter()
        plan = recipe.sample(derive_seed(0, f"{i:08d}"), (size, size))  # the plans the build draws
        lq = plan.apply(hq)
        t2 = time.perf_counter()
        hq_png = encode_png(hq)
        t3 = time.perf_counter()
        lq_png = encode_png(lq)
        t4 = time.perf_counter()
        meta = {"plan": plan.to_json(), "sha": sha, "crop": crop, "psnr": psnr(hq, lq), "branch": plan.branch()}
        blobs.append((hq_png, lq_png, json.dumps(meta, sort_keys=True).encode()))
        t["read"] += t1 - t0
        t["degrade"] += t2 - t1
        t["encode_hq"] += t3 - t2
        t["encode_lq"] += t4 - t3
    t0 = time.perf_counter()
    with atomic_file(out / "bench.tar") as f:
        with ShardWriter(f) as w:
            for i, (a, b, c) in enumerate(blobs):
                w.add(f"{i:08d}", {"hq.png": a, "lq.png": b, "json": c})
    t["write"] = time.perf_counter() - t0
    return {k: v / len(sources) for k, v in t.items()}


def naive(inputs: Path, size: int, out: Path) -> float:
    """A plain loop writing ``{i}_hq.png``, ``{i}_lq.png`` and ``{i}.json`` into a folder; seconds."""
    cv2.setNumThreads(1)
    recipe = load_recipe("mixed")
    out.mkdir()
    t0 = time.perf_counter()
    for i, p in enumerate(sorted(inputs.glob("*.png"))):
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        hq = cv2.resize(bgr[:, :, ::-1], (size, size), interpolation=cv2.INTER_AREA)
        plan = recipe.sample(derive_seed(0, f"{i:08d}"), (size, size))
        lq = plan.apply(np.ascontiguousarray(hq))
        (out / f"{i:08d}_hq.png").write_bytes(encode_png(np.ascontiguousarray(hq)))  # same PNG profile as shards
        (out / f"{i:08d}_lq.png").write_bytes(encode_png(lq))
        (out / f"{i:08d}.json").write_text(json.dumps(plan.to_json()))
    return time.perf_counter() - t0


def timed_build(inputs: Path, out: Path, size: int, shard_size: int, **kw) -> tuple[float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    cfg = BuildConfig(recipe="mixed", out=out, input=str(inputs), size=size, shard_size=shard_size, val_fraction=0, **kw)
    t0 = time.perf_counter()
    report = build(cfg)
    return time.perf_counter() - t0, report.manifest


def _spin(_: int) -> float:
    t0 = time.perf_counter()
    sum(i * i for i in range(3_000_000))
    return time.perf_counter() - t0


def parallel_capacity() -> float:
    """How many cores this benchmark can use right now: 2.0 on 2 idle cores, ~1.0 when another
    process keeps one core busy (the same pure-Python loop, alone and in 2 processes at once)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as ex:
        list(ex.map(_spin, [0, 0]))  # start the processes
        alone = min(ex.submit(_spin, 0).result() for _ in range(2))
        t0 = time.perf_counter()
        list(ex.map(_spin, [0, 0]))
        both = time.perf_counter() - t0
    return round(2 * alone / both, 2)


def machine() -> str:
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if ln.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, nproc {os.cpu_count()}, load avg {os.getloadavg()[0]:.2f} at start, {platform.platform()}"


def scaling_ab(n: int, size: int, rounds: int) -> None:
    """Alternate 1- and 2-worker builds; print wall time and the stage CPU seconds of each (when the two
    workers' CPU seconds exceed the single worker's, another process was sharing the cores)."""
    with tempfile.TemporaryDirectory(prefix="bench_build_ab_") as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        make_inputs(tmp / "in", n, size)
        timed_build(tmp / "in", tmp / "warm", size, max(1, n // 8), workers=2)  # start the worker pool
        for _ in range(rounds):
            for workers in (1, 2):
                s, m = timed_build(tmp / "in", tmp / f"w{workers}", size, max(1, n // 8), workers=workers)
                cpu = sum(m["run"]["stage_seconds"].values())
                print(f"workers {workers}: wall {s:.2f} s, {n / s:.1f} pairs/s, stage CPU {cpu:.2f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3, help="each measurement is repeated; the best run counts")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--ab", type=int, default=0, metavar="N",
                    help="only measure 2-worker scaling: N alternating 1-worker / 2-worker builds")
    args = ap.parse_args()
    if args.ab:
        return scaling_ab(args.pairs, args.size, args.ab)
    n, size = args.pairs, args.size
    shard_size = max(1, n // 8)  # 8 shards: enough tasks to balance 2 workers
    res: dict = {"machine": machine(), "pairs": n, "size": size, "recipe": "mixed", "shard_size": shard_size,
                 "repeats": args.repeats, "cores_free": []}
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    with tempfile.TemporaryDirectory(prefix="bench_build_") as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        make_inputs(tmp / "in", n, size)
        comp: dict[str, float] = {}
        cold, _ = timed_build(tmp / "in", tmp / "b2cold", size, shard_size, workers=2)  # starts the loky pool
        for rep in range(args.repeats):
            res["cores_free"].append(parallel_capacity())
            for k, v in components(tmp / "in", size, tmp).items():
                comp[k] = min(comp.get(k, float("inf")), v)
            shutil.rmtree(tmp / "naive", ignore_errors=True)
            keep("naive", naive(tmp / "in", size, tmp / "naive"))
            s, m1 = timed_build(tmp / "in", tmp / "b1", size, shard_size, workers=1)
            keep("1w", s)
            keep("1w_reencode", timed_build(tmp / "in", tmp / "b1r", size, shard_size, workers=1, passthrough=False)[0])
            s1 = s
            s, m2 = timed_build(tmp / "in", tmp / "b2", size, shard_size, workers=2)  # pool already warm
            keep("2w", s)
            # CPU seconds the 2 workers spent in the stages vs the 1-worker build: ~1.0 when both cores were
            # ours, ~2.0 when another process held a core (then the ratio below says nothing about facedeg)
            inflation = sum(m2["run"]["stage_seconds"].values()) / sum(m1["run"]["stage_seconds"].values())
            res.setdefault("2_workers_vs_1_per_repeat", []).append(
                {"ratio": round(s1 / s, 3), "stage_cpu_inflation": round(inflation, 2)})
            if rep == 0:
                res["stage_ms_per_pair_in_build_1_worker"] = {
                    k: round(v * 1e3 / n, 2) for k, v in m1["run"]["stage_seconds"].items()
                }
        res["cores_free"].append(parallel_capacity())
        same = all((tmp / "b1" / s["name"]).read_bytes() == (tmp / "b2" / s["name"]).read_bytes() for s in m1["shards"])
        total_bytes = sum(s["bytes"] for s in m1["shards"])

    res["component_ms_per_pair"] = {k: round(v * 1e3, 2) for k, v in comp.items()}
    full = sum(comp.values())
    passthrough = full - comp["encode_hq"]
    res["bound_pairs_per_s"] = {"reencode_hq": round(1 / full, 2), "passthrough": round(1 / passthrough, 2)}
    res["pairs_per_s"] = {
        "naive_loop": round(n / best["naive"], 2),
        "1_worker_passthrough": round(n / best["1w"], 2),
        "1_worker_reencode_hq": round(n / best["1w_reencode"], 2),
        "2_workers_passthrough": round(n / best["2w"], 2),
        "2_workers_passthrough_cold_pool_first_run": round(n / cold, 2),
    }
    res["bytes_per_pair"] = round(total_bytes / n)
    res["ratios"] = {
        "1_worker_vs_bound (target >= 0.85)": round((n / best["1w"]) * passthrough, 3),
        "1_worker_reencode_vs_bound (target >= 0.85)": round((n / best["1w_reencode"]) * full, 3),
        "2_workers_vs_1 (target >= 1.7)": round(best["1w"] / best["2w"], 3),
        "2_workers_vs_1_uncontended_repeats (target >= 1.7)": max(
            [r["ratio"] for r in res["2_workers_vs_1_per_repeat"] if r["stage_cpu_inflation"] < 1.15], default=None),
        "passthrough_vs_reencode (target >= 1.5)": round(best["1w_reencode"] / best["1w"], 3),
        "1_worker_vs_naive_loop": round(best["naive"] / best["1w"], 3),
    }
    res["byte_identical_1_vs_2_workers"] = same
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
