"""Frozen VGG19 feature extractor for the perceptual loss, loadable from a torchvision state dict.

Weights are never downloaded: pass a local file saved as ``torch.save(vgg19.state_dict(), path)``
(keys ``features.<i>.weight`` / ``features.<i>.bias``; ``classifier.*`` keys are ignored).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from hifacegan.weights import FrozenModule, check_state, load_state_file

# torchvision's VGG19 ("E"): blocks of (width, number of 3x3 conv + ReLU), each followed by a 2x2 max pool.
_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))
# Indices in ``features`` of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
TAPS = (1, 6, 11, 20, 29)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_IGNORED_PREFIX = "classifier."


class VGG19Features(FrozenModule):
    """VGG19 conv stack; ``forward(x)`` with ``x`` in [-1, 1] returns relu1_1 ... relu5_1.

    ImageNet mean/std normalisation is applied inside. The module is frozen: no parameter requires
    grad and it stays in eval mode. Layer indices match torchvision's ``vgg19().features``.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width, n_convs in _BLOCKS:
            for _ in range(n_convs):
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
                channels = width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], source: str = "state dict") -> VGG19Features:
        """Build from a torchvision-format VGG19 state dict; ValueError naming any bad keys."""
        model = cls()
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        tensors = check_state(state, expected, source, "a torchvision VGG19 state dict",
                              ignore=lambda k: k.startswith(_IGNORED_PREFIX))
        model.load_state_dict(tensors, strict=True)
        return model

    @classmethod
    def from_file(cls, path: str | Path) -> VGG19Features:
        """Load weights from a local file written by ``torch.save(state_dict, path)``."""
        state = load_state_file(path)
        return cls.from_state_dict(state, source=str(path))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        feats = []
        for i, layer in enumerate(self.features[: TAPS[-1] + 1]):
            x = layer(x)
            if i in TAPS:
                feats.append(x)
        return feats
