"""HiFaceGAN training throughput: images/s, data-wait fraction and peak GPU memory, plus the loader alone.

It runs the real trainer (`hifacegan.train.train`) on shards that `facedeg build` writes from the bundled
faces, so the numbers include the loader, the flip on the device and the logging.

    python benchmarks/bench_train.py                       # GPU: the full grid; CPU: a reduced CPU part
    python benchmarks/bench_train.py --ngf 64 --batch 2 8 --compile off on --md BENCH.md

GPU grid (defaults): ngf 48/64 at 512, batch 1/2/4/8, bf16/fp32, compile off/on, 8 loader workers.
CPU part (no GPU, or --cpu): 128x128, ngf 16, batch 1/2, fp32, no compile, 2 workers.
Each training row: `--warmup` steps (not timed: cuDNN autotuning, compilation), then `--steps` timed.
Rows run in the order given (ngf, then compile, precision, batch); `--deadline S` starts no new row after
S seconds, so a short GPU lease still returns the rows that matter first.
`--overhead` (on by default in the CPU part) prices what watching a run adds to each step: the EMA update
of G and one log record (log.jsonl + TensorBoard), timed in-process on the real models and divided by
the step time the trainer measured in the same run (EMA on, a record every step); `--overhead-ab N` adds
N alternated pairs of whole runs with and without them (EMA off, one record per window), which only a
quiet machine can resolve at the percent level.
The perceptual loss runs with a randomly initialised VGG19 (`--vgg random`, the default: same compute as
real weights, nothing downloaded); `--vgg none` times the L1 fallback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hifacegan.board import Board  # noqa: E402
from hifacegan.config import resolve_config  # noqa: E402
from hifacegan.data import train_loader  # noqa: E402
from hifacegan.ema import EMA  # noqa: E402
from hifacegan.models import VGG19Features, build_generator  # noqa: E402
from hifacegan.train import train  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} logical cores (load average {load} at the start); {gpu}; "
            f"torch {torch.__version__}; Python {platform.python_version()}")


def random_vgg(path: Path) -> Path:
    """A torchvision-format VGG19 state dict with random weights: the perceptual loss costs what it will."""
    if not path.is_file():
        torch.manual_seed(0)
        torch.save(VGG19Features().state_dict(), path)
    return path


def build_shards(out: Path, size: int) -> Path:
    """~64 pairs from the bundled faces with the `mixed` recipe (the real builder)."""
    if (out / "dataset.json").is_file():
        return out
    cmd = [sys.executable, "-m", "cli.facedeg_cli", "build", "--recipe", "mixed", "--out", str(out), "--size",
           str(size), "--shard-size", "8", "--seed", "0", "--workers", str(min(8, os.cpu_count() or 1))]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return out


def bench_train(shards: Path, tmp: Path, *, size: int, ngf: int, batch: int, precision: str, compile: bool,
                warmup: int, steps: int, workers: int, vgg: Path | None, ema_decay: float = 0.999) -> dict:
    run = tmp / f"run_ngf{ngf}_b{batch}_{precision}{'_compiled' if compile else ''}"
    cfg = resolve_config(None, dict(data=str(shards), out=str(run), size=size, ngf=ngf, ndf=64,
                                    vgg_weights=str(vgg) if vgg else None,
                                    batch_size=batch, max_steps=warmup + steps + 1, log_every=warmup,
                                    ckpt_every=10**9, sample_every=10**9, val_every=10**9, workers=workers,
                                    precision=precision, compile=compile,
                                    ema_decay=ema_decay))
    row = {"size": size, "ngf": ngf, "batch": batch, "precision": precision, "compile": compile,
           "vgg": "random" if vgg else "off (L1)"}
    t0 = time.perf_counter()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        torch._dynamo.reset()  # each row compiles its own models
        train(cfg, progress=False, until=warmup + steps)  # stops before max_steps: no final checkpoint to write
    except torch.OutOfMemoryError:
        shutil.rmtree(run, ignore_errors=True)
        return {**row, "img_per_s": None, "data_wait": None, "peak_mem_gb": "OOM"}
    logs = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
    shutil.rmtree(run)
    timed = [r for r in logs if r.get("event") == "train"][-(steps // warmup):]  # windows after warm-up
    return {**row, "img_per_s": sum(r["img_per_s"] for r in timed) / len(timed),
            "data_wait": f"{100 * sum(r['data_wait'] for r in timed) / len(timed):.1f}%",
            "peak_mem_gb": timed[-1].get("peak_mem_gb"), "row_s": time.perf_counter() - t0}


def bench_overhead(shards: Path, tmp: Path, *, size: int, ngf: int, batch: int, workers: int, vgg: Path | None,
                   steps: int, repeats: int = 0) -> dict:
    """EMA + logging per step: the parts timed alone on the real models, as a share of the step time the
    trainer measured in the same run; and whole runs with and without them (alternated)."""
    kw = dict(size=size, ngf=ngf, batch=batch, precision="fp32", compile=False, workers=workers, vgg=vgg)
    # the parts first, while no loader worker of a finished run is still around
    torch.manual_seed(0)
    G = build_generator("hifacegan", ngf, size)
    ema = EMA(G, 0.999)
    n = 20
    t0 = time.perf_counter()
    for i in range(n):
        ema.update(G, 1000 + i)
    ema_ms = 1000 * (time.perf_counter() - t0) / n
    record = {"event": "train", "step": 0, "g_gan": 0.5, "g_feat": 1.2, "g_vgg": 3.4, "d_real": 0.25,
              "d_fake": 0.25, "lr_g": 1e-4, "lr_d": 4e-4, "img_per_s": 3.5, "data_wait": 0.01, "skipped": 0,
              "time": time.time()}
    board = Board(tmp / "board", 0, {}, None)
    n = 200
    with open(tmp / "board" / "log.jsonl", "a") as log_file:
        t0 = time.perf_counter()
        for i in range(n):  # what the trainer does per logged step
            line = {**record, "step": i + 1}
            log_file.write(json.dumps(line) + "\n")
            log_file.flush()
            board.log(line)
        board.close()  # the writer's queue drained: all n records are on disk
        log_ms = 1000 * (time.perf_counter() - t0) / n
    shutil.rmtree(tmp / "board")
    on = [bench_train(shards, tmp, warmup=1, steps=steps, ema_decay=0.999, **kw)["img_per_s"]]
    off = []
    for _ in range(repeats):  # "on": EMA and a log record every step; "off": neither (one record per window)
        off.append(bench_train(shards, tmp, warmup=steps, steps=steps, ema_decay=0.0, **kw)["img_per_s"])
        on.append(bench_train(shards, tmp, warmup=1, steps=steps, ema_decay=0.999, **kw)["img_per_s"])
    step_ms = 1000 * batch / (sum(on) / len(on))
    return {"size": size, "ngf": ngf, "batch": batch, "G_params_M": sum(p.numel() for p in G.parameters()) / 1e6,
            "step_ms": step_ms, "ema_ms": ema_ms, "log_ms": log_ms,
            "share": f"{100 * (ema_ms + log_ms) / step_ms:.2f}%",
            "img_per_s_on": sum(on) / len(on), "img_per_s_off": sum(off) / len(off) if off else None}


def bench_loader(shards: Path, *, size: int, workers: int, batch: int = 8, batches: int = 24) -> float:
    """Samples/s of the training loader alone (after its first batch: worker start-up not counted)."""
    loader = iter(train_loader(str(shards), size, batch, workers=workers, seed=0))  # endless
    next(loader)
    t0 = time.perf_counter()
    n = sum(len(next(loader)["keys"]) for _ in range(batches))
    return n / (time.perf_counter() - t0)


def table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, bool):
            return "on" if v else "off"
        return f"{v:.2f}" if isinstance(v, float) else "—" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="run the reduced CPU part even when a GPU is present")
    ap.add_argument("--size", type=int)
    ap.add_argument("--ngf", type=int, nargs="+")
    ap.add_argument("--batch", type=int, nargs="+")
    ap.add_argument("--precision", nargs="+", choices=["bf16", "fp32"])
    ap.add_argument("--compile", nargs="+", choices=["off", "on"])
    ap.add_argument("--workers", type=int)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--steps", type=int, help="timed steps (a multiple of --warmup)")
    ap.add_argument("--loader-workers", type=int, nargs="*", help="none: skip the loader-alone part")
    ap.add_argument("--loader-size", type=int, nargs="+")
    ap.add_argument("--vgg", choices=["random", "none"], default="random",
                    help="perceptual loss with a random-init VGG19 (same cost as real weights) or the L1 fallback")
    ap.add_argument("--shards", type=Path, help="build the shards here (or reuse them) instead of a temp folder")
    ap.add_argument("--deadline", type=float, default=float("inf"), help="start no new row after this many seconds")
    ap.add_argument("--overhead", choices=["on", "off"], help="EMA + logging cost per step (default: on in the CPU part)")
    ap.add_argument("--overhead-steps", type=int, default=6, help="timed steps per overhead run")
    ap.add_argument("--rows", choices=["on", "off"], default="on", help="off: skip the throughput rows")
    ap.add_argument("--overhead-ab", type=int, default=0, help="pairs of whole runs with/without EMA + logging")
    ap.add_argument("--md", type=Path, help="also write the results as Markdown here")
    args = ap.parse_args()

    gpu = torch.cuda.is_available() and not args.cpu
    d = (dict(size=512, ngf=[48, 64], batch=[1, 2, 4, 8], precision=["bf16", "fp32"], compile=["off", "on"],
              workers=8, warmup=10, steps=20, loader_workers=[2, 8], loader_size=[512]) if gpu else
         dict(size=128, ngf=[16], batch=[1, 2], precision=["fp32"], compile=["off"], workers=2, warmup=3,
              steps=9, loader_workers=[0, 2], loader_size=[128, 512]))
    opt = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in d.items()}
    if opt["steps"] % opt["warmup"]:
        ap.error("--steps must be a multiple of --warmup")
    where = machine()
    print(f"machine: {where}", flush=True)
    rows, loader_rows, skipped, overhead = [], [], [], []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        shard_root = args.shards or tmp
        vgg = random_vgg(tmp / "vgg19_random.pth") if args.vgg == "random" else None
        for size in opt["loader_size"] if opt["loader_workers"] else []:
            shards = build_shards(shard_root / f"shards{size}", size)
            for w in opt["loader_workers"]:
                loader_rows.append({"size": size, "workers": w,
                                    "samples_per_s": bench_loader(shards, size=size, workers=w)})
                print(loader_rows[-1], flush=True)
        shards = build_shards(shard_root / f"shards{opt['size']}", opt["size"])
        if (args.overhead or ("off" if gpu else "on")) == "on":
            overhead.append(bench_overhead(shards, tmp, size=opt["size"], ngf=opt["ngf"][0], batch=opt["batch"][0],
                                           workers=opt["workers"], vgg=vgg, steps=args.overhead_steps,
                                           repeats=args.overhead_ab))
            print(overhead[-1], flush=True)
        for ngf in opt["ngf"] if args.rows == "on" else []:
            for comp in opt["compile"]:
                for prec in opt["precision"]:
                    for batch in opt["batch"]:
                        if time.perf_counter() - start > args.deadline:
                            skipped.append(f"ngf {ngf} batch {batch} {prec} compile {comp}")
                            continue
                        rows.append(bench_train(shards, tmp, size=opt["size"], ngf=ngf, batch=batch, precision=prec,
                                                compile=comp == "on", warmup=opt["warmup"], steps=opt["steps"],
                                                workers=opt["workers"], vgg=vgg))
                        print(rows[-1], flush=True)
    device = torch.cuda.get_device_name(0) if gpu else "CPU (reduced part: GPU numbers need a GPU)"
    md = (f"### Training throughput — {device}\n\nMachine: {where}\n\n"
          f"{opt['warmup']} warm-up + {opt['steps']} timed steps per row, {opt['workers']} loader workers, "
          f"shards from `facedeg build --recipe mixed` at {opt['size']}px.\n\n"
          + table(rows, ["size", "ngf", "batch", "precision", "compile", "vgg", "img_per_s", "data_wait",
                         "peak_mem_gb", "row_s"])
          + ("\n\n#### EMA + logging per step\n\n" + table(overhead, ["size", "ngf", "batch", "G_params_M", "step_ms",
                                                                     "ema_ms", "log_ms", "share", "img_per_s_on",
                                                                     "img_per_s_off"])
             if overhead else "")
          + (f"\n\nNot run (past --deadline): {'; '.join(skipped)}" if skipped else "")
          + ("\n\n#### Loader alone (batches of 8)\n\n" + table(loader_rows, ["size", "workers", "samples_per_s"])
             if loader_rows else "") + "\n")
    print("\n" + md)
    if args.md:
        args.md.write_text(md)


if __name__ == "__main__":
    main()
