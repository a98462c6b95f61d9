"""LPIPS (AlexNet) from local files: key/shape checks, metric properties on a real face, the eval CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from conftest import load_face
from test_hifacegan_cli import run, runner  # noqa: F401  (module fixture: a tiny trained checkpoint)

from cli.hifacegan_cli import app
from hifacegan.lpips import CHANNELS, LPIPS


def weight_dicts(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Random weights in the torchvision AlexNet and LPIPS linear-layer key layouts."""
    torch.manual_seed(seed)
    alexnet = {f"features.{k}": v.clone() for k, v in LPIPS().features.state_dict().items()}
    alexnet["classifier.1.weight"] = torch.zeros(2, 2)  # torchvision's head: ignored
    linear = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) / c for i, c in enumerate(CHANNELS)}
    return alexnet, linear


def write_weight_files(tmp) -> tuple:
    """The two LPIPS files (AlexNet features, v0.1 linear layers) of `weight_dicts`, in `tmp`."""
    alexnet, linear = weight_dicts()
    torch.save(alexnet, tmp / "alexnet.pth")
    torch.save(linear, tmp / "alex.pth")
    return tmp / "alexnet.pth", tmp / "alex.pth"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_weight_files(tmp_path_factory.mktemp("lpips"))


@pytest.fixture(scope="module")
def net(files):
    return LPIPS.from_files(*files)


def as_tensor(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def test_loaded_weights_are_the_files(net, files):
    alexnet, linear = weight_dicts()
    assert torch.equal(net.features[10].bias, alexnet["features.10.bias"])
    assert torch.equal(net.lins[4], linear["lin4.model.1.weight"])
    assert not any(p.requires_grad for p in net.parameters()) and not net.train().training


def test_metric_properties_on_a_real_face(net):
    face = load_face(0, 128)
    rng = np.random.default_rng(0)
    noisy = np.clip(face + rng.normal(0, 25, face.shape), 0, 255).astype(np.uint8)
    x, y = as_tensor(face, face), as_tensor(face, noisy)
    d = net(x, y)
    assert d.shape == (2,) and d[0] == 0 and d[1] > 0
    assert torch.allclose(net(y, x), d)
    assert torch.equal(net(x[:1], x[:1]), torch.zeros(1))
    q90, q10 = net(as_tensor(face, face), as_tensor(jpeg(face, 90), jpeg(face, 10)))
    assert 0 < q90 < q10


def test_other_face_is_farther_than_a_light_blur(net):
    a, b = load_face(0, 64), load_face(1, 64)
    blurred = cv2.GaussianBlur(a, (3, 3), 0.6)
    near, far = net(as_tensor(a, a), as_tensor(blurred, b))
    assert near < far


@pytest.mark.parametrize(("which", "edit", "message"), [
    ("alexnet", lambda d: d.pop("features.3.weight"), "alexnet.pth is not a torchvision AlexNet state dict; missing: features.3.weight"),
    ("alexnet", lambda d: d.update({"features.8.bias": torch.zeros(3)}),
     "alexnet.pth is not a torchvision AlexNet state dict; shape mismatch: features.8.bias (3,) != (256,)"),
    ("alexnet", lambda d: d.update({"features.12.weight": torch.zeros(1)}), "alexnet.pth is not a torchvision AlexNet state dict; unexpected: features.12"),
    ("linear", lambda d: d.pop("lin2.model.1.weight"), "alex.pth is not an LPIPS v0.1 'alex' linear-layer file; missing: lin2.model.1.weight"),
    ("linear", lambda d: d.update({"lin0.model.1.weight": torch.rand(1, 32, 1, 1)}),
     "alex.pth is not an LPIPS v0.1 'alex' linear-layer file; shape mismatch: lin0.model.1.weight (1, 32, 1, 1) != (1, 64, 1, 1)"),
    ("linear", lambda d: d.update({"lin1.model.1.weight": -torch.rand(1, 192, 1, 1)}),
     "alex.pth: key lin1.model.1.weight has negative weights"),
    ("linear", lambda d: d.update({"lin5.model.1.weight": torch.rand(1)}), "alex.pth is not an LPIPS v0.1 'alex' linear-layer file; unexpected: lin5"),
])
def test_bad_keys_are_one_line_errors(which, edit, message, tmp_path):
    alexnet, linear = weight_dicts()
    edit(alexnet if which == "alexnet" else linear)
    torch.save(alexnet, tmp_path / "alexnet.pth")
    torch.save(linear, tmp_path / "alex.pth")
    with pytest.raises(ValueError) as info:
        LPIPS.from_files(tmp_path / "alexnet.pth", tmp_path / "alex.pth")
    assert message in str(info.value) and len(str(info.value).splitlines()) == 1


def test_unreadable_missing_and_small_inputs(files, net, tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pth: cannot load AlexNet weights"):
        LPIPS.from_files(tmp_path / "junk.pth", files[1])
    with pytest.raises(ValueError, match="nowhere.pth: LPIPS linear file not found"):
        LPIPS.from_files(files[0], tmp_path / "nowhere.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        LPIPS.from_files(tmp_path / "list.pth", files[1])
    with pytest.raises(ValueError, match="at least 31x31"):
        net(torch.rand(1, 3, 30, 64), torch.rand(1, 3, 30, 64))


def test_eval_cli_with_lpips(run, files):  # noqa: F811
    tmp, shards, ckpt, _ = run
    args = ["eval", "--checkpoint", str(ckpt), "--data", str(shards), "--device", "cpu"]
    res = runner.invoke(app, [*args, "--json", str(tmp / "lpips.json"),
                              "--lpips-alexnet", str(files[0]), "--lpips-linear", str(files[1])])
    assert res.exit_code == 0, res.output
    assert "LPIPS (alex)" in res.output and "FID: not available" in res.output
    result = json.loads((tmp / "lpips.json").read_text())
    m = result["metrics"]
    assert m["lpips_lq"] > 0 and m["lpips_restored"] > 0 and result["fid"] is None
    assert result["lpips"] == {"net": "alex", "version": "0.1", "alexnet": str(files[0]), "linear": str(files[1])}
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "--lpips-alexnet and --lpips-linear" in res.output


@pytest.mark.parametrize(("extra", "message"), [
    (["--lpips-alexnet", "a.pth"], "error: --lpips-alexnet and --lpips-linear go together"),
    (["--lpips-linear", "b.pth"], "error: --lpips-alexnet and --lpips-linear go together"),
    (["--lpips-alexnet", "a.pth", "--lpips-linear", "b.pth"], "error: LPIPS weights: a.pth: AlexNet file not found"),
])
def test_eval_cli_lpips_errors(extra, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["eval", "--checkpoint", "missing.pt", "--data", "d", *extra])
    assert res.exit_code == 2
    assert res.output.strip().startswith(message) and len(res.output.strip().splitlines()) == 1
