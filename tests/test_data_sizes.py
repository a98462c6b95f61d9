"""hifacegan's loader and LQ sizes other than the HQ's: SR-shaped shards, mismatched pairs (issue 8 item 5)."""

from __future__ import annotations

import logging
from itertools import islice
from pathlib import Path

import pytest

pytest.importorskip("torch")

from _shards import write_shards  # noqa: E402

from facedeg.build import BuildConfig, build  # noqa: E402
from hifacegan import data  # noqa: E402


def test_sr_shaped_shards_feed_the_trainer_at_model_size(tmp_path: Path, caplog) -> None:
    out = tmp_path / "sr"
    build(BuildConfig(recipe="realesrgan", out=out, size=64, variants=2, val_fraction=0.3, shard_size=4))
    with caplog.at_level(logging.WARNING, logger="hifacegan.data"):
        batches = list(islice(data.train_loader(str(out), 64, 2, workers=0, seed=0), 3))
        val = list(data.val_batches(str(out), 32, 2, limit=2))
    assert all(b["lq"].shape == b["hq"].shape == (2, 64, 64, 3) for b in batches)
    assert val[0]["lq"].shape == (2, 32, 32, 3)
    said = [r.getMessage() for r in caplog.records if "brought to the HQ size with bicubic" in r.getMessage()]
    assert len(said) == 1 and "16x16" in said[0]  # said once, not per sample
    assert batches[-1]["skipped"] == 0


def test_mismatched_pairs_are_skipped_and_counted(tmp_path: Path, caplog) -> None:
    root = write_shards(tmp_path / "mixed", 4, 0, per_shard=4,
                        lq_shapes={"00000001": (32, 20), "00000002": (80, 80), "00000003": (16, 16)})
    with caplog.at_level(logging.WARNING, logger="hifacegan.data"):
        batches = list(islice(data.train_loader(str(root), 64, 1, workers=0, seed=0, shuffle_buffer=1), 2))
    assert [k for b in batches for k in b["keys"]] == ["00000000", "00000003"]  # 16x16 is a 4x LQ: used
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "mismatched pair: LQ 20x32" in messages and "mismatched pair: LQ 80x80" in messages
    assert batches[-1]["skipped"] == 2
