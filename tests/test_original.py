"""Importing the authors' released weights (issue 10, parts 2 and 3).

The proof: state dicts written by the authors' own code and its outputs on the same input
(tests/data/authors, see its README) against ours after ``import-original``.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _shards import write_shards
from typer.testing import CliRunner

from cli.hifacegan_cli import app
from hifacegan.errors import CheckpointError
from hifacegan.infer import from_signed, io_range_of, run_generator, to_signed
from hifacegan.models import MultiscaleDiscriminator, build_generator
from hifacegan.original import (
    convert_generator,
    generator_key,
    import_original,
    infer_generator,
    save_imported,
)
from hifacegan.restore import load_generator

DATA = Path(__file__).parent / "data" / "authors"
TOLERANCE = 1e-4  # max |ours - theirs| on the [0, 1] scale
runner = CliRunner()
GENERATORS = [("hifacegan", "hifacegan_ngf1_64"), ("lipspade", "lipspade_ngf1_64")]


def _ref(name: str) -> dict[str, np.ndarray]:
    with np.load(DATA / f"{name}.npz") as z:
        return dict(z)


def _imported(tmp_path: Path, name: str, **kwargs) -> Path:
    out = tmp_path / f"{name}.pt"
    save_imported(import_original(DATA / f"{name}.pth", size=64, **kwargs), out)
    return out


@pytest.mark.parametrize(("variant", "name"), GENERATORS)
@pytest.mark.parametrize(("norm", "reference"), [("instance", "out_train"), ("batch", "out_eval")])
def test_ours_reproduces_the_authors_generator(variant, name, norm, reference, tmp_path) -> None:
    """instance: their test protocol (train mode, batch 1); batch: their eval mode (running statistics)."""
    G, info = load_generator(_imported(tmp_path, name, norm=norm))
    assert info["variant"] == variant and info["ngf"] == 1 and info["io_range"] == "unit" and info["norm"] == norm
    ref = _ref(name)
    lq = torch.from_numpy(ref["lq"])[None]
    with torch.no_grad():  # the raw tanh output, before any clipping
        raw = G(torch.from_numpy(ref["lq"].transpose(2, 0, 1) / 255).float()[None])[0].numpy()
    assert np.abs(raw - ref[reference]).max() <= TOLERANCE and ref[reference].std() > 0.1
    out = run_generator(G, lq)[0].numpy()  # what restore and eval run: clipped to [0, 1]
    assert np.abs(out - np.clip(ref[reference], 0, 1)).max() <= TOLERANCE


def test_signed_reading_of_the_same_weights_is_far_off(tmp_path) -> None:
    """The [0, 1] convention matters: run as one of ours ([-1, 1]) the same weights miss by far."""
    G, _ = load_generator(_imported(tmp_path, "lipspade_ngf1_64"))
    G.config["io_range"] = "signed"
    ref = _ref("lipspade_ngf1_64")
    out = run_generator(G, torch.from_numpy(ref["lq"])[None])[0].numpy()
    assert np.abs(out - np.clip(ref["out_train"], 0, 1)).max() > 0.1


def test_discriminator_import(tmp_path) -> None:
    ck = import_original(DATA / "hifacegan_ngf1_64.pth", DATA / "D_ndf4_64.pth", size=64)
    cfg = ck["config"]["discriminator"]
    assert cfg == {"in_channels": 6, "ndf": 4, "n_layers": 4, "num_d": 2, "io_range": "unit"}
    D = MultiscaleDiscriminator(**cfg)
    D.load_state_dict(ck["D"])
    ref = _ref("D_ndf4_64")
    lq, img = (from_signed(torch.from_numpy(ref[k]).permute(2, 0, 1)[None].float() / 127.5 - 1, "unit")
               for k in ("lq", "img"))
    with torch.no_grad():
        preds = D.eval()(lq, img)
    for scale in range(2):
        for layer in (3, 4):
            assert np.abs(preds[scale][layer][0].numpy() - ref[f"s{scale}_l{layer}"]).max() <= TOLERANCE


@pytest.mark.parametrize("variant", ["hifacegan", "lipspade"])
@pytest.mark.parametrize("ngf", [2, 3])
def test_variant_and_ngf_come_from_the_tensors(variant: str, ngf: int) -> None:
    """An authors'-named state dict of any width (built from one of ours by the key map) is recognised."""
    ours = build_generator(variant, ngf, 64).state_dict()
    theirs = {generator_key(k, variant): v for k, v in ours.items() if not k.endswith((".gamma.bias", ".beta.bias"))}
    assert infer_generator(theirs) == (variant, ngf)
    wrapped = {f"module.{k}": v for k, v in theirs.items()}  # saved from a DataParallel wrapper
    G = convert_generator(wrapped if ngf == 3 else theirs, "x.pth", size=64)
    assert G.config == {"variant": variant, "ngf": ngf, "size": 64, "norm": "instance", "io_range": "unit"}


def _state(name: str) -> dict[str, torch.Tensor]:
    return torch.load(DATA / f"{name}.pth", weights_only=True)


def _edit(name: str, change) -> dict[str, torch.Tensor]:
    state = _state(name)
    change(state)
    return state


BAD_FILES = [
    ("unknown tensor", lambda s: s.update({"ups.9.conv_0.bias": torch.zeros(3)}), "unexpected: ups.9.conv_0.bias"),
    ("missing tensor", lambda s: s.pop("G_middle_1.norm_0.mlp_beta.weight"),
     "missing: G_middle_1.norm_0.mlp_beta.weight"),
    ("mis-shaped tensor", lambda s: s.update({"to_rgbs.3.weight": torch.zeros(3, 2, 3, 3)}),
     "shape mismatch: to_rgbs.3.weight (3, 2, 3, 3) != (3, 1, 3, 3)"),
    ("not a tensor", lambda s: s.update({"fc.bias": [1.0]}), "shape mismatch: fc.bias list"),
]


@pytest.mark.parametrize(("label", "change", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_tensors_give_one_line(label, change, message, tmp_path) -> None:
    path = tmp_path / "latest_net_G.pth"
    torch.save(_edit("hifacegan_ngf1_64", change), path)
    with pytest.raises(CheckpointError) as err:
        import_original(path, size=64)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{path} is not an authors' hifacegan generator (ngf 1)")
    assert message in text


def test_cli_import_restore_eval(tmp_path) -> None:
    out = tmp_path / "authors.pt"
    res = runner.invoke(app, ["import-original", str(DATA / "lipspade_ngf1_64.pth"), "--out", str(out), "--size", "64",
                              "--discriminator", str(DATA / "D_ndf4_64.pth")])
    assert res.exit_code == 0, res.output
    assert f"imported lipspade ngf 1 (norm instance, io_range unit, 64px) and D (2 scales, ndf 4) into {out}" in res.output
    ck = torch.load(out, weights_only=True)
    assert set(ck) == {"G", "D", "step", "config"} and ck["config"]["generator"]["io_range"] == "unit"
    # restore: the bundled-face input of the fixture, at the model size, gives the authors' output
    ref = _ref("lipspade_ngf1_64")
    cv2.imwrite(str(tmp_path / "in.png"), cv2.cvtColor(ref["lq"], cv2.COLOR_RGB2BGR))
    res = runner.invoke(app, ["restore", str(tmp_path / "in.png"), "--checkpoint", str(out), "--out",
                              str(tmp_path / "restored"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    restored = cv2.cvtColor(cv2.imread(str(tmp_path / "restored" / "in.png")), cv2.COLOR_BGR2RGB)
    theirs = np.round(np.clip(ref["out_train"], 0, 1) * 255).transpose(1, 2, 0)
    assert np.abs(restored.astype(float) - theirs).max() <= 1
    shards = write_shards(tmp_path / "shards", 2, 2, per_shard=2)
    res = runner.invoke(app, ["eval", "--checkpoint", str(out), "--data", str(shards), "--device", "cpu"])
    assert res.exit_code == 0 and "lipspade ngf 1 at 64px" in res.output, res.output


@pytest.mark.parametrize(("args", "message"), [
    (["--norm", "sync"], "norm must be instance or batch, got 'sync'"),
    (["--variant", "spade"], "unknown variant 'spade'; valid: hifacegan, lipspade"),
    (["--ngf", "2"], "is not an authors' lipspade generator (ngf 2) state dict; shape mismatch"),
    (["--size", "100"], "size must be a multiple of 32"),
    (["--variant", "hifacegan"], "missing: encoder.head.0.weight"),
])
def test_cli_option_errors(args, message, tmp_path) -> None:
    res = runner.invoke(app, ["import-original", str(DATA / "lipspade_ngf1_64.pth"), "--out", str(tmp_path / "o.pt"), *args])
    assert res.exit_code == 2 and message in res.output and not (tmp_path / "o.pt").exists(), res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("content", ["not a state dict", "pickle with code"])
def test_cli_unusable_files(content, tmp_path) -> None:
    path = tmp_path / "latest_net_G.pth"
    if content == "not a state dict":
        torch.save(torch.zeros(3), path)
        message = "generator file does not hold a state dict"
    else:
        import pickle
        path.write_bytes(pickle.dumps(Path("x")))
        message = "cannot load generator weights"
    res = runner.invoke(app, ["import-original", str(path), "--out", str(tmp_path / "o.pt")])
    assert res.exit_code == 2 and message in res.output, res.output
    res = runner.invoke(app, ["import-original", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "o.pt")])
    assert res.exit_code == 2 and "generator file not found" in res.output
    res = runner.invoke(app, ["import-original", str(path), "--out", str(path)])
    assert res.exit_code == 2 and "would overwrite an input file" in res.output


def test_io_range_helpers() -> None:
    x = torch.linspace(-1, 1, 5)
    assert torch.equal(from_signed(x, "signed"), x) and torch.equal(to_signed(x, "signed"), x)
    assert torch.allclose(from_signed(x, "unit"), (x + 1) / 2) and torch.allclose(to_signed(from_signed(x, "unit"), "unit"), x)
    assert io_range_of(build_generator("lipspade", 1, 64)) == "signed"
    assert io_range_of(build_generator("lipspade", 1, 64, io_range="unit")) == "unit"
    with pytest.raises(ValueError, match=re.escape("unknown io_range 'bytes'")):
        build_generator("lipspade", 1, 64, io_range="bytes")
