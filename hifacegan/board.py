"""Where a run's numbers and sample grids go besides `log.jsonl` (rank 0 only): TensorBoard, always
(`tensorboard --logdir runs/`), and Weights & Biases with `--wandb PROJECT`.

Tags: `loss/<term>` (g_gan, g_feat, g_vgg or g_l1, d_real, d_fake), `lr/g`, `lr/d`, `perf/images_per_s`,
`perf/data_wait_share`, `perf/peak_gpu_mem_gb` (CUDA), `data/skipped`, `val/<metric>` (psnr, ssim, and
lpips, fid with their weight files; `_lq` for the input's own) and the image `samples` (LQ | output | HQ).
On resume, TensorBoard hides what the interrupted run wrote after the checkpoint (`purge_step`), so the
curves have no doubled stretch.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import numpy as np

from facedeg.files import write_atomic

TRAIN_TAGS = {"lr_g": "lr/g", "lr_d": "lr/d", "img_per_s": "perf/images_per_s",
              "data_wait": "perf/data_wait_share", "peak_mem_gb": "perf/peak_gpu_mem_gb", "skipped": "data/skipped"}
NOT_SCALARS = ("event", "step", "time", "val_samples", "model")
WANDB_ID_FILE = "wandb-id.txt"


def tags(record: dict[str, Any]) -> dict[str, float]:
    """A log.jsonl record's numbers under their TensorBoard / W&B tags."""
    out = {}
    for key, value in record.items():
        if key in NOT_SCALARS or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if key in TRAIN_TAGS:
            out[TRAIN_TAGS[key]] = float(value)
        elif key.startswith("val_"):
            out["val/" + key[4:]] = float(value)
        else:  # the loss terms
            out["loss/" + key] = float(value)
    return out


class Board:
    """TensorBoard event files in RUN_DIR (and a W&B run with `wandb_project`) for one training run."""

    def __init__(self, run_dir: Path, start_step: int, config: dict[str, Any], wandb_project: str | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(run_dir), purge_step=start_step + 1 if start_step else None, flush_secs=30)
        self.wandb = None
        if wandb_project is not None:
            import wandb

            id_file = run_dir / WANDB_ID_FILE  # the same W&B run again after --resume
            run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
            write_atomic(id_file, (run_id + "\n").encode(), root=run_dir)  # never through a link (files.py)
            self.wandb = wandb.init(project=wandb_project, dir=str(run_dir), name=run_dir.name, id=run_id,
                                    resume="allow", config=config)

    def log(self, record: dict[str, Any]) -> None:
        step = record["step"]
        scalars = tags(record)
        for tag, value in scalars.items():
            self.tb.add_scalar(tag, value, step)
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def image(self, tag: str, rgb: np.ndarray, step: int, caption: str) -> None:
        self.tb.add_image(tag, rgb, step, dataformats="HWC")
        if self.wandb is not None:
            import wandb

            self.wandb.log({tag: wandb.Image(rgb, caption=caption)}, step=step)

    def close(self) -> None:
        self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
