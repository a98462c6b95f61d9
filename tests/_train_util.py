"""Tiny training runs for the trainer tests: a 64 px, ngf 8 config on a few shards."""

from __future__ import annotations

from pathlib import Path

from _shards import write_shards

from hifacegan.config import TrainConfig, resolve_config

TINY = dict(size=64, ngf=8, ndf=8, batch_size=2, workers=0, log_every=1, sample_every=1000, val_every=1000,
            val_samples=2)


def tiny_shards(root: Path) -> Path:
    """8 train + 2 val samples, 2 per shard."""
    return write_shards(root, 8, 2, per_shard=2)


def tiny(shards: Path, out: Path, **kw) -> TrainConfig:
    return resolve_config(None, {"data": str(shards), "out": str(out), **TINY, **kw})
