"""The ``hifacegan`` command: train, restore, eval. Thin: parse options, call hifacegan.*, map errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import fail, make_app, output_path, run_app, user_errors, write_output
from hifacegan.config import TrainConfig
from hifacegan.errors import HiFaceGANError

app = make_app("hifacegan", "Train HiFaceGAN on facedeg shards (one GPU or torchrun DDP), restore faces, evaluate.")
errors = user_errors(HiFaceGANError)
DEFAULTS = TrainConfig()


@app.command(epilog="Examples:\n\n"
             "  hifacegan train --data shards/ --out runs/ffhq --size 512 --ngf 48\n\n"
             "  hifacegan train --data 'hq-{000000..000099}.tar' --degrade mixed --out runs/otf\n\n"
             "  hifacegan train --config cfg.yaml --out runs/ffhq --resume\n\n"
             "  torchrun --nproc-per-node 8 -m cli.hifacegan_cli train --data shards/ --out runs/ddp")
@errors
def train(
    data: Annotated[str | None, typer.Option(help="Dataset DIR (its dataset.json train shards), shard "
                                             "pattern 'train-{000000..000099}.tar', or an image folder with --degrade.")] = None,
    out: Annotated[str | None, typer.Option(help="Run directory: checkpoints/, log.jsonl, samples/.")] = None,
    val_data: Annotated[str | None, typer.Option(help="Validation shards (default: DIR's val shards).")] = None,
    size: Annotated[int | None, typer.Option(help=f"Image size, a multiple of 32 (default {DEFAULTS.size}).")] = None,
    ngf: Annotated[int | None, typer.Option(help=f"Generator width (default {DEFAULTS.ngf}).")] = None,
    variant: Annotated[str | None, typer.Option(help=f"hifacegan | lipspade (default {DEFAULTS.variant}).")] = None,
    batch_size: Annotated[int | None, typer.Option(help=f"Batch size per GPU/process (default {DEFAULTS.batch_size}).")] = None,
    max_steps: Annotated[int | None, typer.Option(help=f"Training steps (default {DEFAULTS.max_steps}).")] = None,
    workers: Annotated[int | None, typer.Option(help=f"Loader worker processes per GPU (default {DEFAULTS.workers}).")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of options (CLI options override it).")] = None,
    resume: Annotated[bool | None, typer.Option("--resume", help="Continue from OUT/checkpoints/latest.pt.")] = None,
    degrade: Annotated[str | None, typer.Option(help="Degrade HQ on the fly with this facedeg recipe.")] = None,
    vgg_weights: Annotated[str | None, typer.Option(help="Local torchvision VGG19 state dict for the "
                                                    "perceptual loss (without it: L1 pixel loss).")] = None,
    compile: Annotated[bool | None, typer.Option("--compile", help="torch.compile G and D: ~2 min of compilation at the start, then ~1.7x the images/s on a GPU (use it for real runs).")] = None,
    ckpt_every: Annotated[int | None, typer.Option(help=f"Checkpoint every N steps (default {DEFAULTS.ckpt_every}).")] = None,
    log_every: Annotated[int | None, typer.Option(help=f"Log losses, LRs, images/s every N steps (default {DEFAULTS.log_every}).")] = None,
    val_every: Annotated[int | None, typer.Option(help="Validate (PSNR, SSIM; LPIPS, FID with their files) every N steps "
                                                  "(default: a tenth of --max-steps, at most 2000).")] = None,
    sample_every: Annotated[int | None, typer.Option(help="Write a captioned LQ | output | HQ grid every N steps "
                                                     "(default: a tenth of --max-steps, at most 1000).")] = None,
    val_samples: Annotated[int | None, typer.Option(help=f"Val pairs per validation (default {DEFAULTS.val_samples}).")] = None,
    ema_decay: Annotated[float | None, typer.Option(help=f"EMA generator decay; validation, samples, restore and eval "
                                                    f"use it; 0: no EMA (default {DEFAULTS.ema_decay}).")] = None,
    lpips_alexnet: Annotated[str | None, typer.Option(help="Local AlexNet file: LPIPS at each validation (with --lpips-linear).")] = None,
    lpips_linear: Annotated[str | None, typer.Option(help="Local LPIPS v0.1 linear-layer file (with --lpips-alexnet).")] = None,
    fid_inception: Annotated[str | None, typer.Option(help="Local pytorch-fid Inception file: FID of the val outputs.")] = None,
    wandb: Annotated[str | None, typer.Option(help="Also log to this Weights & Biases project (needs `pip install "
                                              "wandb`; WANDB_MODE=offline works without network).")] = None,
    seed: Annotated[int | None, typer.Option(help=f"Seed for init, data order and flips (default {DEFAULTS.seed}).")] = None,
) -> None:
    """Train HiFaceGAN from facedeg shards (streamed). Under torchrun, runs DDP (NCCL on GPU, gloo on CPU)."""
    overrides = {k: v for k, v in locals().items() if k != "config"}
    from hifacegan.config import resolve_config
    from hifacegan.dist import env_world
    from hifacegan.train import train as run

    cfg = resolve_config(config, overrides)
    result = run(cfg)
    if result.get("step") and env_world()[0] == 0:
        typer.echo(f"done: step {result['step']}, checkpoint {result['checkpoint']}")


@app.command(epilog="Examples:\n\n"
             "  hifacegan restore photo.jpg --checkpoint runs/ffhq/checkpoints/latest.pt --out restored/\n\n"
             "  hifacegan restore faces/ --checkpoint model.pt --out restored/ --device cpu")
@errors
def restore(
    input: Annotated[Path, typer.Argument(help="An image file or a folder of images (any size).")],
    checkpoint: Annotated[Path, typer.Option(help="Training checkpoint (e.g. RUN/checkpoints/latest.pt).")],
    out: Annotated[Path, typer.Option(help="Output folder (PNG files, same relative names).")],
    device: Annotated[str, typer.Option(help="auto | cuda | cpu.")] = "auto",
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Use the raw generator, not the checkpoint's EMA one.")] = False,
) -> None:
    """Restore face images with a trained generator; unreadable files are skipped with a message."""
    from rich.console import Console
    from rich.progress import Progress

    from hifacegan.restore import load_generator, pick_device, restore_files

    G, info = load_generator(checkpoint, pick_device(device), ema=not no_ema)
    console = Console(stderr=True)  # the bar on stderr, only on a terminal: stdout keeps the summary alone
    with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("restore", total=None)
        result = restore_files(G, input, out, lambda i, n, name: bar.update(task, completed=i, total=n))
    for s in result["skipped"]:
        typer.echo(f"skipped: {s['reason']}", err=True)
    typer.echo(f"restored {len(result['written'])} image(s) into {out} "
               f"(model step {info['step']}, {info['weights']} G, {info['variant']} ngf {info['ngf']} at {info['size']}px)")


@app.command(name="eval", epilog="Examples:\n\n"
             "  hifacegan eval --checkpoint runs/ffhq/checkpoints/latest.pt --data shards/\n\n"
             "  hifacegan eval --checkpoint model.pt --data 'val-{000000..000003}.tar' --json eval.json\n\n"
             "  hifacegan eval --checkpoint model.pt --data shards/ --lpips-alexnet alexnet.pth --lpips-linear alex.pth\n\n"
             "  hifacegan eval --checkpoint model.pt --data shards/ --fid-inception pt_inception-2015-12-05-6726825d.pth")
@errors
def evaluate(
    checkpoint: Annotated[Path, typer.Option(help="Training checkpoint.")],
    data: Annotated[str, typer.Option(help="Dataset DIR (its val shards) or a paired shard pattern.")],
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 8,
    limit: Annotated[int | None, typer.Option(min=1, help="Evaluate at most N samples.")] = None,
    device: Annotated[str, typer.Option(help="auto | cuda | cpu.")] = "auto",
    lpips_alexnet: Annotated[Path | None, typer.Option(help="Local torchvision AlexNet state dict, for LPIPS "
                                                       "(with --lpips-linear).")] = None,
    lpips_linear: Annotated[Path | None, typer.Option(help="Local LPIPS v0.1 'alex' linear-layer file "
                                                      "(lin0..lin4), for LPIPS (with --lpips-alexnet).")] = None,
    fid_inception: Annotated[Path | None, typer.Option(help="Local pytorch-fid Inception weights file "
                                                       "(pt_inception-*.pth, see the last example), for FID.")] = None,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Use the raw generator, not the checkpoint's EMA one.")] = False,
) -> None:
    """PSNR, SSIM (11x11 Gaussian, sigma 1.5), MS-SSIM and optionally LPIPS and FID of LQ and restored
    output against HQ. Weight files are only read locally, never downloaded."""
    from rich.console import Console
    from rich.table import Table

    from hifacegan.restore import evaluate as run_eval
    from hifacegan.restore import format_table, load_fid, load_generator, load_lpips, pick_device, write_json

    if (lpips_alexnet is None) != (lpips_linear is None):
        fail("--lpips-alexnet and --lpips-linear go together: pass both files, or neither")
    if json_path:
        output_path(json_path, suffixes=None)  # a bad --json path fails now, not after the evaluation
    lpips = load_lpips(lpips_alexnet, lpips_linear) if lpips_alexnet and lpips_linear else None
    fid = load_fid(fid_inception) if fid_inception else None
    G, info = load_generator(checkpoint, pick_device(device), ema=not no_ema)
    result = {"checkpoint": str(checkpoint), "model": info,
              **run_eval(G, data, batch_size, limit, lpips=lpips, fid=fid)}
    if lpips is not None:
        result["lpips"].update(alexnet=str(lpips_alexnet), linear=str(lpips_linear))
    if fid is not None:
        result["fid"]["weights"] = str(fid_inception)
    console = Console(soft_wrap=True)
    console.print(f"eval: {result['samples']} samples from {data} (model step {info['step']}, {info['weights']} G, "
                  f"{info['variant']} ngf {info['ngf']} at {info['size']}px)", highlight=False)
    table = Table()
    for col in ("metric", "LQ", "restored"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for row in format_table(result):
        table.add_row(*row)
    console.print(table)
    if result["note"]:
        console.print(result["note"], highlight=False)
    if result["fid"] and result["fid"]["warning"]:
        console.print(f"warning: {result['fid']['warning']}", highlight=False)
    if json_path:
        write_output(json_path, lambda path: write_json(result, path))
        console.print(f"wrote {json_path}", highlight=False)


def main() -> None:
    run_app(app, "hifacegan")


if __name__ == "__main__":
    main()
