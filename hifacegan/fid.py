"""FID (Fréchet Inception Distance, Heusel et al. 2017) with the pytorch-fid InceptionV3, from a local file only.

Nothing is downloaded. The weights are the ``pt_inception-2015-12-05-6726825d.pth`` file of the
``pytorch-fid`` package (TensorFlow's 2015-12-05 Inception ported to PyTorch): a plain state dict in
torchvision's ``Inception3`` key layout (``Conv2d_1a_3x3.conv.weight``, ``Conv2d_1a_3x3.bn.running_var``,
``Mixed_5b.branch1x1.conv.weight``, ..., ``Mixed_7c.branch_pool.bn.bias``, ``fc.weight`` ``[1008, 2048]``);
472 tensors, plus ``*.bn.num_batches_tracked`` counters if the file has them (ignored). The classifier
(``fc``) is loaded for a strict layout check but not used.

The network is the FID variant, not torchvision's: every 3x3 average pool inside the Inception blocks
leaves the zero padding out of the average, and the pool branch of the last block (``Mixed_7c``) is a
3x3 max pool. Each conv is bias-free and followed by BatchNorm (eps 0.001) and ReLU. Inputs in [0, 1]
are resized bilinearly to 299x299 and mapped to [-1, 1]; the features are the 2048 channels after
``Mixed_7c``, averaged over space.

FID between two feature sets with means ``mu1, mu2`` and covariances ``S1, S2`` is
``|mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrt(S1 S2))``, computed in float64 without scipy.

>>> import torch
>>> net = InceptionV3Features()  # random weights here; InceptionV3Features.from_file(path) for real FIDs
>>> net(torch.rand(2, 3, 64, 64)).shape
torch.Size([2, 2048])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hifacegan.weights import FrozenModule, check_state, load_state_file

FEATURES = 2048
INPUT_SIZE = 299
MIN_SAMPLES = 2  # a covariance needs two samples
_BN_EPS = 1e-3
_CLASSES = 1008
_IGNORED_SUFFIX = ".num_batches_tracked"


class _Conv(NamedTuple):
    """One conv + BatchNorm + ReLU: its key prefix, output channels, kernel, stride and padding
    (``None``: "same" padding for stride 1, no padding for stride 2)."""

    name: str
    out: int
    kernel: int | tuple[int, int] = 1
    stride: int = 1
    padding: int | None = None


# A branch is a sequence of steps, each: a conv; a pair of convs applied to the same input whose outputs
# are concatenated; or a pool, named by a key of _POOLS. A block's branches all read the block's input
# and their outputs are concatenated over channels.
_Step = _Conv | tuple[_Conv, _Conv] | str
_Branch = tuple[_Step, ...]

_POOLS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "avg": lambda x: F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False),
    "max": lambda x: F.max_pool2d(x, 3, stride=1, padding=1),
    "max/2": lambda x: F.max_pool2d(x, 3, stride=2),
}

_STEM: _Branch = (
    _Conv("Conv2d_1a_3x3", 32, 3, stride=2), _Conv("Conv2d_2a_3x3", 32, 3, padding=0),
    _Conv("Conv2d_2b_3x3", 64, 3), "max/2",
    _Conv("Conv2d_3b_1x1", 80), _Conv("Conv2d_4a_3x3", 192, 3, padding=0), "max/2",
)


def _block_a(pool_features: int) -> tuple[_Branch, ...]:
    """Mixed_5b..5d (35x35)."""
    return ((_Conv("branch1x1", 64),),
            (_Conv("branch5x5_1", 48), _Conv("branch5x5_2", 64, 5)),
            (_Conv("branch3x3dbl_1", 64), _Conv("branch3x3dbl_2", 96, 3), _Conv("branch3x3dbl_3", 96, 3)),
            ("avg", _Conv("branch_pool", pool_features)))


def _block_b() -> tuple[_Branch, ...]:
    """Mixed_6a: 35x35 -> 17x17."""
    return ((_Conv("branch3x3", 384, 3, stride=2),),
            (_Conv("branch3x3dbl_1", 64), _Conv("branch3x3dbl_2", 96, 3), _Conv("branch3x3dbl_3", 96, 3, stride=2)),
            ("max/2",))


def _block_c(c7: int) -> tuple[_Branch, ...]:
    """Mixed_6b..6e (17x17), factorised 7x7 convs of width ``c7``."""
    row, col = (1, 7), (7, 1)
    return ((_Conv("branch1x1", 192),),
            (_Conv("branch7x7_1", c7), _Conv("branch7x7_2", c7, row), _Conv("branch7x7_3", 192, col)),
            (_Conv("branch7x7dbl_1", c7), _Conv("branch7x7dbl_2", c7, col), _Conv("branch7x7dbl_3", c7, row),
             _Conv("branch7x7dbl_4", c7, col), _Conv("branch7x7dbl_5", 192, row)),
            ("avg", _Conv("branch_pool", 192)))


def _block_d() -> tuple[_Branch, ...]:
    """Mixed_7a: 17x17 -> 8x8."""
    return ((_Conv("branch3x3_1", 192), _Conv("branch3x3_2", 320, 3, stride=2)),
            (_Conv("branch7x7x3_1", 192), _Conv("branch7x7x3_2", 192, (1, 7)), _Conv("branch7x7x3_3", 192, (7, 1)),
             _Conv("branch7x7x3_4", 192, 3, stride=2)),
            ("max/2",))


def _block_e(pool: str) -> tuple[_Branch, ...]:
    """Mixed_7b (average pool branch) and Mixed_7c (max pool branch in the FID network), 8x8."""
    return ((_Conv("branch1x1", 320),),
            (_Conv("branch3x3_1", 384), (_Conv("branch3x3_2a", 384, (1, 3)), _Conv("branch3x3_2b", 384, (3, 1)))),
            (_Conv("branch3x3dbl_1", 448), _Conv("branch3x3dbl_2", 384, 3),
             (_Conv("branch3x3dbl_3a", 384, (1, 3)), _Conv("branch3x3dbl_3b", 384, (3, 1)))),
            (pool, _Conv("branch_pool", 192)))


_MIXED: tuple[tuple[str, tuple[_Branch, ...]], ...] = (
    ("Mixed_5b", _block_a(32)), ("Mixed_5c", _block_a(64)), ("Mixed_5d", _block_a(64)),
    ("Mixed_6a", _block_b()),
    ("Mixed_6b", _block_c(128)), ("Mixed_6c", _block_c(160)), ("Mixed_6d", _block_c(160)), ("Mixed_6e", _block_c(192)),
    ("Mixed_7a", _block_d()), ("Mixed_7b", _block_e("avg")), ("Mixed_7c", _block_e("max")),
)


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics: keys ``weight``, ``bias``, ``running_mean``, ``running_var``
    (no ``num_batches_tracked``: the statistics are never updated)."""

    def __init__(self, channels: int, eps: float = _BN_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def _kernel(spec: _Conv) -> tuple[int, int]:
    return (spec.kernel, spec.kernel) if isinstance(spec.kernel, int) else spec.kernel


class BasicConv2d(nn.Module):
    """Bias-free conv, BatchNorm (eps 0.001), ReLU: keys ``conv.weight`` and ``bn.*``."""

    def __init__(self, c_in: int, spec: _Conv) -> None:
        super().__init__()
        kh, kw = _kernel(spec)
        pad = spec.padding if spec.padding is not None else ((kh // 2, kw // 2) if spec.stride == 1 else 0)
        self.conv = nn.Conv2d(c_in, spec.out, (kh, kw), stride=spec.stride, padding=pad, bias=False)
        self.bn = FrozenBatchNorm2d(spec.out)
        nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")  # random nets keep a usable scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _walk(branches: tuple[_Branch, ...], c_in: int) -> tuple[list[tuple[_Conv, int]], int]:
    """The convs of parallel ``branches`` fed ``c_in`` channels, each with its input channels, and the
    channels of the concatenated output."""
    convs: list[tuple[_Conv, int]] = []
    c_out = 0
    for branch in branches:
        c = c_in
        for step in branch:
            if isinstance(step, _Conv):
                convs.append((step, c))
                c = step.out
            elif isinstance(step, tuple):
                convs += [(conv, c) for conv in step]
                c = sum(conv.out for conv in step)
        c_out += c
    return convs, c_out


def _network() -> list[tuple[str, tuple[_Branch, ...], int]]:
    """(module name or "" for the stem, branches, input channels) in order; the stem is one branch."""
    parts: list[tuple[str, tuple[_Branch, ...], int]] = [("", (_STEM,), 3)]
    c = _walk((_STEM,), 3)[1]
    for name, branches in _MIXED:
        parts.append((name, branches, c))
        c = _walk(branches, c)[1]
    assert c == FEATURES
    return parts


def _run(owner: nn.Module, branch: _Branch, x: torch.Tensor) -> torch.Tensor:
    """Apply the steps of ``branch`` (convs looked up on ``owner`` by name)."""
    for step in branch:
        if isinstance(step, str):
            x = _POOLS[step](x)
        elif isinstance(step, _Conv):
            x = owner.get_submodule(step.name)(x)
        else:
            x = torch.cat([owner.get_submodule(conv.name)(x) for conv in step], 1)
    return x


class InceptionBlock(nn.Module):
    """One ``Mixed_*`` block: parallel branches concatenated over channels."""

    def __init__(self, c_in: int, branches: tuple[_Branch, ...]) -> None:
        super().__init__()
        self.branches = branches
        for conv, c in _walk(branches, c_in)[0]:
            self.add_module(conv.name, BasicConv2d(c, conv))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([_run(self, b, x) for b in self.branches], 1)


class InceptionV3Features(FrozenModule):
    """pytorch-fid's InceptionV3 up to the 2048-d pool features; ``forward(x)`` with ``x`` of shape
    ``[B, 3, H, W]``, RGB in **[0, 1]**, any size (resized to 299x299 inside), returns ``[B, 2048]``.

    Frozen: no parameter requires grad and the module stays in eval mode. ``InceptionV3Features()`` has
    random weights; load the real ones with :meth:`from_file`. Its ``state_dict()`` has exactly the
    keys and shapes of the pytorch-fid weight file (:meth:`layout`).
    """

    def __init__(self) -> None:
        super().__init__()
        for name, branches, c_in in _network():
            if name:
                self.add_module(name, InceptionBlock(c_in, branches))
            else:  # the stem's convs sit at the top level (Conv2d_1a_3x3, ...)
                for conv, c in _walk(branches, c_in)[0]:
                    self.add_module(conv.name, BasicConv2d(c, conv))
        self.fc = nn.Linear(FEATURES, _CLASSES)  # part of the file's layout; unused for FID
        self.freeze()

    @staticmethod
    def layout() -> dict[str, tuple[int, ...]]:
        """Keys and shapes of the weight file: 94 conv + BatchNorm units of 5 tensors, and ``fc``: 472."""
        shapes: dict[str, tuple[int, ...]] = {}
        for name, branches, c_in in _network():
            for conv, c in _walk(branches, c_in)[0]:
                key = f"{name}.{conv.name}" if name else conv.name
                shapes[f"{key}.conv.weight"] = (conv.out, c, *_kernel(conv))
                shapes.update({f"{key}.bn.{n}": (conv.out,) for n in ("weight", "bias", "running_mean", "running_var")})
        return {**shapes, "fc.weight": (_CLASSES, FEATURES), "fc.bias": (_CLASSES,)}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, object], source: str = "state dict") -> InceptionV3Features:
        """Build from a pytorch-fid Inception state dict; ValueError (one line) naming the bad keys."""
        expected = cls.layout()
        tensors = check_state(state, expected, source, "a pytorch-fid Inception state dict",
                              ignore=lambda k: k.endswith(_IGNORED_SUFFIX)
                              and k.removesuffix(_IGNORED_SUFFIX) + ".running_mean" in expected)
        model = cls()
        model.load_state_dict(tensors, strict=True)
        return model

    @classmethod
    def from_file(cls, path: str | Path) -> InceptionV3Features:
        """Load ``pt_inception-2015-12-05-*.pth`` (or any file in its layout) from a local path."""
        return cls.from_state_dict(load_state_file(path, "Inception"), source=str(path))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"Inception features need a [B, 3, H, W] tensor, got {tuple(x.shape)}")
        x = x.to(self.fc.weight)
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = _run(self, _STEM, 2 * x - 1)
        for name, _ in _MIXED:
            x = self.get_submodule(name)(x)
        return x.mean((2, 3))



class FeatureStats:
    """Running mean and covariance of feature vectors: the count, the sum and the sum of outer products,
    all float64 on the CPU, so the features themselves need not be kept."""

    def __init__(self, dim: int = FEATURES) -> None:
        self.count = 0
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)
        self._factor: tuple[int, np.ndarray] | None = None  # (count, sqrt_factor()) cache

    def update(self, features: torch.Tensor) -> None:
        """Add a batch of features, shape ``[N, dim]``."""
        f = features.detach().to("cpu", torch.float64)
        if f.ndim != 2 or f.shape[1] != len(self.sum):
            raise ValueError(f"expected features of shape [N, {len(self.sum)}], got {tuple(f.shape)}")
        self.count += len(f)
        self.sum += f.sum(0)
        self.outer += f.T @ f

    def mean(self) -> np.ndarray:
        if self.count < 1:
            raise ValueError("no features added")
        return (self.sum / self.count).numpy()

    def cov(self) -> np.ndarray:
        """Sample covariance (divided by N - 1, as ``np.cov``); needs two samples."""
        if self.count < MIN_SAMPLES:
            raise ValueError(f"a covariance needs at least {MIN_SAMPLES} samples, got {self.count}")
        mu = self.sum / self.count
        c = (self.outer - self.count * torch.outer(mu, mu)) / (self.count - 1)
        return ((c + c.T) / 2).numpy()

    def sqrt_factor(self) -> np.ndarray:
        """:func:`sqrt_factor` of :meth:`cov`, kept until the next update (one set compared with several)."""
        if self._factor is None or self._factor[0] != self.count:
            self._factor = (self.count, sqrt_factor(self.cov()))
        return self._factor[1]


def _above_noise(eigenvalues: np.ndarray) -> np.ndarray:
    """Mask of the eigenvalues of a symmetric PSD matrix that round-off cannot explain: those above
    ``n * eps * max`` (the usual numerical rank tolerance); the rest, tiny negatives included, count as 0."""
    top = max(float(eigenvalues.max(initial=0.0)), 0.0)
    return eigenvalues > top * len(eigenvalues) * np.finfo(np.float64).eps


def _square(m: np.ndarray, name: str) -> np.ndarray:
    m = np.asarray(m, np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {m.shape}")
    return m


def sqrt_factor(sigma: np.ndarray) -> np.ndarray:
    """``B = V sqrt(L)`` from ``sigma = V L V.T`` (symmetric PSD), keeping only the columns of eigenvalues
    above round-off: ``B @ B.T == sigma``, and ``B`` is ``d x rank``."""
    s = _square(sigma, "sigma")
    lam, vec = np.linalg.eigh((s + s.T) / 2)
    keep = _above_noise(lam)
    return vec[:, keep] * np.sqrt(lam[keep])


def _trace_sqrt(factor1: np.ndarray, sigma2: np.ndarray) -> float:
    m = factor1.T @ sigma2 @ factor1
    mu = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(mu[_above_noise(mu)]).sum())


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``Tr(sqrt(sigma1 @ sigma2))`` for symmetric positive semi-definite matrices, in float64.

    ``sigma1 @ sigma2`` has the same non-zero eigenvalues as the symmetric PSD ``B.T @ sigma2 @ B`` with
    ``B`` the :func:`sqrt_factor` of ``sigma1``; the trace is the sum of their square roots. Eigenvalues at
    round-off level count as 0 (not as their square roots), which also keeps rank-deficient covariances
    (fewer samples than features) accurate and cheap.
    """
    s1, s2 = _square(sigma1, "sigma1"), _square(sigma2, "sigma2")
    if s1.shape != s2.shape:
        raise ValueError(f"expected two matrices of one shape, got {s1.shape} and {s2.shape}")
    return _trace_sqrt(sqrt_factor(s1), s2)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr(sqrt(sigma1 sigma2))``; round-off below 0 gives 0."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    if mu1.shape != mu2.shape or mu1.ndim != 1 or np.shape(sigma1) != (len(mu1), len(mu1)):
        raise ValueError(f"mean/covariance shapes do not match: {mu1.shape}, {mu2.shape}, {np.shape(sigma1)}")
    d = float(((mu1 - mu2) ** 2).sum()) + float(np.trace(sigma1)) + float(np.trace(sigma2))
    return max(d - 2 * trace_sqrt_product(sigma1, sigma2), 0.0)


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """FID between two accumulated feature sets (each of at least two samples); ``a``'s square-root
    factor is cached, so comparing one reference set ``a`` with several sets decomposes it once."""
    if len(a.sum) != len(b.sum):
        raise ValueError(f"feature sizes differ: {len(a.sum)} and {len(b.sum)}")
    mu1, mu2, sigma2 = a.mean(), b.mean(), b.cov()
    d = float(((mu1 - mu2) ** 2).sum()) + float(np.trace(a.cov())) + float(np.trace(sigma2))
    return max(d - 2 * _trace_sqrt(a.sqrt_factor(), sigma2), 0.0)
