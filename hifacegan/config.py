"""Training configuration: one dataclass, filled from defaults, then a YAML file, then CLI options.

>>> cfg = resolve_config(None, {"data": "shards/", "out": "runs/x", "size": 64, "ngf": 8})
>>> cfg.size, cfg.ngf, cfg.lr_g
(64, 8, 0.0001)
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facedeg.files import file_problem
from facedeg.yamlfile import read_yaml
from hifacegan.errors import ConfigError


@dataclass
class TrainConfig:
    # data
    data: str = ""  # DIR with dataset.json, or shard URLs / brace pattern / glob
    out: str = ""  # run directory (checkpoints/, log.jsonl, samples/)
    val_data: str | None = None  # default: DIR's val shards when --data is a DIR
    degrade: str | None = None  # on-the-fly: facedeg recipe applied to HQ-only shards or an image folder
    workers: int = 4
    shuffle_buffer: int = 256
    # model
    variant: str = "hifacegan"
    size: int = 512
    ngf: int = 48
    norm: str = "instance"
    ndf: int = 64
    d_layers: int = 4
    num_d: int = 2
    # optimisation
    batch_size: int = 2  # per rank
    max_steps: int = 250_000
    decay_start: float = 0.6  # fraction of max_steps after which the LR decays linearly to 0
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.9)
    gan_mode: str = "lsgan"
    # generator loss weights: each `w_<term>` multiplies the term `<term>` of losses.generator_loss
    w_gan: float = 1.0
    w_feat: float = 10.0
    w_vgg: float = 10.0
    w_l1: float = 10.0  # pixel L1, used only when there is no VGG
    vgg_weights: str | None = None
    # runtime
    seed: int = 0
    device: str = "auto"  # auto | cuda | cpu
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    channels_last: str = "auto"  # auto (on CUDA) | on | off
    compile: bool = False
    resume: bool = False
    init: str | None = None  # fine-tune from this run folder, checkpoint or exported generator
    init_d: bool = False  # with init: also load its discriminator (a training checkpoint)
    # logging and checkpoints
    log_every: int = 50
    ckpt_every: int = 2000
    keep_ckpts: int = 3
    sample_every: int | None = None  # captioned LQ | output | HQ grid; default: see auto_every
    val_every: int | None = None  # val PSNR/SSIM (+ LPIPS, FID with their files); default: see auto_every
    val_samples: int = 64
    lpips_alexnet: str | None = None  # with lpips_linear: LPIPS at each validation
    lpips_linear: str | None = None
    fid_inception: str | None = None  # FID of the val outputs at each validation
    ema_decay: float = 0.999  # EMA generator (validation, samples, restore, eval use it); 0: off
    wandb: str | None = None  # also log to this Weights & Biases project (needs the wandb package)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


CHOICES = {
    "variant": ("hifacegan", "lipspade"),
    "norm": ("instance", "batch", "syncbatch"),
    "gan_mode": ("lsgan", "hinge"),
    "device": ("auto", "cuda", "cpu"),
    "precision": ("auto", "bf16", "fp32"),
    "channels_last": ("auto", "on", "off"),
}
POSITIVE = ("workers", "size", "ngf", "ndf", "d_layers", "num_d", "batch_size", "max_steps", "log_every",
            "ckpt_every", "keep_ckpts", "sample_every", "val_every", "shuffle_buffer", "val_samples")
LOSS_PREFIX = "w_"
OPTIONAL_INTS = ("val_every", "sample_every")  # None: a default worked out from others


def loss_weights(cfg: TrainConfig) -> dict[str, float]:
    """The generator loss weights by term name (``{"gan": 1.0, "feat": 10.0, ...}``), from every
    ``w_<term>`` field: a new loss term is its function in losses.py plus one ``w_`` field here."""
    return {f.name[len(LOSS_PREFIX):]: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if f.name.startswith(LOSS_PREFIX)}


NON_NEGATIVE = ("lr_g", "lr_d", *(f.name for f in dataclasses.fields(TrainConfig) if f.name.startswith(LOSS_PREFIX)))


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def _apply(cfg: TrainConfig, values: dict[str, Any], source: str) -> None:
    fields = _fields()
    for raw_key, value in values.items():
        key = str(raw_key).replace("-", "_")
        if key not in fields:
            raise ConfigError(f"{source}: unknown key '{raw_key}' (valid keys: {', '.join(sorted(fields))})")
        default = getattr(TrainConfig(), key)
        try:
            value = _coerce(value, default, key)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: key '{raw_key}': {exc}") from None
        setattr(cfg, key, value)


def _coerce(value: Any, default: Any, key: str) -> Any:
    if value is None:
        return None
    if key == "betas":
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise ValueError(f"expected two numbers, got {value!r}")
        return (float(value[0]), float(value[1]))
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"expected true/false, got {value!r}")
        return value
    if isinstance(default, int) or key in OPTIONAL_INTS:
        if isinstance(value, bool) or not float(value).is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if not isinstance(value, str | Path):
        raise ValueError(f"expected a string, got {value!r}")
    return str(value)


AUTO_EVERY = {"val_every": 2000, "sample_every": 1000}  # the most steps between two, on long runs


def auto_every(max_steps: int, cap: int) -> int:
    """The default validation / sample cadence: ten per run (the first at 10 % of it), at least every
    `cap` steps. A 1000-step run shows 10 of each, a 250k-step one validates every 2000 steps."""
    return max(1, min(cap, max_steps // 10))


def validate(cfg: TrainConfig) -> TrainConfig:
    for key, cap in AUTO_EVERY.items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, auto_every(cfg.max_steps, cap))
    if not cfg.data:
        raise ConfigError("no training data: pass --data DIR|PATTERN (or 'data:' in the config file)")
    if not cfg.out:
        raise ConfigError("no run directory: pass --out RUN_DIR (or 'out:' in the config file)")
    for key, choices in CHOICES.items():
        if getattr(cfg, key) not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(choices)}, got '{getattr(cfg, key)}'")
    for key in POSITIVE:
        value = getattr(cfg, key)
        if value < (0 if key == "workers" else 1):
            raise ConfigError(f"{key} must be {'>= 0' if key == 'workers' else 'positive'}, got {value}")
    if cfg.seed < 0:
        raise ConfigError(f"seed must be >= 0, got {cfg.seed}")
    for key in NON_NEGATIVE:
        value = getattr(cfg, key)
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{key} must be a finite number >= 0, got {value}")
    if not all(0.0 <= b < 1.0 for b in cfg.betas):
        raise ConfigError(f"betas must both be in [0, 1), got {list(cfg.betas)}")
    if cfg.size % 32 != 0 or cfg.size < 64:
        raise ConfigError(f"size must be a multiple of 32 and at least 64, got {cfg.size}")
    if not 0.0 <= cfg.decay_start <= 1.0:
        raise ConfigError(f"decay_start must be in [0, 1], got {cfg.decay_start}")
    for key in ("vgg_weights", "lpips_alexnet", "lpips_linear", "fid_inception"):
        if getattr(cfg, key) and (problem := file_problem(getattr(cfg, key))):
            raise ConfigError(f"--{key.replace('_', '-')}: {'file not found' if problem == 'no such file' else problem}: "
                              f"{getattr(cfg, key)}")
    if (cfg.lpips_alexnet is None) != (cfg.lpips_linear is None):
        raise ConfigError("--lpips-alexnet and --lpips-linear go together: pass both files, or neither")
    if not (cfg.ema_decay == 0 or 0 < cfg.ema_decay < 1):
        raise ConfigError(f"ema_decay must be in (0, 1), or 0 for no EMA generator, got {cfg.ema_decay}")
    if cfg.wandb is not None and importlib.util.find_spec("wandb") is None:
        raise ConfigError("--wandb: the wandb package is not installed (pip install wandb), or leave out --wandb")
    if cfg.init and not Path(cfg.init).exists():
        raise ConfigError(f"--init: not found: {cfg.init}")
    if cfg.init_d and not cfg.init:
        raise ConfigError("--init-d loads the discriminator of the --init checkpoint: pass --init too")
    return cfg


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A training config file, read within facedeg's YAML limits (size, nesting, aliases; strict keys)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file not found: {p}")
    data = read_yaml(p, ConfigError, "config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of option: value at the top level")
    return data


def resolve_config(config_file: str | Path | None, overrides: dict[str, Any], source: str = "option") -> TrainConfig:
    """Defaults, then the YAML file, then `overrides` (CLI options that were given; None means not given)."""
    cfg = TrainConfig()
    if config_file is not None:
        _apply(cfg, load_yaml(config_file), str(config_file))
    _apply(cfg, {k: v for k, v in overrides.items() if v is not None}, source)
    return validate(cfg)
