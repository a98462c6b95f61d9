"""Training checkpoints: written atomically, loaded with `torch.load(weights_only=True)`; and the run
folder's lock (one trainer per run folder).

A checkpoint holds G, D, both optimizers and schedulers, the step, every rank's RNG states and the
resolved config with the architecture arguments (enough to rebuild both models); and `G_ema`, the EMA
generator, unless the run has `ema_decay: 0`. `generator_weights` picks the generator to use from it.
"""

from __future__ import annotations

import os
import random
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facedeg.build.lockfile import FolderLock, LockBusy
from facedeg.files import OutputError, atomic_file, file_problem, fsync_dir, makedirs, remove_leftovers
from hifacegan import dist
from hifacegan.config import TrainConfig
from hifacegan.errors import CheckpointError, ConfigError
from hifacegan.weights import UnreadableFile, torch_load

RESUME_KEYS = ("G", "D", "opt_g", "opt_d", "sched_g", "sched_d", "step", "rng")
EMA_KEY = "G_ema"
LOCK_FILE = ".hifacegan-train.lock"


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Create RUN_DIR and hold its lock (rank 0) while training: one trainer per run folder, e.g. when a
    job is requeued while the first still runs. Every rank learns rank 0's verdict (a collective), so an
    error stops all of them instead of leaving the others waiting in DDP. The lock dies with a killed job;
    its file is removed at the end, and a RUN_DIR this call created is removed again if nothing was
    written into it."""
    lock, error, created = None, None, False
    if dist.is_main():
        existing = next(p for p in (run_dir.absolute(), *run_dir.absolute().parents) if p.exists())
        if not existing.is_dir():  # RUN_DIR itself, or a folder on its way, is a file
            error = f"--out: {existing} exists and is not a directory"
        else:
            created = existing != run_dir.absolute()
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
                lock = FolderLock(run_dir / LOCK_FILE)
            except LockBusy as busy:
                error = (f"{run_dir} is being trained by another process ({busy.holder}); wait for it to end, "
                         "or choose another --out")
            except OSError as exc:
                error = f"--out: cannot write {exc.filename or run_dir}: {exc.strerror or exc}"
            except OutputError as exc:  # a link planted at the lock's name
                error = f"--out: {exc}"
    error = dist.all_gather_objects(error)[0]
    if error:
        raise ConfigError(str(error))
    try:
        yield
    finally:
        if lock is not None:
            lock.release()
        if created:
            with suppress(OSError):
                run_dir.rmdir()  # only when still empty: a run that stopped before writing anything


def run_config(cfg: TrainConfig, G: torch.nn.Module, D: torch.nn.Module) -> dict[str, Any]:
    """The resolved config plus the exact architecture arguments (enough to rebuild both models)."""
    return {"train": cfg.to_dict(), "generator": dict(G.config), "discriminator": dict(D.config)}


def get_rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                      "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
            "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))


def save_checkpoint(state: dict[str, Any], ckpt_dir: Path, step: int, keep: int) -> Path:
    """Write step_{N:08d}.pt atomically, point latest.pt at it, keep the newest `keep` step files."""
    root = ckpt_dir.parent  # the run folder: nothing below it is followed if it is a link
    makedirs(ckpt_dir, root)
    remove_leftovers(ckpt_dir, lambda target: target == "latest.pt" or target.startswith("step_"))  # a killed save's
    path = ckpt_dir / f"step_{step:08d}.pt"
    with atomic_file(path, root) as f:
        torch.save(state, f)
    latest_tmp = ckpt_dir / f"latest.pt.{uuid.uuid4().hex[:12]}.tmp"
    try:
        os.link(path, latest_tmp)  # a hard link: no second copy on disk (a new name: never through a link)
    except OSError:
        with atomic_file(latest_tmp, root) as f, open(path, "rb") as src:
            shutil.copyfileobj(src, f)
    os.replace(latest_tmp, ckpt_dir / "latest.pt")
    fsync_dir(ckpt_dir)  # make the rename durable
    for old in sorted(ckpt_dir.glob("step_*.pt"))[:-keep]:
        old.unlink()
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, loaded with weights_only=True; CheckpointError (one line) otherwise."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint is a directory, expected a file: {path} (e.g. {path}/latest.pt?)")
    problem = file_problem(path)
    if problem in ("no such file", "broken symbolic link"):
        raise CheckpointError(f"checkpoint not found: {path}")
    if problem:  # a FIFO would block the read; a link loop is not "not found"
        raise CheckpointError(f"{path}: cannot read checkpoint ({problem})")
    try:
        ck = torch_load(path)
    except UnreadableFile as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from None
    config = ck.get("config") if isinstance(ck, dict) else None
    if (not isinstance(ck, dict) or not isinstance(ck.get("G"), dict) or not isinstance(config, dict)
            or not isinstance(config.get("generator"), dict)):
        raise CheckpointError(f"{path}: not a hifacegan training checkpoint")
    return ck


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str, source: Path | str) -> None:
    """load_state_dict with an error that names mismatching parameter shapes (another architecture), an
    entry that is not a tensor, or weights that are not finite (a run that diverged)."""
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{source}: {what} entry {k!r} is of type {type(v).__name__}, not a tensor "
                                  "(not a hifacegan checkpoint, or a damaged one)")
    bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise CheckpointError(f"{source}: {what} has non-finite weights (NaN or inf, first in {bad}): the run "
                              "diverged before this checkpoint was saved; use an earlier checkpoint")
    own = model.state_dict()
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
              for k, v in state.items() if k in own and v.shape != own[k].shape]
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if shapes or missing or extra:
        parts = ([f"shape mismatch {'; '.join(shapes[:3])}" + (f" (+{len(shapes) - 3} more)" if len(shapes) > 3 else "")]
                 if shapes else [])
        parts += [f"missing {', '.join(missing[:3])}"] if missing else []
        parts += [f"unexpected {', '.join(extra[:3])}"] if extra else []
        raise CheckpointError(f"{source}: {what} is from another architecture: {'; '.join(parts)}")
    model.load_state_dict(state)


def generator_weights(ck: dict[str, Any], ema: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """The generator to use from a training checkpoint and which one it is: its EMA generator ("ema")
    when it has one and `ema` is true (the default of restore, eval, export), else the raw G ("raw")."""
    if ema and isinstance(ck.get(EMA_KEY), dict):
        return ck[EMA_KEY], "ema"
    return ck["G"], "raw"
