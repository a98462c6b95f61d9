"""Generator-only weights: read the generator of a run, a training checkpoint or an exported file alike,
and export it as safetensors (with its config as metadata) and as an ONNX graph.

>>> # w = read_weights("runs/x")                      # RUN_DIR, CKPT or G.safetensors; EMA when present
>>> # export_safetensors(w, "G.safetensors")
>>> # G = build_from_weights(w); export_onnx(G, w, "G.onnx")
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from facedeg.files import atomic_file
from hifacegan.checkpoint import generator_weights, load_checkpoint, load_state
from hifacegan.errors import CheckpointError, HiFaceGANError
from hifacegan.models import build_generator

FORMAT = "hifacegan-generator"
FORMAT_VERSION = "1"
ONNX_OPSET = 18
ONNX_INPUT, ONNX_OUTPUT = "lq", "restored"
ONNX_TOLERANCE = 1e-3  # max |onnxruntime - PyTorch| accepted on the [-1, 1] or [0, 1] output scale


@dataclass
class GeneratorWeights:
    """A generator's state dict with what is needed to rebuild and run it."""

    state: dict[str, torch.Tensor]
    arch: dict[str, Any]  # build_generator(**arch)
    step: int
    ema: bool  # the EMA generator's weights (False: the raw G)
    source: Path
    checkpoint: dict[str, Any] | None = None  # the whole training checkpoint, when read from one

    @property
    def io_range(self) -> str:
        """The value range the weights were trained for (see hifacegan.models.generator)."""
        return str(self.arch.get("io_range", "signed"))

    def describe(self) -> str:
        a = self.arch
        return (f"step {self.step}, {'EMA' if self.ema else 'raw'} weights, {a.get('variant')} ngf {a.get('ngf')} "
                f"at {a.get('size')}px, io_range {self.io_range}")

    def metadata(self) -> dict[str, str]:
        """safetensors / ONNX metadata: string keys and values only."""
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "generator": json.dumps(self.arch),
                "io_range": self.io_range, "step": str(self.step), "weights": "ema" if self.ema else "raw",
                "source": self.source.name}


def resolve_source(path: str | Path) -> Path:
    """RUN_DIR -> RUN_DIR/checkpoints/latest.pt; a file -> itself."""
    p = Path(path)
    if p.is_dir():
        latest = p / "checkpoints" / "latest.pt"
        if latest.is_file():
            return latest
        raise CheckpointError(f"{p}: a folder without checkpoints/latest.pt (expected a run folder, "
                              "a checkpoint or an exported .safetensors file)")
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def is_safetensors(path: Path) -> bool:
    """True when the file starts like safetensors: an 8-byte header length, then a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 2 <= struct.unpack("<Q", head[:8])[0] <= path.stat().st_size - 8


def read_weights(path: str | Path, ema: bool = True) -> GeneratorWeights:
    """The generator of a run folder, a training checkpoint or an exported file; the EMA weights when
    the checkpoint has them and `ema` is True. One-line CheckpointError on anything unusable."""
    p = resolve_source(path)
    if is_safetensors(p):
        return _read_exported(p)
    ck = load_checkpoint(p)
    state, which = generator_weights(ck, ema)
    try:
        step = int(ck.get("step", 0))
    except (TypeError, ValueError, RuntimeError):
        raise CheckpointError(f"{p}: not a hifacegan training checkpoint (step is {ck['step']!r})") from None
    return GeneratorWeights(state=state, arch=dict(ck["config"]["generator"]),
                            step=step, ema=which == "ema", source=p, checkpoint=ck)


def _read_exported(p: Path) -> GeneratorWeights:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{p}: unreadable safetensors file ({str(exc).splitlines()[0][:200]})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{p}: a safetensors file without hifacegan metadata (format is "
                              f"{meta.get('format')!r}, expected {FORMAT!r}); write it with `hifacegan export`")
    try:
        arch = json.loads(meta["generator"])
        step = int(meta.get("step", "0"))
        if not isinstance(arch, dict):
            raise ValueError(arch)
    except (KeyError, ValueError):
        raise CheckpointError(f"{p}: bad hifacegan metadata (generator: {meta.get('generator')!r})") from None
    return GeneratorWeights(state=state, arch=arch, step=step, ema=meta.get("weights") == "ema", source=p)


def build_from_weights(w: GeneratorWeights, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The generator rebuilt from `w.arch` with `w.state` loaded, in eval mode on `device`."""
    try:
        G = build_generator(**w.arch)
    except (TypeError, ValueError, RuntimeError) as exc:  # RuntimeError: sizes too large to allocate
        raise HiFaceGANError(f"{w.source}: bad generator architecture {w.arch}: {str(exc).splitlines()[0]}") from None
    load_state(G, w.state, "generator", w.source)
    return G.to(device).eval()


def export_safetensors(w: GeneratorWeights, out: str | Path) -> Path:
    """Write the generator's tensors and metadata to `out` (atomically: complete or absent)."""
    from safetensors.torch import save

    out = Path(out)
    state = {k: v.detach().cpu().contiguous() for k, v in w.state.items()}
    data = save(state, metadata=w.metadata())
    with atomic_file(out) as f:
        f.write(data)
    return out


def plain_copy(G: torch.nn.Module) -> torch.nn.Module:
    """A copy of G in eval mode on the CPU with spectral norm folded into the weights (what the ONNX
    graph computes; the training-time power iteration is gone). Rebuilt, not deep-copied: removing a
    parametrization from a deep copy would break the original, whose injected class it shares."""
    from torch.nn.utils import parametrize

    copy = build_generator(**G.config)
    copy.load_state_dict(G.state_dict())
    copy.eval()
    for m in list(copy.modules()):
        if parametrize.is_parametrized(m):
            for name in list(m.parametrizations.keys()):
                parametrize.remove_parametrizations(m, name, leave_parametrized=True)
    return copy


def export_onnx(G: torch.nn.Module, w: GeneratorWeights, out: str | Path, opset: int = ONNX_OPSET) -> Path:
    """ONNX graph of G (torch.export-based exporter): input `lq`, output `restored`, float32
    B x 3 x size x size with a dynamic batch, in the value range `w.io_range` ([-1, 1] for signed, [0, 1] for
    unit); the same metadata as the safetensors file. Spectral norm is folded into the weights."""
    try:
        import onnx
        import onnxscript  # noqa: F401 (the exporter needs it)
    except ImportError as exc:
        raise HiFaceGANError(f"--onnx needs the onnx and onnxscript packages ({exc.name} is not installed): "
                             "pip install -e '.[onnx]'") from None
    import logging
    import warnings

    out = Path(out)
    model = plain_copy(G)
    size = G.config["size"]
    example = torch.zeros(1, 3, size, size)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # e.g. "torchvision is not installed. Skipping torchvision::nms"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset, verbose=False,
                                        input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                                        dynamic_shapes={"lq": {0: torch.export.Dim("batch")}})
    finally:
        quiet.setLevel(level)
    proto = program.model_proto
    for key, value in w.metadata().items():
        proto.metadata_props.add(key=key, value=value)
    with atomic_file(out) as f:
        f.write(proto.SerializeToString())
    onnx.checker.check_model(str(out))
    return out


def onnx_max_diff(path: str | Path, G: torch.nn.Module, batch: int = 2, seed: int = 0) -> float:
    """Max |ONNX Runtime - PyTorch| (CPU, float32) on a seeded random batch in the model's input range."""
    import numpy as np
    import onnxruntime as ort

    size = G.config["size"]
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    if G.config.get("io_range", "signed") == "signed":
        x = x * 2 - 1
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {ONNX_INPUT: x.numpy()})[0]
    with torch.no_grad():
        want = G.eval()(x.to(next(G.parameters()).device)).float().cpu().numpy()
    return float(np.abs(got - want).max())


def init_models(G: torch.nn.Module, D: torch.nn.Module, source: str | Path, init_d: bool = False) -> str:
    """Fine-tuning start (`train --init`): load the generator of `source` (run folder, checkpoint or
    exported file; EMA weights when present) into G, and with `init_d` the checkpoint's discriminator
    into D (otherwise D keeps its fresh initialisation). The architecture must match the run's, except
    the image size (the generator's weights do not depend on it). G (and with `init_d`, D) adopt the
    weights' `io_range`: the trainer converts its [-1, 1] batches for them (hifacegan.infer.signed_view).
    Returns a one-line summary."""
    w = read_weights(source, ema=True)
    differ = [k for k in w.arch if k not in ("size", "io_range") and w.arch[k] != G.config.get(k)]
    if differ:
        what = "; ".join(f"{k} {w.arch[k]} (--init) vs {G.config.get(k)} (this run)" for k in differ)
        options = " ".join(f"--{k.replace('_', '-')} {w.arch[k]}" for k in differ)
        raise CheckpointError(f"--init {source}: another generator: {what}; train with {options}")
    load_state(G, w.state, "generator", w.source)
    G.config["io_range"] = w.io_range  # the weights only work in their own value range
    if init_d:
        if w.checkpoint is None or not isinstance(w.checkpoint.get("D"), dict):
            raise CheckpointError(f"--init-d: {w.source} holds no discriminator (an exported generator); "
                                  "pass a training checkpoint or run folder to --init, or drop --init-d")
        load_state(D, w.checkpoint["D"], "discriminator", w.source)
        D.config["io_range"] = w.checkpoint["config"].get("discriminator", {}).get("io_range", w.io_range)
    return f"initialised G from {w.source} ({w.describe()}), D {'from it too' if init_d else 'from scratch'}"


def onnx_summary(G: torch.nn.Module) -> str:
    """The graph's interface in words."""
    size, lo = G.config["size"], "-1" if G.config.get("io_range", "signed") == "signed" else "0"
    return (f"input '{ONNX_INPUT}' and output '{ONNX_OUTPUT}': float32 B x 3 x {size} x {size} RGB in [{lo}, 1]")


def onnx_check(path: str | Path, G: torch.nn.Module) -> str:
    """Run the graph with onnxruntime when it is installed and say how far it is from PyTorch."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "not checked: onnxruntime is not installed"
    diff = onnx_max_diff(path, G)
    if diff > ONNX_TOLERANCE:
        raise HiFaceGANError(f"{path}: onnxruntime's output differs from PyTorch's by {diff:.2g} "
                             f"(more than {ONNX_TOLERANCE}); please report this")
    return f"onnxruntime vs PyTorch on CPU: max |diff| {diff:.1e}"
