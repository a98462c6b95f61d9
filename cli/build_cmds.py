"""``facedeg build``, ``verify``, ``inspect`` and ``replay``: thin wrappers over facedeg.build / facedeg.build.verify."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from cli.common import user_errors
from facedeg.build import BuildConfig, BuildReport, build
from facedeg.build.verify import inspect as inspect_build
from facedeg.build.verify import replay as replay_key
from facedeg.build.verify import verify as verify_build
from facedeg.crop import DEFAULT_MIN_FACE
from facedeg.imread import DEFAULT_MAX_PIXELS

EXIT_PROBLEMS = 1


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- pairs/s" if not speed else f"{speed:.1f} pairs/s", style="cyan")


class _CountColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        total = "?" if task.total is None else f"{task.total:.0f}"
        return Text(f"{task.completed:.0f}/{total} pairs")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _summary(report: BuildReport) -> str:
    m = report.manifest
    b, c = m["build"], m["counts"]
    total_bytes = sum(s["bytes"] for s in m["shards"])
    splits = ", ".join(
        f"{s} {_n(c[s]['pairs'], 'pair')} from {_n(c[s]['images'], 'image')} in {_n(c[s]['shards'], 'shard')}"
        for s in c
        if c[s]["shards"]
    )
    if report.shards_built == 0:
        head = f"{report.out}: already complete, nothing to do ({report.pairs} pairs)"
    else:
        reused = f", {report.shards_reused} reused from an earlier run" if report.shards_reused else ""
        head = (
            f"built {report.out} in {report.wall_s:.1f} s: {report.pairs} pairs ({splits}), "
            f"{_mb(total_bytes)}, {report.shards_built} shards written{reused}"
        )
    lines = [
        head,
        f"recipe {m['recipe']['name']} ({m['recipe']['hash'][:12]}), seed {m['seed']}, {m['size']}x{m['size']}{_lq(m)}, "
        f"crop {b['crop']}, {_n(b['variants'], 'variant')} per image, "
        f"{total_bytes / max(report.pairs, 1) / 1e3:.0f} kB per pair",
    ]
    if report.shards_built:
        lines[-1] += f", {m['run']['pairs_per_s']} pairs/s"
    if "faces" in m:
        f = m["faces"]
        lines.append(f"faces: {f['found']} found, {f['small']} under --min-face {b['faces']['min_face']:g} px, "
                     f"{_n(f['inputs_without_face'], 'input')} without a face ({b['faces']['detector']['name']})")
    if m["skipped"]:
        lines.append(f"skipped {_n(len(m['skipped']), 'input')}:")
        lines += [f"  {s['source']}: {s['reason']}" for s in m["skipped"][:20]]
        if len(m["skipped"]) > 20:
            lines.append(f"  ... and {len(m['skipped']) - 20} more (see {report.out}/dataset.json)")
    return "\n".join(lines)


def build_cmd(
    recipe: Annotated[str, typer.Option("--recipe", "-r", help="Shipped recipe name (see `facedeg recipes`) or a YAML path.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for shards, dataset.json and the wids indexes.")],
    input: Annotated[str | None, typer.Option("--input", "-i", help="Folder (searched recursively), list file (one path per line), or tar shards like 'hq-{000000..000009}.tar'. Default: the bundled sample faces.")] = None,
    size: Annotated[int, typer.Option(help="Output side length in pixels (square).")] = 512,
    crop: Annotated[str, typer.Option(help="center: middle square; face: largest face found by OpenCV's Haar cascade, with margin (center if none); none: resize only; align: detect faces with 5 landmarks and align them to the FFHQ template (needs the 'faces' extra).")] = "center",
    faces: Annotated[str, typer.Option(help="With --crop align: largest (one sample per input) or all (one per face, keys NNNNNNNN_fJ).")] = "largest",
    min_face: Annotated[float, typer.Option(help="With --crop align: skip faces whose eye-to-mouth distance is below this many pixels (counted in the summary).")] = DEFAULT_MIN_FACE,
    no_face: Annotated[str, typer.Option(help="With --crop align, for an input without a usable face: skip (reason in the summary and dataset.json) or center (centre crop, recorded).")] = "skip",
    variants: Annotated[int | None, typer.Option(help="Degraded variants per HQ image (keys NNNNNNNN_k). Default 1, or enough for 64 pairs with the bundled samples.")] = None,
    val_fraction: Annotated[float, typer.Option(help="Fraction of source images (with all their variants) put in the val split.")] = 0.02,
    shard_size: Annotated[int, typer.Option(help="Pairs per shard; one shard is one unit of parallel work.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Build seed; each sample's seed derives from it and the key.")] = 0,
    workers: Annotated[int, typer.Option("--workers", "-j", help="Parallel worker processes (local), or LocalCluster workers (dask).")] = 1,
    backend: Annotated[str, typer.Option(help="local (joblib processes) or dask (a Dask distributed cluster).")] = "local",
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (OUT must be visible to every worker). Without it, --backend dask starts a LocalCluster.")] = None,
    hq_format: Annotated[str, typer.Option(help="HQ encoding: png (lossless), jpg or webp (quality 95). LQ is always PNG.")] = "png",
    strict: Annotated[bool, typer.Option(help="Stop at the first unreadable input instead of skipping it.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a build with different settings already in OUT (only facedeg's own files are removed).")] = False,
    max_pixels: Annotated[int, typer.Option(help="Refuse inputs with more pixels than this (decompression-bomb guard).")] = DEFAULT_MAX_PIXELS,
) -> None:
    """Build paired HQ/LQ webdataset shards from clean face photos.

    Deterministic (same inputs and options give the same bytes, with any --workers or backend),
    crash-safe (rerun the same command after a crash to finish) and never mixes two builds.

    Examples:

      facedeg build --recipe mixed --out demo/          (~64 pairs from the bundled faces)

      facedeg build -r mixed -i photos/ -o shards/ --variants 4 --workers 8

      facedeg build -r mixed -i wild_photos/ -o shards/ --crop align --faces all --min-face 40

      facedeg build -r gfpgan -i 'hq-{000000..000009}.tar' -o out/ --backend dask --scheduler tcp://head:8786
    """
    config = BuildConfig(
        recipe=recipe, out=out, input=input, size=size, crop=crop, variants=variants, val_fraction=val_fraction,
        shard_size=shard_size, seed=seed, workers=workers, backend=backend, scheduler=scheduler,
        hq_format=hq_format, strict=strict, overwrite=overwrite, max_pixels=max_pixels,
        faces=faces, min_face=min_face, no_face=no_face,
    )
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]building"), BarColumn(), _CountColumn(),
        _RateColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, transient=True, disable=not console.is_terminal,
    )
    bar = progress.add_task("build", total=None)

    def on_progress(done: int, total: int) -> None:
        progress.update(bar, completed=done, total=total)

    with progress:
        report = build(config, on_progress=on_progress)
    typer.echo(_summary(report))


def verify_cmd(
    out: Annotated[Path, typer.Argument(help="A build's output folder (holding dataset.json).")],
    no_decode: Annotated[bool, typer.Option("--no-decode", help="Check hashes, members and counts only; skip decoding images.")] = False,
) -> None:
    """Check a build: every shard's sha256 and size, every sample's members, JSON and images, and the counts.

    Prints one line per problem and exits with code 1 if there is any.

    Example: facedeg verify demo/
    """
    console = Console(stderr=True)
    with console.status("verifying", spinner="dots") as status:
        report = verify_build(out, decode_images=not no_decode, on_shard=lambda n: status.update(f"verifying {n}"))
    for problem in report.problems:
        typer.echo(f"FAIL {problem}")
    if report.problems:
        typer.echo(f"{out}: {_n(len(report.problems), 'problem')} ({report.shards} shards, {report.samples} samples read)")
        raise typer.Exit(EXIT_PROBLEMS)
    typer.echo(f"{out}: ok ({report.shards} shards, {report.samples} samples verified)")


def inspect_cmd(
    out: Annotated[Path, typer.Argument(help="A build's output folder (holding dataset.json).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
) -> None:
    """Show what a build contains: counts per split, how often each op fired, the range of every
    sampled parameter, and LQ-vs-HQ PSNR (min / median / max) per recipe branch.

    Example: facedeg inspect demo/
    """
    info = inspect_build(out)
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    c = info["counts"]
    typer.echo(f"{out}: recipe {info['recipe']} ({info['recipe_hash'][:12]}), {info['size']}x{info['size']}{_lq(info)}, "
               f"{info['samples']} pairs, {info['skipped']} inputs skipped")
    for split, v in c.items():
        typer.echo(f"  {split:<5} {v['pairs']:>7} pairs  {v['images']:>6} images  {v['shards']:>4} shards")
    typer.echo("ops fired:")
    n = max(info["samples"], 1)
    for op, k in info["ops_fired"].items():
        typer.echo(f"  {op:<20} {k:>7}  ({100 * k / n:.0f}% of pairs)")
    typer.echo("sampled parameters:")
    for name, r in info["params"].items():
        if "min" in r:
            typer.echo(f"  {name:<28} {_num(r['min'])} .. {_num(r['max'])}")
        else:
            typer.echo(f"  {name:<28} " + ", ".join(f"{k} ({v})" for k, v in r["values"].items()))
    typer.echo("PSNR LQ vs HQ per branch (dB: min / median / max):")
    for branch, r in info["psnr_by_branch"].items():
        typer.echo(f"  {branch:<48} n={r['n']:<6} {r['min']:6.2f} / {r['median']:6.2f} / {r['max']:6.2f}")


def _num(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:.4g}"


def _lq(info: dict) -> str:
    """`` (LQ 128x128, 1/4)`` when the LQ is not the HQ's size, else nothing."""
    h, w = info.get("lq_size") or (info["size"], info["size"])
    return "" if (h, w) == (info["size"], info["size"]) else f" (LQ {w}x{h}, 1/{info.get('scale', 1):g})"


def replay_cmd(
    out: Annotated[Path, typer.Argument(help="A build's output folder (holding dataset.json).")],
    key: Annotated[str, typer.Argument(help="Sample key, e.g. 00000012 or 00000012_3.")],
) -> None:
    """Re-apply a sample's recorded plan to its stored HQ (or stored source) and compare with the stored LQ bit for bit.

    Exits with code 1 and names the first differing pixel if they differ.

    Example: facedeg replay demo/ 00000003_1
    """
    r = replay_key(out, key)
    head = f"{r.key} ({r.shard}): {r.summary}"
    if r.identical:
        typer.echo(f"{head}\nidentical: replayed LQ matches the stored LQ bit for bit")
        return
    if r.first is None:
        img = r.image.upper()
        typer.echo(f"{head}\nDIFFERENT: replayed {img} has another shape or content than the stored {img}")
    else:
        y, x, ch, a, b = r.first
        typer.echo(f"{head}\nDIFFERENT: {r.differing} values differ; first at y={y} x={x} channel={'RGB'[ch]}: "
                   f"stored {a}, replayed {b}")
    raise typer.Exit(EXIT_PROBLEMS)


def register(app: typer.Typer) -> None:
    """Add build, verify, inspect and replay to the ``facedeg`` app."""
    app.command("build")(user_errors()(build_cmd))
    app.command("verify")(user_errors()(verify_cmd))
    app.command("inspect")(user_errors()(inspect_cmd))
    app.command("replay")(user_errors()(replay_cmd))


__all__ = ["register"]
