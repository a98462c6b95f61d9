"""CUDA checks: skipped without a GPU (CI has none); run them on a lent GPU with `pytest tests/test_cuda.py`.

The same code paths (bf16 autocast, channels_last) also run on CPU in test_train.py.
"""

from __future__ import annotations

import pytest
import torch
from _shards import write_shards

from hifacegan.config import resolve_config
from hifacegan.train import load_checkpoint, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
LOSSES = ("g_gan", "g_feat", "g_l1", "d_real", "d_fake")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards"), 8, 2, per_shard=2)


def _cfg(shards, out, **kw):
    base = dict(data=str(shards), out=str(out), size=64, ngf=8, ndf=8, batch_size=2, workers=1, log_every=1,
                sample_every=1000, val_every=2, val_samples=2, ckpt_every=2)
    return resolve_config(None, {**base, **kw})


def test_cuda_training_uses_bf16_channels_last_and_logs_memory(shards, tmp_path):
    result = train(_cfg(shards, tmp_path / "run", max_steps=2), progress=False)
    assert all(torch.isfinite(torch.tensor(result[k])) for k in LOSSES), result
    assert result["peak_mem_gb"] > 0
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert ck["step"] == 2 and ck["rng"][0]["cuda"], "CUDA RNG state must be saved"
    assert all(t.device.type == "cpu" for t in ck["G"].values()), "checkpoints load anywhere"


def test_cuda_resume_continues_close_to_uninterrupted(shards, tmp_path):
    full = train(_cfg(shards, tmp_path / "full", max_steps=4), progress=False)
    train(_cfg(shards, tmp_path / "part", max_steps=4), progress=False, until=2)
    resumed = train(_cfg(shards, tmp_path / "part", max_steps=4, resume=True), progress=False)
    # cudnn.benchmark may pick other kernels after a restart: float-level, not bitwise, agreement
    for k in LOSSES:
        assert abs(full[k] - resumed[k]) <= 0.15 * abs(full[k]) + 0.02, (k, full[k], resumed[k])
