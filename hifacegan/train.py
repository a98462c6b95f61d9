"""HiFaceGAN training loop: one GPU, `torchrun` DDP, or CPU for tests.

    hifacegan train --data shards/ --out runs/ffhq512 --ngf 48 --batch-size 2
    torchrun --nproc-per-node 8 -m cli.hifacegan_cli train --data shards/ --out runs/ffhq512

Read top to bottom: setup, data, models, resume, the loop (G step, D step, EMA), then logging, samples,
validation and checkpoints. Checkpoint helpers are in `hifacegan/checkpoint.py`, the EMA generator in
`hifacegan/ema.py`, validation and sample grids in `hifacegan/validation.py`, TensorBoard / W&B in
`hifacegan/board.py`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from facedeg.seeds import derive_seed
from hifacegan import dist
from hifacegan.board import Board
from hifacegan.checkpoint import (
    EMA_KEY,
    RESUME_KEYS,
    get_rng_state,
    load_checkpoint,
    load_state,
    run_config,
    run_lock,
    save_checkpoint,
    set_rng_state,
)
from hifacegan.config import TrainConfig, loss_weights
from hifacegan.data import (
    check_source,
    default_val_spec,
    open_train_stream,
    resume_cursors,
    skipped_total,
    stream_state,
    to_device,
)
from hifacegan.ema import EMA
from hifacegan.errors import CheckpointError, ConfigError, DataError, HiFaceGANError
from hifacegan.export import init_models
from hifacegan.infer import autocast_for, io_range_of, signed_view
from hifacegan.losses import GANLoss, PerceptualLoss, discriminator_loss, generator_loss
from hifacegan.models import MultiscaleDiscriminator, VGG19Features, build_generator
from hifacegan.runlog import RunLog, divergence
from hifacegan.validation import Validator, load_metric_nets, load_val, val_line, write_png


def train(cfg: TrainConfig, progress: bool = True, until: int | None = None) -> dict[str, Any]:
    """Train until cfg.max_steps; returns the last logged losses and where things went.

    `until` stops this call early at that step, as if the job had been interrupted (for tests)."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda: no CUDA device is available (use device: auto or cpu)")
    device = dist.init(cfg.device)
    with run_lock(Path(cfg.out)):
        return _train(cfg, device, progress, until)


def _train(cfg: TrainConfig, device: torch.device, progress: bool, until: int | None) -> dict[str, Any]:
    """The training run itself: `train` has started the process group and holds the run folder."""
    # ---------------------------------------------------------------- setup
    rank, world = dist.rank(), dist.world_size()
    cuda = device.type == "cuda"
    amp = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)
    channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and cuda)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    autocast = autocast_for(device, amp)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed)  # same init on every rank (DDP broadcasts rank 0's anyway)
    run_dir, ckpt_dir = Path(cfg.out), Path(cfg.out) / "checkpoints"
    if not cfg.resume and os.path.lexists(ckpt_dir / "latest.pt"):  # a folder without a checkpoint is no run yet
        raise ConfigError(f"{run_dir} already holds a training run: pass --resume to continue it, "
                          "or choose another --out (nothing was changed)")

    # ---------------------------------------------------------------- data (resolve early: clear errors first)
    data_desc = check_source(cfg.data, "train", cfg.degrade)
    val_spec = cfg.val_data or default_val_spec(cfg.data)
    val_desc = check_source(val_spec, "val", cfg.degrade) if val_spec else "none (no PSNR/SSIM validation)"

    # ---------------------------------------------------------------- models, losses, optimisers
    G = build_generator(cfg.variant, cfg.ngf, cfg.size, cfg.norm).to(device, memory_format=fmt)
    D = MultiscaleDiscriminator(6, cfg.ndf, cfg.d_layers, cfg.num_d).to(device, memory_format=fmt)
    latest = ckpt_dir / "latest.pt"
    if cfg.init and not (cfg.resume and latest.is_file()):  # a resumed run has it all in its checkpoint
        dist.print0(init_models(G, D, cfg.init, cfg.init_d))
    perceptual = None
    if cfg.vgg_weights:
        try:
            vgg = VGG19Features.from_file(cfg.vgg_weights)
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"--vgg-weights: {str(exc).splitlines()[0]}") from None
        perceptual = PerceptualLoss(vgg).to(device, memory_format=fmt)
    gan_loss = GANLoss(cfg.gan_mode)
    weights = loss_weights(cfg)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    decay_from = int(cfg.decay_start * cfg.max_steps)

    def lr_factor(step: int) -> float:  # constant, then linear decay to 0 at max_steps
        return 1.0 if step < decay_from else max(0.0, (cfg.max_steps - step) / max(1, cfg.max_steps - decay_from))

    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, lr_factor)
    sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, lr_factor)
    ema = EMA(G, cfg.ema_decay) if cfg.ema_decay and dist.is_main() else None  # rank 0 validates and saves
    lpips, fid = load_metric_nets(cfg)

    # ---------------------------------------------------------------- resume
    step = 0
    cursors: dict[int, Any] = {}  # loader worker -> the cursor of its newest batch (see hifacegan/data.py)
    if cfg.resume and latest.is_file():
        ck = load_checkpoint(latest)
        lacking = [k for k in RESUME_KEYS if k not in ck]
        if lacking:
            raise CheckpointError(f"{latest}: cannot resume from it: no {', '.join(lacking)}")
        load_state(G, ck["G"], "generator", latest)
        load_state(D, ck["D"], "discriminator", latest)
        for net, name in ((G, "generator"), (D, "discriminator")):  # e.g. a run fine-tuning the authors' weights
            net.config["io_range"] = ck["config"].get(name, {}).get("io_range", "signed")
        opt_g.load_state_dict(ck["opt_g"])
        opt_d.load_state_dict(ck["opt_d"])
        sched_g.load_state_dict(ck["sched_g"])
        sched_d.load_state_dict(ck["sched_d"])
        if ema is not None:  # a checkpoint from before EMA (or with ema_decay 0): start the average from G
            load_state(ema.model, ck.get(EMA_KEY, ck["G"]), "EMA generator", latest)
            ema.model.config["io_range"] = G.config["io_range"]
        step = int(ck["step"])
        set_rng_state(ck["rng"][rank] if rank < len(ck["rng"]) else ck["rng"][0])
        cursors, note = resume_cursors(ck.get("data"), rank, world, cfg.workers)
        if note:
            dist.print0(note)
        dist.print0(f"resumed from {latest} at step {step}")
    elif cfg.resume:
        dist.print0(f"--resume: no checkpoint in {ckpt_dir} yet, starting from scratch")

    # ---------------------------------------------------------------- compile, DDP
    g_model = torch.compile(G) if cfg.compile else G
    d_model = torch.compile(D) if cfg.compile else D
    g_train = DDP(g_model, device_ids=[device.index] if cuda else None) if world > 1 else g_model
    d_train = DDP(d_model, device_ids=[device.index] if cuda else None) if world > 1 else d_model
    # batches are in [-1, 1]; weights made for [0, 1] (the authors', via --init) see their own range
    g_train = signed_view(g_train, io_range_of(G), output=True)
    d_model = signed_view(d_model, io_range_of(D), output=False)
    d_train = signed_view(d_train, io_range_of(D), output=False)

    # ---------------------------------------------------------------- logging (rank 0)
    log_file = board = None
    if dist.is_main():  # config.json, log.jsonl and the board are written when the first batch has arrived
        log_file = RunLog(run_dir, run_config(cfg, G, D), step)
        n_g, n_d = (sum(p.numel() for p in m.parameters()) for m in (G, D))
        dist.print0(f"{cfg.variant} G {n_g / 1e6:.1f}M params, D {n_d / 1e6:.1f}M | {world} x {device.type} | "
                    f"{'bf16' if amp else 'fp32'}{' channels_last' if channels_last else ''}"
                    f"{' compiled' if cfg.compile else ''} | batch {cfg.batch_size} x {world}")
        dist.print0(f"data: {data_desc}; val: {val_desc}")
        dist.print0("perceptual loss: VGG19 from " + cfg.vgg_weights if perceptual else
                    "perceptual loss: off (no --vgg-weights); using an L1 pixel loss instead "
                    f"(weight {cfg.w_l1})")
        dist.print0(f"validation every {cfg.val_every} steps, samples every {cfg.sample_every}, with "
                    + (f"the EMA generator (decay {cfg.ema_decay})" if ema else "the raw generator (no EMA)")
                    + f"; watch: tensorboard --logdir {run_dir.parent}")
    bar = Progress(cfg.max_steps, step, enabled=progress and dist.is_main())
    validator: Validator | None = None
    window = {"t0": time.perf_counter(), "wait": 0.0, "steps": 0}
    shards_read: set[str] = set()
    last: dict[str, Any] = {}
    warned = False  # about a diverging loss, once per call

    # ---------------------------------------------------------------- the loop
    try:
        stop = min(cfg.max_steps, until or cfg.max_steps)
        # one endless stream per run, continued from the checkpoint's cursors (its order never depends on
        # the checkpoint, validation or sample cadence)
        with open_train_stream(cfg.data, cfg.size, cfg.batch_size, workers=cfg.workers, seed=cfg.seed, rank=rank,
                               world=world, degrade=cfg.degrade, shuffle_buffer=cfg.shuffle_buffer,
                               pin_memory=cuda, step=step, cursors=cursors) as batches:
            while step < stop:
                t_wait = time.perf_counter()
                batch = next(batches)
                if log_file and not log_file.started:  # training has really started: now the run folder
                    log_file.start()
                    board = Board(run_dir, step, run_config(cfg, G, D), cfg.wandb)
                window["wait"] += time.perf_counter() - t_wait
                shards_read.update(batch["shards"])
                cursors[batch["worker"]] = batch["cursor"]
                flip_seed = derive_seed(cfg.seed, "flip", rank, step)
                lq, hq = to_device(batch, device, flip_seed=flip_seed, channels_last=channels_last)

                # G step: D is frozen and used without its DDP wrapper (no gradient sync needed)
                D.requires_grad_(False)
                with autocast:
                    fake = g_train(lq)
                    g_loss, g_terms = generator_loss(d_model, lq, fake, hq, gan_loss, weights, perceptual)
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
                sched_g.step()
                if ema is not None:
                    ema.update(G, step)

                # D step: real vs fake (detached) in one batch through the DDP-wrapped D
                D.requires_grad_(True)
                with autocast:
                    d_loss, d_terms = discriminator_loss(d_train, lq, fake.detach(), hq, gan_loss)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                sched_d.step()
                step += 1
                window["steps"] += 1

                # logging, samples, validation, checkpoints
                terms = {**g_terms, **d_terms}  # averaged over ranks; one device->host copy per step
                values = dist.mean_over_ranks(torch.stack(list(terms.values())).float()).tolist()
                losses = dict(zip(terms, values, strict=True))
                if not all(np.isfinite(v) for v in losses.values()):
                    raise HiFaceGANError(f"non-finite loss at step {step}: {losses}")
                if not warned and (warning := divergence(losses, step)):
                    warned = True
                    bar.print(warning)
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    elapsed = time.perf_counter() - window["t0"]
                    last = {"event": "train", "step": step, **losses,
                            "lr_g": sched_g.get_last_lr()[0], "lr_d": sched_d.get_last_lr()[0],
                            "img_per_s": round(window["steps"] * cfg.batch_size * world / elapsed, 3),
                            "data_wait": round(window["wait"] / elapsed, 4),
                            "skipped": skipped_total(cursors),
                            "time": round(time.time(), 2)}
                    if cuda:
                        last["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                    window = {"t0": time.perf_counter(), "wait": 0.0, "steps": 0}
                    if log_file:
                        log_file.write(last)
                        board.log(last)
                bar.update(step, losses, last)
                if dist.is_main() and (step % cfg.sample_every == 0 or step % cfg.val_every == 0):
                    t_val = time.perf_counter()
                    G_val, model = (ema.model, "EMA") if ema else (G, "raw G")  # what restore will use
                    if validator is None:
                        validator = Validator(load_val(cfg, val_spec, batch), device, amp, lpips, fid)
                    if step % cfg.val_every == 0 and val_spec:
                        record = {**validator.validate(G_val, step), "model": model}
                        bar.print(val_line(record))
                        log_file.write(record)
                        board.log(record)
                    if step % cfg.sample_every == 0:
                        grid = validator.grid(G_val, step, model)
                        write_png(grid, run_dir / "samples" / f"step_{step:08d}.png")
                        board.image("samples", grid, step, f"LQ | output ({model}) | HQ, step {step}")
                    window["t0"] += time.perf_counter() - t_val  # images/s and data wait: training time only
                if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
                    states = dist.all_gather_objects((get_rng_state(), stream_state(cursors, world, cfg.workers)))
                    if dist.is_main():
                        state = {"G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(),
                                 "opt_d": opt_d.state_dict(), "sched_g": sched_g.state_dict(),
                                 "sched_d": sched_d.state_dict(), "step": step,
                                 "rng": [s[0] for s in states], "data": [s[1] for s in states],
                                 "config": run_config(cfg, G, D), **({EMA_KEY: ema.state_dict()} if ema else {})}
                        path = save_checkpoint(state, ckpt_dir, step, cfg.keep_ckpts)
                        bar.print(f"checkpoint: {path}")
                    dist.barrier()
    except DataError as exc:  # raised in a loader worker: keep the one line that says what is wrong
        raise DataError(str(exc).strip().splitlines()[-1].split("DataError: ")[-1]) from None
    finally:
        bar.close()
        if log_file:
            log_file.close()
        if board:
            board.close()

    reads = dist.all_gather_objects(sorted(shards_read))
    if dist.is_main():
        end = {"event": "end", "step": step, "shards_read": reads, "skipped": skipped_total(cursors)}
        log_file.end(end)
    dist.barrier()
    dist.cleanup()
    return {**last, "run_dir": str(run_dir), "checkpoint": str(latest), "shards_read": reads}


# ---------------------------------------------------------------------------- val, samples, progress


class Progress:
    """Console progress on rank 0: step, losses, images/s, data-wait fraction. A live rich bar on a
    terminal; one plain line per logged step otherwise (job logs)."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        from rich.console import Console

        self.enabled, self.total, self.bar = enabled, total, None
        self.console = Console(soft_wrap=True, highlight=False)
        if enabled and self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                    TextColumn("{task.fields[info]}"), console=self.console)
            self.task = self.bar.add_task("train", total=total, completed=start, info="")
            self.bar.start()

    def update(self, step: int, losses: dict[str, float], last: dict[str, Any]) -> None:
        if not self.enabled:
            return
        info = " ".join(f"{k} {v:.3f}" for k, v in losses.items())
        if last:
            info += f" | {last['img_per_s']:.1f} img/s, data wait {100 * last['data_wait']:.0f}%"
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=info)
        elif last.get("step") == step:
            self.console.print(f"step {step}/{self.total} {info}")

    def print(self, msg: str) -> None:
        if self.enabled:
            self.console.print(msg)
        else:
            dist.print0(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()

