"""HiFaceGAN training loop: one GPU, `torchrun` DDP, or CPU for tests.

    hifacegan train --data shards/ --out runs/ffhq512 --ngf 48 --batch-size 2
    torchrun --nproc-per-node 8 -m cli.hifacegan_cli train --data shards/ --out runs/ffhq512

Read top to bottom: setup, data, models, resume, the loop (G step, D step), then logging, samples,
validation and checkpoints. Checkpoint helpers are in `hifacegan/checkpoint.py`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from facedeg.codec import encode_png
from facedeg.files import write_atomic
from hifacegan import dist
from hifacegan.checkpoint import (
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
    stable_seed,
    to_device,
    train_loader,
    val_batches,
)
from hifacegan.errors import CheckpointError, ConfigError, DataError, HiFaceGANError
from hifacegan.infer import autocast_for, run_generator
from hifacegan.losses import GANLoss, PerceptualLoss, discriminator_loss, generator_loss
from hifacegan.metrics import psnr, ssim
from hifacegan.models import MultiscaleDiscriminator, VGG19Features, build_generator
from hifacegan.runlog import RunLog, divergence


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
    epoch_steps = cfg.epoch_steps or cfg.ckpt_every

    # ---------------------------------------------------------------- models, losses, optimisers
    G = build_generator(cfg.variant, cfg.ngf, cfg.size, cfg.norm).to(device, memory_format=fmt)
    D = MultiscaleDiscriminator(6, cfg.ndf, cfg.d_layers, cfg.num_d).to(device, memory_format=fmt)
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

    # ---------------------------------------------------------------- resume
    step = 0
    latest = ckpt_dir / "latest.pt"
    if cfg.resume and latest.is_file():
        ck = load_checkpoint(latest)
        lacking = [k for k in RESUME_KEYS if k not in ck]
        if lacking:
            raise CheckpointError(f"{latest}: cannot resume from it: no {', '.join(lacking)}")
        load_state(G, ck["G"], "generator", latest)
        load_state(D, ck["D"], "discriminator", latest)
        opt_g.load_state_dict(ck["opt_g"])
        opt_d.load_state_dict(ck["opt_d"])
        sched_g.load_state_dict(ck["sched_g"])
        sched_d.load_state_dict(ck["sched_d"])
        step = int(ck["step"])
        set_rng_state(ck["rng"][rank] if rank < len(ck["rng"]) else ck["rng"][0])
        dist.print0(f"resumed from {latest} at step {step}")
    elif cfg.resume:
        dist.print0(f"--resume: no checkpoint in {ckpt_dir} yet, starting from scratch")

    # ---------------------------------------------------------------- compile, DDP
    g_model = torch.compile(G) if cfg.compile else G
    d_model = torch.compile(D) if cfg.compile else D
    g_train = DDP(g_model, device_ids=[device.index] if cuda else None) if world > 1 else g_model
    d_train = DDP(d_model, device_ids=[device.index] if cuda else None) if world > 1 else d_model

    # ---------------------------------------------------------------- logging (rank 0)
    log_file = None
    if dist.is_main():  # config.json and log.jsonl are written when the first batch has arrived
        log_file = RunLog(run_dir, run_config(cfg, G, D), step)
        n_g, n_d = (sum(p.numel() for p in m.parameters()) for m in (G, D))
        dist.print0(f"{cfg.variant} G {n_g / 1e6:.1f}M params, D {n_d / 1e6:.1f}M | {world} x {device.type} | "
                    f"{'bf16' if amp else 'fp32'}{' channels_last' if channels_last else ''}"
                    f"{' compiled' if cfg.compile else ''} | batch {cfg.batch_size} x {world}")
        dist.print0(f"data: {data_desc}; val: {val_desc}")
        dist.print0("perceptual loss: VGG19 from " + cfg.vgg_weights if perceptual else
                    "perceptual loss: off (no --vgg-weights); using an L1 pixel loss instead "
                    f"(weight {cfg.w_l1})")
    bar = Progress(cfg.max_steps, step, enabled=progress and dist.is_main())
    val_cache: list[dict[str, Any]] | None = None
    window = {"t0": time.perf_counter(), "wait": 0.0, "steps": 0}
    shards_read: set[str] = set()
    skipped: dict[int, int] = {}  # this epoch's loader: worker -> its running count
    skipped_before = 0  # earlier epochs' loaders
    last: dict[str, Any] = {}
    warned = False  # about a diverging loss, once per call

    # ---------------------------------------------------------------- the loop
    try:
        stop = min(cfg.max_steps, until or cfg.max_steps)
        while step < stop:
            epoch, skip = divmod(step, epoch_steps)
            skipped_before, skipped = skipped_before + sum(skipped.values()), {}
            loader = train_loader(cfg.data, cfg.size, cfg.batch_size, steps=epoch_steps, workers=cfg.workers,
                                  seed=cfg.seed, epoch=epoch, rank=rank, world=world, degrade=cfg.degrade,
                                  shuffle_buffer=cfg.shuffle_buffer, pin_memory=cuda)
            batches = iter(loader)
            for _ in range(skip):  # resuming mid-epoch: replay the epoch's stream up to this step
                next(batches)
            while step < stop:
                t_wait = time.perf_counter()
                batch = next(batches, None)
                if batch is None:
                    break
                if log_file:
                    log_file.start()
                window["wait"] += time.perf_counter() - t_wait
                shards_read.update(batch["shards"])
                skipped[batch["worker"]] = batch["skipped"]
                lq, hq = to_device(batch, device, flip_seed=stable_seed(cfg.seed, rank, step), channels_last=channels_last)

                # G step: D is frozen and used without its DDP wrapper (no gradient sync needed)
                D.requires_grad_(False)
                with autocast:
                    fake = g_train(lq)
                    g_loss, g_terms = generator_loss(d_model, lq, fake, hq, gan_loss, weights, perceptual)
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
                sched_g.step()

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
                            "skipped": skipped_before + sum(skipped.values()),
                            "time": round(time.time(), 2)}
                    if cuda:
                        last["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                    window = {"t0": time.perf_counter(), "wait": 0.0, "steps": 0}
                    if log_file:
                        log_file.write(last)
                bar.update(step, losses, last)
                if dist.is_main() and (step % cfg.sample_every == 0 or step % cfg.val_every == 0):
                    if val_cache is None:
                        val_cache = load_val(cfg, val_spec, batch)
                    if step % cfg.sample_every == 0:
                        write_grid(G, val_cache[0], amp, run_dir / "samples" / f"step_{step:08d}.png")
                    if step % cfg.val_every == 0 and val_spec:
                        record = validate(G, val_cache, amp, step)
                        bar.print(f"val step {step}: PSNR {record['val_psnr']:.2f} dB (LQ {record['val_psnr_lq']:.2f})"
                                  f", SSIM {record['val_ssim']:.4f} (LQ {record['val_ssim_lq']:.4f})")
                        log_file.write(record)
                if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
                    states = dist.all_gather_objects(get_rng_state())
                    if dist.is_main():
                        state = {"G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(),
                                 "opt_d": opt_d.state_dict(), "sched_g": sched_g.state_dict(),
                                 "sched_d": sched_d.state_dict(), "step": step, "rng": states,
                                 "config": run_config(cfg, G, D)}
                        path = save_checkpoint(state, ckpt_dir, step, cfg.keep_ckpts)
                        bar.print(f"checkpoint: {path}")
                    dist.barrier()
    except DataError as exc:  # raised in a loader worker: keep the one line that says what is wrong
        raise DataError(str(exc).strip().splitlines()[-1].split("DataError: ")[-1]) from None
    finally:
        bar.close()
        if log_file:
            log_file.close()

    reads = dist.all_gather_objects(sorted(shards_read))
    if dist.is_main():
        end = {"event": "end", "step": step, "shards_read": reads, "skipped": skipped_before + sum(skipped.values())}
        log_file.end(end)
    dist.barrier()
    dist.cleanup()
    return {**last, "run_dir": str(run_dir), "checkpoint": str(latest), "shards_read": reads}


# ---------------------------------------------------------------------------- val, samples, progress


def load_val(cfg: TrainConfig, val_spec: str | None, fallback: dict[str, Any]) -> list[dict[str, Any]]:
    """The first cfg.val_samples val pairs (kept in memory as uint8); without val data, one train batch."""
    if val_spec:
        cached = list(val_batches(val_spec, cfg.size, min(cfg.batch_size * 2, cfg.val_samples),
                                  limit=cfg.val_samples, seed=cfg.seed, degrade=cfg.degrade))
        if cached:
            return cached
        dist.print0(f"warning: no usable val samples in {val_spec}; the sample grid uses a train batch")
    return [{"lq": fallback["lq"].clone(), "hq": fallback["hq"].clone()}]


def validate(G: torch.nn.Module, batches: list[dict[str, Any]], bf16: bool, step: int) -> dict[str, Any]:
    sums = {"val_psnr": 0.0, "val_ssim": 0.0, "val_psnr_lq": 0.0, "val_ssim_lq": 0.0}
    n = 0
    for b in batches:
        out = run_generator(G, b["lq"], bf16).cpu()
        hq, lq = (b[k].permute(0, 3, 1, 2).double() / 255 for k in ("hq", "lq"))
        sums["val_psnr"] += psnr(out, hq).clamp(max=100).sum().item()
        sums["val_ssim"] += ssim(out, hq).sum().item()
        sums["val_psnr_lq"] += psnr(lq, hq).clamp(max=100).sum().item()
        sums["val_ssim_lq"] += ssim(lq, hq).sum().item()
        n += len(hq)
    return {"event": "val", "step": step, "val_samples": n, **{k: round(v / n, 4) for k, v in sums.items()}}


def write_grid(G: torch.nn.Module, batch: dict[str, Any], bf16: bool, path: Path) -> None:
    """Rows: LQ / output / HQ for (up to) the first 4 samples of `batch`."""
    lq, hq = batch["lq"][:4], batch["hq"][:4]
    out = (run_generator(G, lq, bf16).cpu() * 255).round().byte().permute(0, 2, 3, 1)
    rows = [np.concatenate(list(t.numpy()), axis=1) for t in (lq, out, hq)]
    write_atomic(path, encode_png(np.concatenate(rows, axis=0), 1), root=path.parent.parent)  # never through a link


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

