"""LPIPS perceptual distance (Zhang et al., CVPR 2018), AlexNet variant "alex" v0.1, from local files only.

Nothing is downloaded. Two local files are needed, both written by ``torch.save(state_dict, path)``:

* the AlexNet backbone in torchvision's key layout (``features.0.weight`` ... ``features.10.bias``;
  ``classifier.*`` keys are ignored), e.g. ``torch.save(torchvision.models.alexnet(weights=...).state_dict(), p)``;
* the LPIPS linear layers (``lin0.model.1.weight`` ... ``lin4.model.1.weight``, shapes ``[1, C, 1, 1]``),
  e.g. the ``alex.pth`` file of the v0.1 release.

The distance: scale the input with the LPIPS shift/scale, run AlexNet, take the five ReLU outputs,
unit-normalise each over channels, square the difference of the two images' features, weight the
channels with the non-negative 1x1 linear layer, average over space and sum over the five layers.

>>> import torch
>>> net = LPIPS()  # random weights here; use LPIPS.from_files(alexnet_path, linear_path) for real scores
>>> x = torch.rand(2, 3, 64, 64)
>>> net(x, x).tolist()
[0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from hifacegan.weights import FrozenModule, check_state, load_state_file

# torchvision's AlexNet ``features``: (index, in, out, kernel, stride, padding) of each conv; a ReLU
# follows every conv, and a 3x3 stride-2 max pool follows the ReLUs of conv1, conv2 and conv5.
_CONVS = ((0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1),
          (8, 384, 256, 3, 1, 1), (10, 256, 256, 3, 1, 1))
CHANNELS = tuple(c[2] for c in _CONVS)  # 64, 192, 384, 256, 256
_POOL_AFTER = (0, 3)  # the conv indices whose ReLU is followed by a pool before the next tap
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10
MIN_SIZE = 31  # smaller inputs leave no pixel after the second pool
_IGNORED_PREFIX = "classifier."


class LPIPS(FrozenModule):
    """``forward(x, y)``: LPIPS distance per image, shape ``[B]``, for ``x``, ``y`` of shape
    ``[B, 3, H, W]`` with values in **[0, 1]** (mapped to [-1, 1] inside), H and W at least 31.

    Frozen: no parameter requires grad and the module stays in eval mode. ``LPIPS()`` has random
    weights; build a real one with :meth:`from_files`.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index, c_in, c_out, k, s, p in _CONVS:
            layers += [nn.Conv2d(c_in, c_out, k, stride=s, padding=p), nn.ReLU()]
            if index in _POOL_AFTER:
                layers.append(nn.MaxPool2d(3, 2))
        self.features = nn.Sequential(*layers)  # indices 0..11, as torchvision's (its last pool is unused)
        self.lins = nn.ParameterList([nn.Parameter(torch.zeros(1, c, 1, 1)) for c in CHANNELS])
        for w in self.lins:
            nn.init.uniform_(w, 0, 1 / w.shape[1])
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    @staticmethod
    def alexnet_shapes() -> dict[str, tuple[int, ...]]:
        """Expected keys and shapes of the AlexNet file."""
        shapes: dict[str, tuple[int, ...]] = {}
        for index, c_in, c_out, k, _, _ in _CONVS:
            shapes[f"features.{index}.weight"] = (c_out, c_in, k, k)
            shapes[f"features.{index}.bias"] = (c_out,)
        return shapes

    @staticmethod
    def linear_shapes() -> dict[str, tuple[int, ...]]:
        """Expected keys and shapes of the LPIPS linear-layer file."""
        return {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate(CHANNELS)}

    @classmethod
    def from_state_dicts(cls, alexnet: Mapping[str, object], linear: Mapping[str, object],
                         alexnet_source: str = "AlexNet state dict",
                         linear_source: str = "LPIPS linear state dict") -> LPIPS:
        """Build from the two state dicts; a one-line ValueError naming the file and the bad keys."""
        alexnet = check_state(alexnet, cls.alexnet_shapes(), alexnet_source, "a torchvision AlexNet state dict",
                              ignore=lambda k: k.startswith(_IGNORED_PREFIX))
        linear = check_state(linear, cls.linear_shapes(), linear_source, "an LPIPS v0.1 'alex' linear-layer file")
        for key in cls.linear_shapes():
            if (linear[key] < 0).any():
                raise ValueError(f"{linear_source}: key {key} has negative weights (LPIPS weights are >= 0)")
        model = cls()
        with torch.no_grad():
            for key in cls.alexnet_shapes():
                _, index, name = key.split(".")  # our indices are torchvision's
                getattr(model.features[int(index)], name).copy_(alexnet[key])
            for i, key in enumerate(cls.linear_shapes()):
                model.lins[i].copy_(linear[key])
        return model

    @classmethod
    def from_files(cls, alexnet_path: str | Path, linear_path: str | Path) -> LPIPS:
        """Load the AlexNet backbone and the LPIPS linear layers from local ``torch.save`` files."""
        return cls.from_state_dicts(load_state_file(alexnet_path, "AlexNet"), load_state_file(linear_path, "LPIPS linear"),
                                    str(alexnet_path), str(linear_path))

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU outputs (relu1 ... relu5) for ``x`` in [-1, 1]."""
        x = (x - self.shift) / self.scale
        feats = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                feats.append(x)
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS needs two [B, 3, H, W] tensors of one shape, got {tuple(x.shape)} "
                             f"and {tuple(y.shape)}")
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"LPIPS needs images of at least {MIN_SIZE}x{MIN_SIZE}, got {tuple(x.shape[-2:])}")
        x = x.to(self.shift.dtype) * 2 - 1
        y = y.to(self.shift.dtype) * 2 - 1
        total = torch.zeros(len(x), device=x.device, dtype=x.dtype)
        for fx, fy, w in zip(self.taps(x), self.taps(y), self.lins, strict=True):
            fx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + _EPS)
            fy = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + _EPS)
            total = total + ((fx - fy) ** 2 * w).sum(1).mean((1, 2))
        return total

