"""Tests for hifacegan.models, hifacegan.losses and hifacegan.metrics (CPU, tiny sizes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hifacegan.config import TrainConfig, loss_weights
from hifacegan.losses import (
    GANLoss,
    PerceptualLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)
from hifacegan.metrics import ms_ssim, psnr, ssim
from hifacegan.models import (
    HiFaceGANGenerator,
    LIPSPADEGenerator,
    MultiscaleDiscriminator,
    VGG19Features,
    build_generator,
)
from hifacegan.models.layers import LIP, SPADE

# torchvision vgg19().features: conv index -> (out, in) channels.
TORCHVISION_VGG19_CONVS = {
    0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128),
    10: (256, 128), 12: (256, 256), 14: (256, 256), 16: (256, 256),
    19: (512, 256), 21: (512, 512), 23: (512, 512), 25: (512, 512),
    28: (512, 512), 30: (512, 512), 32: (512, 512), 34: (512, 512),
}  # fmt: skip


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def torchvision_vgg19_state(with_classifier: bool = True) -> dict[str, torch.Tensor]:
    state = {}
    for i, (cout, cin) in TORCHVISION_VGG19_CONVS.items():
        state[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3) * math.sqrt(2 / (9 * cin))
        state[f"features.{i}.bias"] = torch.randn(cout) * 0.05
    if with_classifier:
        state["classifier.0.weight"] = torch.randn(8, 4)
        state["classifier.0.bias"] = torch.randn(8)
    return state


@pytest.fixture(scope="module")
def vgg() -> VGG19Features:
    return VGG19Features.from_state_dict(torchvision_vgg19_state())


# ---------------------------------------------------------------- layers


def test_lip_with_flat_importance_is_average_pooling() -> None:
    lip = LIP(4)
    torch.nn.init.zeros_(lip.logit[0].weight)
    x = torch.randn(2, 4, 10, 10)
    expected = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    torch.testing.assert_close(lip(x), expected)


def test_lip_does_not_overflow_in_bfloat16() -> None:
    lip = LIP(4).to(torch.bfloat16)
    out = lip(torch.randn(1, 4, 8, 8, dtype=torch.bfloat16) * 50)
    assert out.dtype == torch.bfloat16 and out.shape == (1, 4, 4, 4)
    assert torch.isfinite(out).all()


def test_spade_modulates_instance_norm() -> None:
    spade = SPADE(8, guide_channels=3)
    for conv in (spade.gamma, spade.beta):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    torch.nn.init.constant_(spade.gamma.bias, 1.0)
    torch.nn.init.constant_(spade.beta.bias, 0.5)
    x = torch.randn(2, 8, 6, 6)
    out = spade(x, torch.randn(2, 3, 12, 12))  # guidance at another size is resized
    torch.testing.assert_close(out, F.instance_norm(x) * 2 + 0.5)


# ---------------------------------------------------------------- generators


@pytest.mark.parametrize("variant", ["hifacegan", "lipspade"])
@pytest.mark.parametrize(("ngf", "size"), [(8, 64), (8, 96), (16, 128)])
def test_generator_output(variant: str, ngf: int, size: int) -> None:
    g = build_generator(variant, ngf, size)
    assert g.config == dict(variant=variant, ngf=ngf, size=size, norm="instance", io_range="signed")
    lq = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        out = g(lq)
    assert out.shape == lq.shape
    assert torch.isfinite(out).all() and out.abs().max() <= 1
    rebuilt = build_generator(**g.config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in g.state_dict().items()
    }


@pytest.mark.parametrize(
    ("cls", "ngf", "expected", "paper"),
    [
        (HiFaceGANGenerator, 64, 130_562_755, 130e6),
        (HiFaceGANGenerator, 48, 79_869_139, 80e6),
        (LIPSPADEGenerator, 64, 120_235_779, None),
        (LIPSPADEGenerator, 48, 72_198_211, None),
    ],
)
def test_generator_parameter_count(cls: type, ngf: int, expected: int, paper: float | None) -> None:
    with torch.device("meta"):
        count = n_params(cls(ngf, 512))
        assert n_params(cls(ngf, 256)) == count  # size only changes the grid, not the weights
    assert count == expected
    if paper is not None:
        assert abs(count - paper) / paper < 0.02


@pytest.mark.parametrize("size", [0, 32, 48, 100, 500])
def test_generator_rejects_bad_size(size: int) -> None:
    with pytest.raises(ValueError, match="multiple of 32 and at least 64"):
        HiFaceGANGenerator(8, size)


def test_generator_rejects_bad_arguments_and_input() -> None:
    with pytest.raises(ValueError, match="valid: hifacegan, lipspade"):
        build_generator("pix2pix", 8, 64)
    with pytest.raises(ValueError, match="unknown norm 'layer'"):
        LIPSPADEGenerator(8, 64, norm="layer")
    with pytest.raises(ValueError, match="ngf"):
        HiFaceGANGenerator(0, 64)
    with pytest.raises(ValueError, match="B x 3 x 64 x 64"):
        HiFaceGANGenerator(8, 64)(torch.zeros(1, 3, 96, 96))


def _train_then_eval(norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = HiFaceGANGenerator(8, 64, norm=norm)
    for m in g.modules():  # non-trivial SPADE modulation so the normalisation matters
        if isinstance(m, SPADE):
            torch.nn.init.normal_(m.gamma.weight, std=0.05)
            torch.nn.init.normal_(m.beta.weight, std=0.05)
    lq = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        train_out = g.train()(lq)  # spectral norm refines its estimate here, then eval reuses it
        eval_out = g.eval()(lq)
    return train_out, eval_out


def test_generator_train_and_eval_agree_with_instance_norm() -> None:
    train_out, eval_out = _train_then_eval("instance")
    torch.testing.assert_close(train_out, eval_out)


def test_generator_train_and_eval_differ_with_batch_norm() -> None:
    train_out, eval_out = _train_then_eval("batch")
    assert (train_out - eval_out).abs().max() > 1e-3


def test_init_weights_xavier_and_zero_bias() -> None:
    g = HiFaceGANGenerator(16, 64)
    conv = g.trunk.head.norm_0.gamma  # 128 -> 256 channels, 3x3
    expected_std = 0.02 * math.sqrt(2 / (9 * (128 + 256)))
    assert abs(conv.weight.std().item() / expected_std - 1) < 0.05
    assert all(
        m.bias.abs().max() == 0 for m in g.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is not None
    )


# ---------------------------------------------------------------- discriminator


def test_discriminator_feature_structure() -> None:
    d = MultiscaleDiscriminator(in_channels=6, ndf=16, n_layers=4, num_d=2).eval()  # freeze spectral norm
    lq, img = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    out = d(lq, img)
    assert [[f.shape[1] for f in scale] for scale in out] == [[16, 32, 64, 128, 1]] * 2
    assert [f.shape[-1] for f in out[0]] == [33, 17, 9, 10, 11]  # stride 2, 2, 2, 1, 1
    assert [f.shape[-1] for f in out[1]] == [17, 9, 5, 6, 7]
    assert all(f.shape[0] == 2 for scale in out for f in scale)
    pooled = F.avg_pool2d(torch.cat([lq, img], 1), 3, 2, 1, count_include_pad=False)
    torch.testing.assert_close(d.scales[1](pooled)[-1], out[1][-1])


# ---------------------------------------------------------------- VGG


def test_vgg_loads_torchvision_state_dict(tmp_path) -> None:
    state = torchvision_vgg19_state()
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    vgg = VGG19Features.from_file(path)
    for key, value in vgg.state_dict().items():
        torch.testing.assert_close(value, state[key])
    assert not any(p.requires_grad for p in vgg.parameters())
    assert not vgg.train().training

    x = torch.rand(1, 3, 32, 32) * 2 - 1
    feats = vgg(x)
    assert [f.shape[1:] for f in feats] == [
        (64, 32, 32),
        (128, 16, 16),
        (256, 8, 8),
        (512, 4, 4),
        (512, 2, 2),
    ]
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    normalised = ((x + 1) / 2 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    expected, h = [], normalised
    for i in sorted(TORCHVISION_VGG19_CONVS)[:13]:  # up to conv5_1
        if i in (5, 10, 19, 28):  # first conv of a block: pool before, tap after
            h = F.max_pool2d(h, 2)
        h = F.relu(F.conv2d(h, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1))
        if i in (0, 5, 10, 19, 28):
            expected.append(h)
    for got, want in zip(feats, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_vgg_rejects_wrong_state_dict(tmp_path) -> None:
    state = torchvision_vgg19_state()
    del state["features.34.weight"]
    state["features.2.weight"] = torch.zeros(64, 64, 1, 1)
    path = tmp_path / "vgg16ish.pth"
    torch.save(state, path)
    with pytest.raises(
        ValueError, match=r"missing: features\.34\.weight.*shape mismatch: features\.2\.weight"
    ):
        VGG19Features.from_file(path)
    torch.save([1, 2], path)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        VGG19Features.from_file(path)


# ---------------------------------------------------------------- losses


def _preds(*values: float) -> list[list[torch.Tensor]]:
    return [[torch.randn(1, 4, 3, 3), torch.full((1, 1, 3, 3), v)] for v in values]


@pytest.mark.parametrize(
    ("mode", "real", "for_d", "expected"),
    [
        ("lsgan", True, True, (0.25 + 4.0) / 2),
        ("lsgan", False, True, (0.25 + 1.0) / 2),
        ("lsgan", True, False, (0.25 + 4.0) / 2),
        ("hinge", True, True, (0.5 + 2.0) / 2),
        ("hinge", False, True, (1.5 + 0.0) / 2),
        ("hinge", True, False, -(0.5 - 1.0) / 2),
    ],
)
def test_gan_loss_values(mode: str, real: bool, for_d: bool, expected: float) -> None:
    loss = GANLoss(mode)(_preds(0.5, -1.0), real, for_discriminator=for_d)
    assert loss.item() == pytest.approx(expected)


def test_gan_loss_rejects_bad_use() -> None:
    with pytest.raises(ValueError, match="valid: lsgan, hinge"):
        GANLoss("wgan")
    with pytest.raises(ValueError, match="target_is_real=True"):
        GANLoss("hinge")(_preds(0.0), False, for_discriminator=False)


def test_feature_matching_loss() -> None:
    fake = [
        [torch.ones(1, 2, 4, 4, requires_grad=True), torch.full((1, 2, 2, 2), 2.0), torch.zeros(1, 1, 2, 2)]
    ]
    real = [[torch.zeros(1, 2, 4, 4, requires_grad=True), torch.zeros(1, 2, 2, 2), torch.ones(1, 1, 2, 2)]]
    loss = feature_matching_loss(fake * 2, real * 2)  # two identical scales: (1 + 2) per scale, / 2
    assert loss.item() == pytest.approx(3.0)
    loss.backward()
    assert fake[0][0].grad is not None and real[0][0].grad is None


def test_perceptual_loss(vgg: VGG19Features) -> None:
    perceptual = PerceptualLoss(vgg)
    fake = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_()
    real = torch.rand(1, 3, 32, 32) * 2 - 1
    assert perceptual(real, real).item() == 0
    expected = sum(
        w * (f - r).abs().mean()
        for w, f, r in zip((1 / 32, 1 / 16, 1 / 8, 1 / 4, 1), vgg(fake), vgg(real), strict=True)
    )
    loss = perceptual(fake, real)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


@pytest.mark.parametrize("use_vgg", [False, True])
def test_one_training_step(use_vgg: bool, vgg: VGG19Features) -> None:
    g, d = HiFaceGANGenerator(8, 64), MultiscaleDiscriminator(ndf=8, n_layers=3)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.0, 0.9))
    before_g = [p.detach().clone() for p in g.parameters()]
    before_d = [p.detach().clone() for p in d.parameters()]
    lq, real = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    gan, weights = GANLoss("lsgan"), loss_weights(TrainConfig())
    perceptual = PerceptualLoss(vgg) if use_vgg else None

    fake = g(lq)
    g_loss, g_logs = generator_loss(d, lq, fake, real, gan, weights, perceptual)
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    assert set(g_logs) == {"g_gan", "g_feat", "g_vgg" if use_vgg else "g_l1"}
    assert g_loss.item() == pytest.approx(sum(float(v) for v in g_logs.values()), rel=1e-5)
    assert not any(v.requires_grad for v in g_logs.values()), "logged terms are detached"

    d_loss, d_logs = discriminator_loss(d, lq, fake, real, gan)
    opt_d.zero_grad()
    g.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    assert set(d_logs) == {"d_real", "d_fake"}
    assert all(p.grad is None for p in g.parameters())  # fake was detached
    assert d_loss.item() == pytest.approx(float(d_logs["d_real"]) + float(d_logs["d_fake"]), rel=1e-5)

    assert all(math.isfinite(float(v)) for v in {**g_logs, **d_logs}.values())
    assert any(not torch.equal(a, b) for a, b in zip(before_g, g.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, d.parameters(), strict=True))


# ---------------------------------------------------------------- metrics (numpy references)


def _np_blur(img: np.ndarray) -> np.ndarray:
    """Valid 11x11 Gaussian (sigma 1.5) filter of an H x W array, applied separably."""
    coords = np.arange(11) - 5.0
    g = np.exp(-(coords**2) / (2 * 1.5**2))
    g /= g.sum()
    rows = np.lib.stride_tricks.sliding_window_view(img, 11, axis=0) @ g
    return np.lib.stride_tricks.sliding_window_view(rows, 11, axis=1) @ g


def _np_ssim_cs(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """SSIM and contrast-structure of C x H x W images, averaged over channels."""
    c1, c2 = 0.01**2, 0.03**2
    ssims, css = [], []
    for a, b in zip(x, y, strict=True):
        mu_a, mu_b = _np_blur(a), _np_blur(b)
        var_a = _np_blur(a * a) - mu_a**2
        var_b = _np_blur(b * b) - mu_b**2
        cov = _np_blur(a * b) - mu_a * mu_b
        cs = (2 * cov + c2) / (var_a + var_b + c2)
        ssims.append(((2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1) * cs).mean())
        css.append(cs.mean())
    return float(np.mean(ssims)), float(np.mean(css))


def _np_ms_ssim(x: np.ndarray, y: np.ndarray, n_scales: int) -> float:
    weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333][:n_scales])
    weights /= weights.sum()
    result = 1.0
    for i in range(n_scales):
        if i > 0:
            x, y = (t.reshape(3, t.shape[1] // 2, 2, t.shape[2] // 2, 2).mean(axis=(2, 4)) for t in (x, y))
        sim, cs = _np_ssim_cs(x, y)
        result *= max(sim if i == n_scales - 1 else cs, 0.0) ** weights[i]
    return result


def _pair(size: int, batch: int = 2, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    base = F.interpolate(torch.rand(batch, 3, size // 8, size // 8), size=(size, size), mode="bilinear")
    return base, (base + noise * torch.randn_like(base)).clamp(0, 1)


def test_psnr() -> None:
    x = torch.rand(2, 3, 256, 256, dtype=torch.float64)
    assert torch.isinf(psnr(x, x)).all()
    noisy = x + 0.05 * torch.randn_like(x)
    expected = 20 * math.log10(1 / 0.05)  # 26.02 dB
    assert psnr(x, noisy).shape == (2,)
    assert torch.allclose(psnr(x, noisy), torch.full((2,), expected, dtype=torch.float64), atol=0.05)
    mse = ((x - noisy) ** 2).mean(dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(psnr(x, noisy).numpy(), 10 * np.log10(1 / mse))


def test_ssim_matches_numpy_reference() -> None:
    x, y = _pair(48)
    got = ssim(x, y)
    assert got.shape == (2,)
    expected = [_np_ssim_cs(a, b)[0] for a, b in zip(x.double().numpy(), y.double().numpy(), strict=True)]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64))
    assert ssim(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)).abs().item() < 0.1


@pytest.mark.parametrize(("size", "n_scales"), [(176, 5), (64, 3), (22, 2), (16, 1)])
def test_ms_ssim_matches_numpy_reference(size: int, n_scales: int) -> None:
    x, y = _pair(size, batch=1, noise=0.05)
    expected = _np_ms_ssim(x[0].double().numpy(), y[0].double().numpy(), n_scales)
    np.testing.assert_allclose(ms_ssim(x, y).numpy(), [expected], rtol=1e-9)
    torch.testing.assert_close(ms_ssim(x, x), torch.ones(1, dtype=torch.float64))


def test_metrics_reject_bad_inputs() -> None:
    with pytest.raises(ValueError, match="equal shape"):
        psnr(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 8))
    with pytest.raises(ValueError, match="at least 11x11"):
        ms_ssim(torch.rand(1, 3, 10, 10), torch.rand(1, 3, 10, 10))
