"""Import the authors' released HiFaceGAN weights (github Lotayou/Face-Renovation) as a checkpoint of ours.

Their ``latest_net_G.pth`` / ``latest_net_D.pth`` are ``torch.save(net.state_dict())`` files of the same
layer topology under other names, with three differences that the conversion takes care of:

- spectral norm in the old ``weight_orig`` / ``weight_u`` / ``weight_v`` form (ours: a parametrization);
- their SPADE computes ``norm * gamma + beta`` with bias-free gamma/beta convs, ours
  ``norm * (1 + gamma) + beta`` with biases: a gamma bias of -1 and a beta bias of 0 make them equal;
- their encoder-stage convs have biases that the following instance norm cancels (dropped here).

Their param-free norm is a (sync) batch norm that their test script runs in train mode at batch 1, i.e.
an instance norm: ``norm="instance"`` (the default) reproduces that and drops the running statistics;
``norm="batch"`` keeps them (their eval-mode behaviour). They feed RGB in [0, 1] and read the tanh output
as [0, 1], which no weight change can turn into our [-1, 1]: the imported generator records
``io_range: unit`` and every consumer converts through :mod:`hifacegan.infer`.

Nothing of theirs is stored here: only the names and shapes of their tensors, to map them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from facedeg.files import atomic_file
from hifacegan.errors import CheckpointError
from hifacegan.models import MultiscaleDiscriminator, build_generator
from hifacegan.models.generator import N_DOWN, VARIANTS
from hifacegan.weights import check_state, load_state_file

AUTHORS_SIZE = 512  # their crop_size; no tensor depends on it, so it cannot be read from a file
AUTHORS_RANGE = "unit"
# Our spectral-norm parametrization names -> their old-style hook names.
_SN = {"parametrizations.weight.original": "weight_orig", "parametrizations.weight.0._u": "weight_u",
       "parametrizations.weight.0._v": "weight_v"}
_SN_RE = re.compile(r"\.(parametrizations\.weight\.(?:original|0\._u|0\._v))$")
_TRUNK = (("trunk.head.", "head_0."), ("trunk.middle.", "G_middle_"), ("trunk.up_blocks.", "ups."),
          ("trunk.to_rgb.", f"to_rgbs.{N_DOWN - 2}."))
_SPADE = ((".shared.", ".mlp_shared."), (".gamma.", ".mlp_gamma."), (".beta.", ".mlp_beta."),
          (".norm.", ".param_free_norm."))
_LIP_STAGE = 4  # their LIPEncoder is one Sequential: head (3 modules), then LIP, conv, norm[, ReLU] per stage


def _sn(key: str) -> str:
    return _SN_RE.sub(lambda m: "." + _SN[m.group(1)], key)


def generator_key(ours: str, variant: str) -> str:
    """The authors' name of our generator tensor ``ours``."""
    if ours.startswith("trunk."):
        key = ours
        for mine, theirs in _TRUNK:
            if key.startswith(mine):
                key = theirs + key[len(mine):]  # e.g. trunk.middle.0. -> G_middle_0.
                break
        for mine, theirs in _SPADE:
            key = key.replace(mine, theirs)
        return _sn(key)
    if ours.startswith("from_lq."):
        return "fc." + ours[len("from_lq."):]
    if variant == "hifacegan":  # suppressor.head.* / suppressor.stages.i.* -> encoder.head.* / encoder.encoder_i.*
        return re.sub(r"^suppressor\.stages\.(\d+)\.", r"encoder.encoder_\1.", ours).replace("suppressor.", "encoder.")
    m = re.match(r"^encoder\.(head|stages\.(\d+))\.(\d+)\.(.*)$", ours)
    if not m:
        raise KeyError(ours)
    index = int(m.group(3)) if m.group(1) == "head" else 3 + _LIP_STAGE * int(m.group(2)) + int(m.group(3))
    return f"lip_encoder.model.{index}.{m.group(4)}"


def _dropped_generator_key(key: str, variant: str, norm: str) -> bool:
    """Authors' tensors with no counterpart: unused output heads, lipspade's unused ``fc``, biases that
    an instance norm cancels, and (for ``norm="instance"``) the batch-norm running statistics."""
    if re.match(rf"^to_rgbs\.[0-{N_DOWN - 3}]\.", key) or (variant == "lipspade" and key.startswith("fc.")):
        return True
    if re.match(r"^encoder\.encoder_\d+\.1\.bias$", key):
        return True
    m = re.match(r"^lip_encoder\.model\.(\d+)\.bias$", key)
    if m and int(m.group(1)) >= 3 and (int(m.group(1)) - 3) % _LIP_STAGE == 1:
        return True
    return norm == "instance" and ".param_free_norm." in key


def _generated(key: str) -> bool:
    """Our SPADE gamma/beta biases: set by the conversion, absent from their files."""
    return key.endswith((".gamma.bias", ".beta.bias"))


def infer_generator(state: Mapping[str, Any]) -> tuple[str, int]:
    """(variant, ngf) read from the names and shapes of an authors' generator state dict."""
    for variant, key in (("hifacegan", "encoder.head.0.weight"), ("lipspade", "lip_encoder.model.0.weight")):
        w = state.get(key)
        if isinstance(w, torch.Tensor) and w.ndim == 4:
            return variant, int(w.shape[0])
    raise ValueError("cannot tell the variant: neither encoder.head.0.weight (hifacegan) nor "
                     "lip_encoder.model.0.weight (lipspade) is there; not an authors' generator state dict?")


def _strip_module(state: Mapping[str, Any]) -> dict[str, Any]:
    keys = [str(k) for k in state]
    if keys and all(k.startswith("module.") for k in keys):  # saved from a DataParallel wrapper
        return {str(k)[len("module."):]: v for k, v in state.items()}
    return {str(k): v for k, v in state.items()}


def _as_ours(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return value.detach().to(like.dtype).clone()


def convert_generator(state: Mapping[str, Any], source: str, variant: str | None = None, ngf: int | None = None,
                      size: int = AUTHORS_SIZE, norm: str = "instance") -> torch.nn.Module:
    """Our generator (``io_range: unit``) holding the weights of an authors' generator state dict.

    ``variant`` and ``ngf`` default to what the tensors say. ValueError (one line naming the unknown,
    missing or mis-shaped tensors) when the state dict does not fit."""
    state = _strip_module(state)
    if variant is None or ngf is None:
        try:
            found_variant, found_ngf = infer_generator(state)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
        variant, ngf = variant or found_variant, ngf or found_ngf
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    if norm not in ("instance", "batch"):
        raise ValueError(f"norm must be instance or batch, got {norm!r}")
    G = build_generator(variant, ngf, size, norm, io_range=AUTHORS_RANGE)
    own = G.state_dict()
    names = {k: generator_key(k, variant) for k in own if not _generated(k)}
    tensors = check_state(state, {names[k]: tuple(own[k].shape) for k in names},
                          source, f"an authors' {variant} generator (ngf {ngf}) state dict",
                          ignore=lambda key: _dropped_generator_key(key, variant, norm))
    converted = {k: _as_ours(tensors[names[k]], own[k]) for k in names}
    for k in own:
        if _generated(k):  # theirs: norm*gamma + beta; ours: norm*(1 + gamma) + beta
            converted[k] = torch.full_like(own[k], -1.0 if k.endswith(".gamma.bias") else 0.0)
    G.load_state_dict(converted)
    return G


def discriminator_key(ours: str) -> str:
    """The authors' name of our discriminator tensor ``ours`` (scales.i.layers.n.* -> discriminator_i.modeln.*)."""
    m = re.match(r"^scales\.(\d+)\.layers\.(\d+)\.0\.(.*)$", ours)
    if not m:
        raise KeyError(ours)
    scale, layer, rest = m.groups()
    inner = "0.0." if rest.startswith("parametrizations.") else "0."  # their norm layers nest (conv, norm)
    return _sn(f"discriminator_{scale}.model{layer}.{inner}{rest}")


def infer_discriminator(state: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """(in_channels, ndf, n_layers, num_d) read from an authors' multi-scale discriminator state dict."""
    first = state.get("discriminator_0.model0.0.weight")
    if not (isinstance(first, torch.Tensor) and first.ndim == 4):
        raise ValueError("no discriminator_0.model0.0.weight: not an authors' multi-scale discriminator state dict?")
    scales = {int(m.group(1)) for k in state if (m := re.match(r"^discriminator_(\d+)\.", k))}
    layers = {int(m.group(1)) for k in state if (m := re.match(r"^discriminator_0\.model(\d+)\.", k))}
    return int(first.shape[1]), int(first.shape[0]), max(layers), max(scales) + 1


def convert_discriminator(state: Mapping[str, Any], source: str) -> torch.nn.Module:
    """Our multi-scale discriminator holding the weights of an authors' one (same input range as theirs)."""
    state = _strip_module(state)
    try:
        in_channels, ndf, n_layers, num_d = infer_discriminator(state)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    if n_layers < 1:
        raise ValueError(f"{source}: discriminator_0 has a single layer: not an authors' discriminator")
    D = MultiscaleDiscriminator(in_channels, ndf, n_layers, num_d, io_range=AUTHORS_RANGE)
    own = D.state_dict()
    names = {k: discriminator_key(k) for k in own}
    tensors = check_state(state, {names[k]: tuple(own[k].shape) for k in names}, source,
                          f"an authors' discriminator ({num_d} scales, ndf {ndf}, {n_layers} layers) state dict")
    D.load_state_dict({k: _as_ours(tensors[names[k]], own[k]) for k in names})
    return D


def import_original(generator: str | Path, discriminator: str | Path | None = None, variant: str | None = None,
                    ngf: int | None = None, size: int = AUTHORS_SIZE, norm: str = "instance") -> dict[str, Any]:
    """A checkpoint of ours (``G``, optionally ``D``, ``step`` 0 and ``config``) converted from the
    authors' G (and D) files; :func:`hifacegan.restore.load_generator` and the trainer read it.
    CheckpointError (one line naming the file and tensors) for a file that cannot be used."""
    try:
        G = convert_generator(load_state_file(generator, "generator"), str(generator), variant, ngf, size, norm)
        D = (convert_discriminator(load_state_file(discriminator, "discriminator"), str(discriminator))
             if discriminator is not None else None)
    except ValueError as exc:
        raise CheckpointError(str(exc).splitlines()[0]) from None
    config: dict[str, Any] = {"generator": dict(G.config),
                              "imported": {"from": "Lotayou/Face-Renovation", "generator": str(generator),
                                           "discriminator": str(discriminator) if discriminator else None}}
    ck: dict[str, Any] = {"G": G.state_dict(), "step": 0, "config": config}
    if D is not None:
        config["discriminator"] = dict(D.config)
        ck["D"] = D.state_dict()
    return ck


def save_imported(ck: dict[str, Any], out: str | Path) -> None:
    """Write a checkpoint from :func:`import_original` atomically (an OSError names the file)."""
    with atomic_file(Path(out)) as f:
        torch.save(ck, f)
