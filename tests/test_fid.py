"""FID: the pytorch-fid InceptionV3 from a local file (layout, strict loading), the Fréchet distance, the eval CLI.

No real weights exist here: files hold random weights in the pytorch-fid key layout (or, where only the
keys matter, zero-stride tensors of the right shapes, which make tiny files).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from conftest import load_face
from test_hifacegan_cli import run, runner  # noqa: F401  (module fixture: a tiny trained checkpoint)

from cli.hifacegan_cli import app
from hifacegan.fid import (
    FEATURES,
    FeatureStats,
    InceptionV3Features,
    fid_from_stats,
    frechet_distance,
    trace_sqrt_product,
)

# The layout of pt_inception-2015-12-05-6726825d.pth (torchvision's Inception3 keys, no AuxLogits,
# 1008 classes): 94 conv+BN units of 5 tensors each, plus fc.weight and fc.bias.
N_KEYS = 472
N_VALUES = 23_885_392  # elements in those 472 tensors (23,850,960 weights and biases + BN running stats)
CONVS_PER_MODULE = {"Conv2d_1a_3x3": 1, "Conv2d_2a_3x3": 1, "Conv2d_2b_3x3": 1, "Conv2d_3b_1x1": 1,
                    "Conv2d_4a_3x3": 1, "Mixed_5b": 7, "Mixed_5c": 7, "Mixed_5d": 7, "Mixed_6a": 4,
                    "Mixed_6b": 10, "Mixed_6c": 10, "Mixed_6d": 10, "Mixed_6e": 10, "Mixed_7a": 6,
                    "Mixed_7b": 9, "Mixed_7c": 9}
SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_var": (32,),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_4.conv.weight": (192, 192, 7, 1),
    "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7c.branch3x3_2b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "Mixed_7c.branch_pool.bn.bias": (192,),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


def random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the pytorch-fid layout, with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    state = {k: v.clone() for k, v in InceptionV3Features().state_dict().items()}
    for k, v in state.items():
        if k.endswith("running_var") or k.endswith("bn.weight"):
            v.uniform_(0.5, 1.5)
        elif k.endswith("running_mean") or k.endswith("bn.bias"):
            v.normal_(0, 0.1)
    return state


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("fid") / "pt_inception-random.pth"
    torch.save(random_state(), path)
    return path


@pytest.fixture(scope="module")
def net(weights):
    return InceptionV3Features.from_file(weights)


def layout_state() -> dict[str, torch.Tensor]:
    """The pytorch-fid keys and shapes, values all 0 from one shared element (a file of a few kB)."""
    zero = torch.zeros(())
    return {k: zero.expand(shape) for k, shape in InceptionV3Features.layout().items()}


def test_state_dict_has_the_pytorch_fid_layout():
    state = InceptionV3Features().state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == InceptionV3Features.layout()
    assert len(state) == N_KEYS and sum(v.numel() for v in state.values()) == N_VALUES
    assert {k: tuple(state[k].shape) for k in SHAPES} == SHAPES
    convs = [k.removesuffix(".conv.weight") for k in state if k.endswith(".conv.weight")]
    assert {m: sum(c.split(".")[0] == m for c in convs) for m in CONVS_PER_MODULE} == CONVS_PER_MODULE
    assert len(convs) == sum(CONVS_PER_MODULE.values()) == 94
    for c in convs:  # each conv is bias-free and followed by a BatchNorm of its output width
        out = state[f"{c}.conv.weight"].shape[0]
        assert {k for k in state if k.startswith(f"{c}.")} == {
            f"{c}.conv.weight", *(f"{c}.bn.{n}" for n in ("weight", "bias", "running_mean", "running_var"))}
        assert all(state[f"{c}.bn.{n}"].shape == (out,) for n in ("weight", "bias", "running_mean", "running_var"))


def test_fid_variant_details(net):
    from hifacegan.fid import _POOLS

    assert net.Conv2d_1a_3x3.bn.eps == 1e-3 and net.Conv2d_1a_3x3.conv.bias is None
    pools = {name: net.get_submodule(name).branches[-1][0] for name in CONVS_PER_MODULE if name.startswith("Mixed")}
    assert pools == {"Mixed_5b": "avg", "Mixed_5c": "avg", "Mixed_5d": "avg", "Mixed_6a": "max/2",
                     "Mixed_6b": "avg", "Mixed_6c": "avg", "Mixed_6d": "avg", "Mixed_6e": "avg",
                     "Mixed_7a": "max/2", "Mixed_7b": "avg", "Mixed_7c": "max"}
    ones = torch.ones(1, 1, 5, 5)
    assert torch.equal(_POOLS["avg"](ones), ones)  # the zero padding is not counted in the average
    x = torch.arange(25.0).view(1, 1, 5, 5)
    assert torch.equal(_POOLS["max"](x)[0, 0, 0], torch.tensor([6.0, 7, 8, 9, 9]))


def test_loaded_weights_are_the_file_and_frozen(net, weights, tmp_path):
    state = random_state()
    assert torch.equal(net.Mixed_7c.branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"])
    assert torch.equal(net.Mixed_6b.branch7x7_2.bn.running_var, state["Mixed_6b.branch7x7_2.bn.running_var"])
    assert not any(p.requires_grad for p in net.parameters()) and not net.train().training
    # torchvision-saved files also hold one BatchNorm counter per conv: accepted and ignored
    state.update({k.replace("running_mean", "num_batches_tracked"): torch.tensor(0)
                  for k in list(state) if k.endswith("running_mean")})
    assert len(state) == N_KEYS + 94
    torch.save(state, tmp_path / "with_counters.pth")
    other = InceptionV3Features.from_file(tmp_path / "with_counters.pth")
    assert torch.equal(other.fc.weight, net.fc.weight)


class Opaque:
    """A pickled object that weights_only loading refuses."""


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("Mixed_6c.branch7x7dbl_3.conv.weight"),
     "is not a pytorch-fid Inception state dict; missing: Mixed_6c.branch7x7dbl_3.conv.weight"),
    (lambda d: d.pop("fc.bias"), "missing: fc.bias"),
    (lambda d: d.update({"Mixed_7c.branch_pool.conv.weight": torch.zeros(192, 1280, 1, 1)}),
     "shape mismatch: Mixed_7c.branch_pool.conv.weight (192, 1280, 1, 1) != (192, 2048, 1, 1)"),
    (lambda d: d.update({"Conv2d_1a_3x3.bn.weight": [1.0] * 32}),
     "shape mismatch: Conv2d_1a_3x3.bn.weight list != (32,)"),
    (lambda d: d.update({"AuxLogits.fc.weight": torch.zeros(1008, 768)}), "unexpected: AuxLogits.fc.weight"),
    (lambda d: d.update({"fc.num_batches_tracked": torch.tensor(0)}), "unexpected: fc.num_batches_tracked"),
    (lambda d: [d.pop(k) for k in list(d) if k.startswith("Mixed_5b.")], "missing: Mixed_5b.branch1x1.conv.weight, "),
])
def test_bad_keys_are_one_line_errors(edit, message, tmp_path):
    state = layout_state()
    edit(state)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as info:
        InceptionV3Features.from_file(tmp_path / "bad.pth")
    text = str(info.value)
    assert text.startswith(f"{tmp_path / 'bad.pth'} ") and message in text and len(text.splitlines()) == 1


def test_unreadable_files_are_one_line_errors(tmp_path):
    cases = {"missing.pth": "Inception file not found", "junk.pth": "cannot load Inception weights",
             "object.pth": "cannot load Inception weights (not a torch.save file of tensors",
             "list.pth": "Inception file does not hold a state dict (found list)"}
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    torch.save({"fc.weight": Opaque()}, tmp_path / "object.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    (tmp_path / "adir.pth").mkdir()
    cases["adir.pth"] = "is a directory; pass the Inception weight file itself"
    for name, message in cases.items():
        with pytest.raises(ValueError) as info:
            InceptionV3Features.from_file(tmp_path / name)
        assert str(info.value).startswith(f"{tmp_path / name}: {message}") and len(str(info.value).splitlines()) == 1


def test_features_at_299(net):
    faces = torch.from_numpy(np.stack([load_face(0, 64), load_face(1, 64)])).permute(0, 3, 1, 2) / 255
    with torch.no_grad():
        f = net(faces)
    assert f.shape == (2, FEATURES) and f.dtype == torch.float32 and torch.isfinite(f).all()
    assert (f >= 0).all() and f.std() > 0 and not torch.allclose(f[0], f[1])  # pooled ReLU outputs


@pytest.mark.parametrize("size", [(31, 47), (120, 90), (300, 301)])
def test_feature_shape_for_any_input_size(net, size):
    x = torch.rand(3, 3, *size)
    with torch.no_grad():
        f = net(x)
        single = net(x[1:2])
    assert f.shape == (3, FEATURES) and torch.isfinite(f).all()
    assert torch.allclose(single[0], f[1], atol=1e-5)  # frozen BatchNorm: no mixing across the batch
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        net(torch.rand(3, 64, 64))


def stats_of(features: np.ndarray, chunks: int = 3) -> FeatureStats:
    s = FeatureStats(features.shape[1])
    for part in np.array_split(features, chunks):
        s.update(torch.from_numpy(part))
    return s


def random_spd(rng: np.random.Generator, d: int, rank: int | None = None) -> np.ndarray:
    a = rng.normal(size=(d, rank or d))
    return a @ a.T + (0 if rank else 0.1 * np.eye(d))


def test_running_stats_match_numpy():
    x = np.random.default_rng(0).normal(3, 2, size=(200, 16)) @ np.random.default_rng(1).normal(size=(16, 16))
    s = stats_of(x, 7)
    assert s.count == 200 and np.allclose(s.mean(), x.mean(0)) and np.allclose(s.cov(), np.cov(x, rowvar=False))
    one = stats_of(x[:1], 1)
    with pytest.raises(ValueError, match="at least 2 samples"):
        one.cov()
    with pytest.raises(ValueError, match=r"shape \[N, 16\]"):
        one.update(torch.zeros(2, 8))


@pytest.mark.parametrize(("d", "rank"), [(2, None), (5, None), (12, None), (12, 4)])
def test_trace_sqrt_matches_brute_force(d, rank):
    rng = np.random.default_rng(d)
    s1, s2 = random_spd(rng, d, rank), random_spd(rng, d)
    eig = np.sort(np.linalg.eigvals(s1 @ s2).real)[::-1][:rank or d]  # real, >= 0; d - rank of them are 0
    brute = np.sqrt(eig).sum()
    assert trace_sqrt_product(s1, s2) == pytest.approx(brute, rel=1e-9, abs=1e-9)
    assert trace_sqrt_product(s2, s1) == pytest.approx(brute, rel=1e-9, abs=1e-9)
    if rank is None:  # a matrix square root by Newton's iteration (Denman-Beavers) gives the same trace
        y, z = s1 @ s2, np.eye(d)
        for _ in range(60):
            y, z = (y + np.linalg.inv(z)) / 2, (z + np.linalg.inv(y)) / 2
        assert np.trace(y) == pytest.approx(brute, rel=1e-8)


def test_fid_closed_form_with_diagonal_covariances():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = rng.uniform(0.2, 3, 6), rng.uniform(0.2, 3, 6)
    exact = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(exact, rel=1e-12)
    # estimated from Gaussian samples with those moments
    n = 200_000
    a = mu1 + rng.normal(size=(n, 6)) * np.sqrt(v1)
    b = mu2 + rng.normal(size=(n, 6)) * np.sqrt(v2)
    assert fid_from_stats(stats_of(a), stats_of(b)) == pytest.approx(exact, rel=0.02)
    # equal (full) covariances: only the means count
    s = random_spd(rng, 6)
    assert frechet_distance(mu1, s, mu2, s) == pytest.approx(((mu1 - mu2) ** 2).sum(), rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero_and_fid_is_symmetric():
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(300, 64)) @ rng.normal(size=(64, 64)))
    y = np.abs(rng.normal(1, 1, size=(40, 64)))  # fewer samples than dimensions: rank-deficient
    sx, sy = stats_of(x), stats_of(y)
    assert fid_from_stats(sx, sx) == pytest.approx(0, abs=1e-8)
    assert fid_from_stats(sy, sy) == pytest.approx(0, abs=1e-8)
    d = fid_from_stats(sx, sy)
    assert d > 1 and fid_from_stats(sy, sx) == pytest.approx(d, rel=1e-9)
    with pytest.raises(ValueError, match="shapes do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def table_row(output: str, label: str) -> list[str]:
    line = next(line for line in output.splitlines() if label in line)
    return re.findall(r"n/a|\d+\.\d+", line.split(label, 1)[1])


def test_eval_cli_with_fid(run, weights):  # noqa: F811
    tmp, shards, ckpt, _ = run
    args = ["eval", "--checkpoint", str(ckpt), "--data", str(shards), "--device", "cpu", "--fid-inception", str(weights)]
    res = runner.invoke(app, [*args, "--json", str(tmp / "fid.json")])
    assert res.exit_code == 0, res.output
    lq, restored = (float(v) for v in table_row(res.output, "FID vs HQ (4 samples, biased)"))
    assert np.isfinite([lq, restored]).all() and lq > 0 and restored > 0
    flat = " ".join(res.output.split())
    assert "warning: FID from 4 samples: with fewer than 2048" in flat and "LPIPS: not available" in flat
    assert "pass --fid-inception" not in flat
    result = json.loads((tmp / "fid.json").read_text())
    fid = result["fid"]
    assert fid["samples"] == 4 and fid["dims"] == FEATURES and fid["weights"] == str(weights)
    assert np.isfinite([fid["lq"], fid["restored"]]).all() and fid["lq"] > 0 and "biased" in fid["warning"]
    assert (round(fid["lq"], 2), round(fid["restored"], 2)) == (lq, restored)
    assert np.isfinite(list(result["metrics"].values())).all()
    res = runner.invoke(app, [*args, "--limit", "1"])
    assert res.exit_code == 0 and table_row(res.output, "FID vs HQ") == ["n/a", "n/a"]
    assert "warning: FID not computed: it needs at least 2 samples, got 1" in " ".join(res.output.split())


@pytest.mark.parametrize(("name", "message"), [
    ("nowhere.pth", "error: FID Inception weights: nowhere.pth: Inception file not found"),
    ("alexnet.pth", "error: FID Inception weights: alexnet.pth is not a pytorch-fid Inception state dict; missing:"),
    ("junk.pth", "error: FID Inception weights: junk.pth: cannot load Inception weights"),
])
def test_eval_cli_bad_fid_file(name, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, tmp_path / "alexnet.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x00" * 100)
    res = runner.invoke(app, ["eval", "--checkpoint", "missing.pt", "--data", "d", "--fid-inception", name])
    assert res.exit_code == 2
    assert res.output.strip().startswith(message) and len(res.output.strip().splitlines()) == 1
