"""An exponential moving average (EMA) of the generator's weights, the model that validation, samples,
`restore`, `eval` and `export` use by default (as in BasicSR and GFPGAN, where it gives visibly steadier
outputs than the raw G).

>>> import torch
>>> G = torch.nn.Linear(2, 2)
>>> ema = EMA(G, decay=0.999)
>>> with torch.no_grad():
...     _ = G.weight.add_(1.0)
>>> ema.update(G, step=0)  # early steps use a smaller decay: (1 + step) / (10 + step) = 0.1
>>> torch.allclose(ema.model.weight, G.weight - 0.1)
True
"""

from __future__ import annotations

import copy

import torch


def decay_at(decay: float, step: int) -> float:
    """The decay used at update `step` (0-based): `decay`, but at most (1 + step) / (10 + step), so that the
    average forgets the random initialisation in the first few hundred steps (TensorFlow's
    ExponentialMovingAverage with num_updates). With 0.999 alone, step 100's EMA would still be 90 %
    initial weights and a 1000-step run's first validation would show noise."""
    return min(decay, (1 + step) / (10 + step))


class EMA:
    """`model`: a frozen copy of the tracked module in eval mode; `update(G, step)` after each G step
    moves its floating-point parameters towards G's (one fused lerp) and copies G's buffers (the
    spectral-norm vectors, batch-norm statistics)."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(module).eval().requires_grad_(False)
        self._params = [p for p in self.model.parameters() if p.dtype.is_floating_point]

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        source = [p.detach() for p in module.parameters() if p.dtype.is_floating_point]
        torch._foreach_lerp_(self._params, source, 1.0 - decay_at(self.decay, step))
        for mine, theirs in zip(self.model.buffers(), module.buffers(), strict=True):
            mine.copy_(theirs)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()
