"""HiFaceGAN losses: adversarial (LSGAN or hinge), discriminator feature matching, VGG perceptual.

Discriminator outputs are ``list`` (per scale) of ``list`` (per layer) of tensors, last = prediction.
Loss arithmetic runs in float32 so the functions can be called inside a bf16/fp16 autocast region.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from hifacegan.models.vgg import VGG19Features

GAN_MODES = ("lsgan", "hinge")
VGG_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)

Preds = list[list[torch.Tensor]]


class GANLoss:
    """Adversarial loss averaged over discriminator scales.

    lsgan: ``mean((pred - target)^2)`` with target 1 (real) or 0 (fake), same for G and D.
    hinge: D uses ``mean(relu(1 - pred))`` (real) / ``mean(relu(1 + pred))`` (fake); G uses ``-mean(pred)``.
    """

    def __init__(self, mode: str = "lsgan") -> None:
        if mode not in GAN_MODES:
            raise ValueError(f"unknown GAN loss mode {mode!r}; valid: {', '.join(GAN_MODES)}")
        self.mode = mode

    def _single(self, pred: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        pred = pred.float()
        if self.mode == "lsgan":
            return (pred - float(target_is_real)).pow(2).mean()
        if for_discriminator:
            return F.relu(1 - pred).mean() if target_is_real else F.relu(1 + pred).mean()
        if not target_is_real:
            raise ValueError("hinge generator loss is defined for target_is_real=True only")
        return -pred.mean()

    def __call__(self, preds: Preds, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        losses = [self._single(scale[-1], target_is_real, for_discriminator) for scale in preds]
        return torch.stack(losses).mean()


def feature_matching_loss(fake_feats: Preds, real_feats: Preds) -> torch.Tensor:
    """L1 between fake and (detached) real discriminator features, all non-final layers, / scales."""
    total = fake_feats[0][0].new_zeros((), dtype=torch.float32)
    for fake_scale, real_scale in zip(fake_feats, real_feats, strict=True):
        for fake, real in zip(fake_scale[:-1], real_scale[:-1], strict=True):
            total = total + F.l1_loss(fake.float(), real.detach().float())
    return total / len(fake_feats)


class PerceptualLoss(nn.Module):
    """Weighted L1 between VGG19 features (relu1_1 ... relu5_1) of fake and real images in [-1, 1]."""

    def __init__(self, vgg: VGG19Features) -> None:
        super().__init__()
        self.vgg = vgg

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fake_feats = self.vgg(fake)
        with torch.no_grad():
            real_feats = self.vgg(real)
        terms = [
            w * F.l1_loss(f.float(), r.float())
            for w, f, r in zip(VGG_LAYER_WEIGHTS, fake_feats, real_feats, strict=True)
        ]
        return torch.stack(terms).sum()


def generator_loss(
    D: nn.Module,
    lq: torch.Tensor,
    fake: torch.Tensor,
    real: torch.Tensor,
    gan_loss: GANLoss,
    weights: Mapping[str, float],
    perceptual: PerceptualLoss | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """G loss = GAN + feature matching + (VGG perceptual, or L1 pixel when ``perceptual`` is None).

    ``weights`` multiply the terms by name (``gan``, ``feat``, ``vgg``, ``l1``): the config's ``w_<term>``
    fields, via :func:`hifacegan.config.loss_weights`.

    The logged values are the weighted terms (detached 0-d tensors, still on the device: reading them
    is left to the caller, once per step, so the GPU queue is not drained mid-step); they sum to the
    returned total. Gradients also reach D's parameters: zero D's grads (or freeze it) before D's step.
    """
    pred_fake = D(lq, fake)
    with torch.no_grad():
        pred_real = D(lq, real)
    terms = {
        "g_gan": weights["gan"] * gan_loss(pred_fake, True, for_discriminator=False),
        "g_feat": weights["feat"] * feature_matching_loss(pred_fake, pred_real),
    }
    if perceptual is not None:
        terms["g_vgg"] = weights["vgg"] * perceptual(fake, real)
    else:
        terms["g_l1"] = weights["l1"] * F.l1_loss(fake.float(), real.float())
    total = torch.stack(list(terms.values())).sum()
    return total, {k: v.detach() for k, v in terms.items()}


def discriminator_loss(
    D: nn.Module, lq: torch.Tensor, fake: torch.Tensor, real: torch.Tensor, gan_loss: GANLoss
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """D loss = real + fake terms (logged as detached device tensors); fake is detached. Fake and real go through D as one batch."""
    n = fake.shape[0]
    preds = D(torch.cat([lq, lq]), torch.cat([fake.detach(), real]))
    d_fake = gan_loss([[f[:n] for f in scale] for scale in preds], False)
    d_real = gan_loss([[f[n:] for f in scale] for scale in preds], True)
    return d_fake + d_real, {"d_real": d_real.detach(), "d_fake": d_fake.detach()}
