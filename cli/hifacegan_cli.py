"""The ``hifacegan`` command: train, restore, eval, import-original. Thin: parse options, call hifacegan.*, map errors."""

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
             "  hifacegan train --data shards/ --out runs/tune --init G.safetensors --max-steps 5000\n\n"
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
    init: Annotated[str | None, typer.Option(help="Fine-tune: start G from this run folder, checkpoint or exported "
                                             ".safetensors (its EMA weights when present); a new run, step 0.")] = None,
    init_d: Annotated[bool | None, typer.Option("--init-d", help="With --init (a checkpoint): also start D from it "
                                                "(default: D from scratch).")] = None,
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
             "  hifacegan restore faces/ --checkpoint model.pt --out restored/ --device cpu\n\n"
             "  hifacegan restore photos/ --checkpoint model.pt --out restored/ --align --upscale 2 --save-faces crops/\n\n"
             "  hifacegan restore faces/ --weights G.safetensors --out restored/")
@errors
def restore(
    input: Annotated[Path, typer.Argument(help="An image file or a folder of images (any size).")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "--weights", help="Run folder, training checkpoint "
                                             "(e.g. RUN/checkpoints/latest.pt) or exported G.safetensors.")],
    out: Annotated[Path, typer.Option(help="Output folder (PNG files, same relative names).")],
    device: Annotated[str, typer.Option(help="auto | cuda | cpu.")] = "auto",
    align: Annotated[bool, typer.Option("--align", help="Inputs are ordinary photos: detect each face, align it to "
                                        "the model's template, restore it and blend it back (needs the 'faces' "
                                        "extra). Without it, inputs are taken as already-aligned face crops.")] = False,
    only_largest: Annotated[bool, typer.Option("--only-largest", help="With --align: restore only the largest face.")] = False,
    upscale: Annotated[int, typer.Option(help="With --align: also enlarge the whole photo K times (background "
                                         "by bicubic resize).")] = 1,
    save_faces: Annotated[Path | None, typer.Option(help="With --align: also write each aligned LQ face and its "
                                                    "restored face into this folder.")] = None,
    skip_no_face: Annotated[bool, typer.Option("--skip-no-face", help="With --align: do not write photos without a "
                                               "detectable face (default: written unrestored).")] = False,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Use the raw generator, not the checkpoint's EMA one.")] = False,
) -> None:
    """Restore face images with a trained generator; unreadable files are skipped with a message."""
    from rich.console import Console
    from rich.progress import Progress

    from hifacegan.restore import AlignRestore, load_generator, pick_device, restore_files

    if not align and (only_largest or upscale != 1 or save_faces is not None or skip_no_face):
        fail("--only-largest, --upscale, --save-faces and --skip-no-face need --align")
    options = AlignRestore(only_largest, upscale, save_faces, skip_no_face) if align else None
    G, info = load_generator(checkpoint, pick_device(device), ema=not no_ema)
    console = Console(stderr=True)  # the bar on stderr, only on a terminal: stdout keeps the summary alone
    with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("restore", total=None)
        result = restore_files(G, input, out, lambda i, n, name: bar.update(task, completed=i, total=n), options)
    for s in result["skipped"]:
        typer.echo(f"skipped: {s['reason']}", err=True)
    for name in result.get("no_face", []):
        typer.echo(f"no face found: {name} ({'not written' if skip_no_face else 'written unrestored'})", err=True)
    if options is not None:
        with_faces = sum(1 for n in result['faces'].values() if n)
        typer.echo(f"faces restored: {sum(result['faces'].values())} in {with_faces} photo(s)"
                   + (f", aligned crops in {save_faces}" if save_faces else ""))
    typer.echo(f"restored {len(result['written'])} image(s) into {out} "
               f"(model step {info['step']}, {info['weights']} G, {info['variant']} ngf {info['ngf']} at {info['size']}px)")


@app.command(name="eval", epilog="Examples:\n\n"
             "  hifacegan eval --checkpoint runs/ffhq/checkpoints/latest.pt --data shards/\n\n"
             "  hifacegan eval --checkpoint G.safetensors --data 'val-{000000..000003}.tar' --json eval.json --csv rows.csv\n\n"
             "  hifacegan eval --checkpoint runs/ffhq --data shards/ --y-channel --crop-border 4\n\n"
             "  hifacegan eval --pred restored/ --gt faces_hq/ --csv rows.csv\n\n"
             "  hifacegan eval --checkpoint model.pt --data shards/ --lpips-alexnet alexnet.pth --lpips-linear alex.pth\n\n"
             "  hifacegan eval --checkpoint model.pt --data shards/ --fid-inception pt_inception-2015-12-05-6726825d.pth")
@errors
def evaluate(
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", "--weights", help="Run folder, training "
                                                    "checkpoint or exported G.safetensors (with --data).")] = None,
    data: Annotated[str | None, typer.Option(help="Dataset DIR (its val shards) or a paired shard pattern.")] = None,
    pred: Annotated[Path | None, typer.Option(help="Folder of restored images to compare with --gt, no model "
                                              "(files matched by relative path without extension).")] = None,
    gt: Annotated[Path | None, typer.Option(help="Folder of ground-truth images (with --pred).")] = None,
    y_channel: Annotated[bool, typer.Option("--y-channel", help="PSNR/SSIM/MS-SSIM on the ITU-R BT.601 Y channel "
                                            "(BasicSR's test_y_channel).")] = False,
    crop_border: Annotated[int, typer.Option(min=0, help="Pixels dropped on each side before PSNR/SSIM/MS-SSIM.")] = 0,
    no_round: Annotated[bool, typer.Option("--no-round", help="Score the model's float output instead of the "
                                           "output rounded to uint8 (published tables round).")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Also write one row per image here.")] = None,
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
    output against HQ, computed as published tables do (on the output rounded to uint8); or of two
    folders of images (--pred, --gt). Weight files are only read locally, never downloaded."""
    from rich.console import Console
    from rich.table import Table

    from hifacegan.compare import compare_folders, folder_table, write_csv
    from hifacegan.metrics import MetricSpec
    from hifacegan.restore import evaluate as run_eval
    from hifacegan.restore import format_table, load_fid, load_generator, load_lpips, pick_device, write_json

    folders = pred is not None or gt is not None
    if folders and (pred is None or gt is None):
        fail("--pred and --gt go together: pass both folders")
    if folders and (checkpoint is not None or data is not None or fid_inception is not None):
        fail("--pred/--gt compare two folders without a model: drop --checkpoint, --data and --fid-inception")
    if not folders and (checkpoint is None or data is None):
        fail("pass --checkpoint and --data to evaluate a model, or --pred and --gt to compare two folders")
    if (lpips_alexnet is None) != (lpips_linear is None):
        fail("--lpips-alexnet and --lpips-linear go together: pass both files, or neither")
    for path in (json_path, csv_path):
        if path:
            output_path(path, suffixes=None)  # a bad output path fails now, not after the evaluation
    spec = MetricSpec(quantize=not no_round, y_channel=y_channel, crop_border=crop_border)
    dev = pick_device(device)
    lpips = load_lpips(lpips_alexnet, lpips_linear).to(dev) if lpips_alexnet and lpips_linear else None
    console = Console(soft_wrap=True)
    if folders:
        result = compare_folders(pred, gt, spec, lpips)
        header = f"eval: {result['samples']} image pairs, {pred} vs {gt}"
        columns, rows = ("metric", "pred"), folder_table(result)
    else:
        fid = load_fid(fid_inception) if fid_inception else None
        G, info = load_generator(checkpoint, dev, ema=not no_ema)
        result = {"checkpoint": str(checkpoint), "model": info,
                  **run_eval(G, data, batch_size, limit, lpips=lpips, fid=fid, spec=spec)}
        if fid is not None:
            result["fid"]["weights"] = str(fid_inception)
        header = (f"eval: {result['samples']} samples from {data} (model step {info['step']}, {info['weights']} G, "
                  f"{info['variant']} ngf {info['ngf']} at {info['size']}px)")
        columns, rows = ("metric", "LQ", "restored"), format_table(result)
    if lpips is not None:
        result["lpips"].update(alexnet=str(lpips_alexnet), linear=str(lpips_linear))
    console.print(f"{header}; {spec.describe(model_output=not folders)}", highlight=False)
    table = Table()
    for col in columns:
        table.add_column(col, justify="left" if col == "metric" else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for key in ("pred_only", "gt_only"):
        names = result.get("unmatched", {}).get(key)
        if names:
            side = "--pred" if key == "pred_only" else "--gt"
            console.print(f"warning: {len(names)} file(s) only in {side}, not scored: {', '.join(names[:5])}"
                          + (" ..." if len(names) > 5 else ""), highlight=False)
    if result.get("note"):
        console.print(result["note"], highlight=False)
    if result.get("fid") and result["fid"]["warning"]:
        console.print(f"warning: {result['fid']['warning']}", highlight=False)
    per_image = result.pop("rows")
    if csv_path:
        write_output(csv_path, lambda path: write_csv(per_image, path))
        console.print(f"wrote {csv_path} ({len(per_image)} rows)", highlight=False)
    if json_path:
        write_output(json_path, lambda path: write_json(result, path))
        console.print(f"wrote {json_path}", highlight=False)


@app.command(name="import-original", epilog="Examples:\n\n"
             "  hifacegan import-original latest_net_G.pth --out authors.pt\n\n"
             "  hifacegan import-original latest_net_G.pth --discriminator latest_net_D.pth --out authors.pt\n\n"
             "  hifacegan restore faces/ --checkpoint authors.pt --out restored/")
@errors
def import_original(
    path: Annotated[Path, typer.Argument(help="The authors' generator weights (Face-Renovation latest_net_G.pth).")],
    out: Annotated[Path, typer.Option(help="Checkpoint to write (.pt), for restore, eval and train --init.")],
    discriminator: Annotated[Path | None, typer.Option(help="The authors' discriminator weights "
                                                       "(latest_net_D.pth), kept for fine-tuning.")] = None,
    variant: Annotated[str | None, typer.Option(help="hifacegan | lipspade (default: read from the tensor names).")] = None,
    ngf: Annotated[int | None, typer.Option(min=1, help="Generator width (default: read from the tensor shapes).")] = None,
    size: Annotated[int, typer.Option(help="Image size to run at; no tensor records it (the authors': 512).")] = 512,
    norm: Annotated[str, typer.Option(help="instance: their test protocol (train mode at batch 1), running "
                                      "statistics dropped | batch: keep them (their eval mode).")] = "instance",
) -> None:
    """Convert the authors' released HiFaceGAN weights (github Lotayou/Face-Renovation) into a checkpoint
    of ours. It records io_range: unit (their [0, 1] input and output), which restore, eval and training
    honour. The file is read with weights_only=True; nothing is downloaded."""
    from hifacegan.original import import_original as convert
    from hifacegan.original import save_imported

    output_path(out, suffixes=(".pt", ".pth"))
    if out.resolve() in {p.resolve() for p in (path, discriminator) if p is not None}:
        fail(f"--out {out}: would overwrite an input file; choose another name")
    ck = convert(path, discriminator, variant, ngf, size, norm)
    write_output(out, lambda p: save_imported(ck, p))
    g = ck["config"]["generator"]
    d = ck["config"].get("discriminator")
    typer.echo(f"imported {g['variant']} ngf {g['ngf']} (norm {g['norm']}, io_range {g['io_range']}, {g['size']}px)"
               + (f" and D ({d['num_d']} scales, ndf {d['ndf']})" if d else "") + f" into {out}")


@app.command(epilog="Examples:\n\n"
             "  hifacegan export runs/ffhq --out G.safetensors\n\n"
             "  hifacegan export runs/ffhq/checkpoints/step_00100000.pt --out G.safetensors --onnx G.onnx\n\n"
             "  hifacegan export runs/ffhq --out G_raw.safetensors --no-ema")
@errors
def export(
    source: Annotated[Path, typer.Argument(help="Run folder (its checkpoints/latest.pt), training checkpoint, "
                                           "or an exported .safetensors (to add --onnx).")],
    out: Annotated[Path, typer.Option(help="Generator weights to write (.safetensors), with the config as metadata.")],
    onnx: Annotated[Path | None, typer.Option(help="Also write an ONNX graph here (dynamic batch; needs the "
                                              "onnx and onnxscript packages, the project's onnx extra).")] = None,
    opset: Annotated[int, typer.Option(min=17, help="ONNX opset.")] = 18,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Export the raw generator, not the checkpoint's EMA one.")] = False,
) -> None:
    """Export the generator only (EMA weights by default): a small .safetensors file that restore, eval
    and train --init read, and optionally an ONNX graph checked against PyTorch with onnxruntime."""
    from hifacegan.export import (
        build_from_weights,
        export_onnx,
        export_safetensors,
        onnx_check,
        onnx_summary,
        read_weights,
    )

    output_path(out, suffixes=(".safetensors",))
    if onnx is not None:
        output_path(onnx, suffixes=(".onnx",))
    w = read_weights(source, ema=not no_ema)
    write_output(out, lambda path: export_safetensors(w, path))
    typer.echo(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB; {w.describe()})")
    if onnx is not None:
        G = build_from_weights(w)
        write_output(onnx, lambda path: export_onnx(G, w, path, opset))
        typer.echo(f"wrote {onnx} (opset {opset}, {onnx_summary(G)}; {onnx_check(onnx, G)})")


def main() -> None:
    run_app(app, "hifacegan")


if __name__ == "__main__":
    main()
