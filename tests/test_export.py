"""Generator-only export (safetensors + ONNX), restore/eval from the exported file, fine-tuning with
`train --init`, and eval's per-image rows on a model: on a tiny run trained through the CLI."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch
from _shards import degrade, face_crops, write_shards
from typer.testing import CliRunner

from cli.hifacegan_cli import app
from hifacegan.checkpoint import load_checkpoint
from hifacegan.errors import CheckpointError
from hifacegan.export import EMA_KEY, build_from_weights, read_weights
from hifacegan.restore import load_generator

runner = CliRunner()
N_TRAIN, N_VAL, SIZE = 4, 4, 64
TINY = ["--size", str(SIZE), "--ngf", "8", "--workers", "0", "--log-every", "1"]


def invoke(*args: str) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Shards, a 2-step tiny run, and a copy of its checkpoint with an EMA generator that differs from G."""
    tmp = tmp_path_factory.mktemp("export")
    shards = write_shards(tmp / "shards", N_TRAIN, N_VAL, per_shard=2)
    (tmp / "cfg.yaml").write_text("ndf: 8\nval_samples: 2\nval_every: 2\nsample_every: 2\n")
    invoke("train", "--data", shards, "--out", tmp / "run", "--config", tmp / "cfg.yaml", "--max-steps", "2",
           "--ckpt-every", "2", *TINY)
    ck = load_checkpoint(tmp / "run" / "checkpoints" / "latest.pt")
    ck[EMA_KEY] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ck["G"].items()}
    torch.save(ck, tmp / "with_ema.pt")
    return tmp, shards


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("options, key", [([], EMA_KEY), (["--no-ema"], "G")])
def test_export_safetensors(run, options, key):
    """The exported file holds exactly the chosen generator (EMA by default) and its config."""
    tmp, _ = run
    out = tmp / f"G{len(options)}.safetensors"
    output = invoke("export", tmp / "with_ema.pt", "--out", out, *options)
    assert f"wrote {out}" in output and ("EMA" if key == EMA_KEY else "raw") in output
    ck = load_checkpoint(tmp / "with_ema.pt")
    w = read_weights(out)
    assert w.arch == ck["config"]["generator"] and w.step == 2 and w.ema == (key == EMA_KEY)
    assert w.state.keys() == ck[key].keys()
    assert all(torch.equal(w.state[k], ck[key][k]) for k in w.state)
    assert out.stat().st_size < (tmp / "with_ema.pt").stat().st_size / 4  # no D, optimisers, second G
    from safetensors import safe_open
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "hifacegan-generator" and json.loads(meta["generator"])["ngf"] == 8
    assert meta["io_range"] == "signed" and meta["weights"] == ("ema" if key == EMA_KEY else "raw")


def test_export_onnx_matches_pytorch(run):
    """ONNX graph (opset >= 17, dynamic batch) run by onnxruntime: max |diff| <= 1e-3 at batch 1 and 3."""
    import onnx
    import onnxruntime as ort

    tmp, _ = run
    out, graph = tmp / "G.safetensors", tmp / "G.onnx"
    output = invoke("export", tmp / "run", "--out", out, "--onnx", graph)
    assert "onnxruntime vs PyTorch on CPU: max |diff|" in output
    model = onnx.load(str(graph))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert not model.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_value")  # symbolic batch
    assert json.loads({p.key: p.value for p in model.metadata_props}["generator"])["size"] == SIZE
    G, _ = load_generator(out)
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(batch)) * 2 - 1
        with torch.no_grad():
            want = G(x).numpy()
        got = session.run(None, {"lq": x.numpy()})[0]
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-3


def test_restore_and_eval_accept_exported_file(run):
    """restore/eval give the same images and numbers from the exported file as from the checkpoint."""
    tmp, shards = run
    out = tmp / "G_raw.safetensors"
    invoke("export", tmp / "run" / "checkpoints" / "latest.pt", "--out", out)
    src = tmp / "faces"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), cv2.cvtColor(face_crops(1, 100)[0], cv2.COLOR_RGB2BGR))
    results = []
    for flag, weights in (("--checkpoint", tmp / "run" / "checkpoints" / "latest.pt"), ("--weights", out)):
        dest = tmp / f"restored{len(results)}"
        assert "restored 1 image(s)" in invoke("restore", src, flag, weights, "--out", dest, "--device", "cpu")
        invoke("eval", flag, weights, "--data", shards, "--json", tmp / "e.json", "--device", "cpu")
        results.append((cv2.imread(str(dest / "a.png")), json.loads((tmp / "e.json").read_text())["metrics"]))
    assert np.array_equal(results[0][0], results[1][0]) and results[0][1] == results[1][1]
    assert "restored 1 image(s)" in invoke("restore", src, "--weights", tmp / "run", "--out", tmp / "r3")


def test_eval_rows_equal_restored_files(run):
    """eval on a model scores the output rounded to uint8, so its per-image rows equal `eval --pred --gt`
    on the PNGs that `restore` writes for the same LQ images; the JSON means are the means of the rows."""
    tmp, shards = run
    lq_dir, hq_dir = tmp / "val_lq", tmp / "val_hq"
    lq_dir.mkdir()
    hq_dir.mkdir()
    faces = face_crops(N_TRAIN + N_VAL, SIZE)
    for index in range(N_TRAIN, N_TRAIN + N_VAL):
        hq = faces[index]
        cv2.imwrite(str(lq_dir / f"{index:08d}.png"), cv2.cvtColor(degrade(hq, index), cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(hq_dir / f"{index:08d}.png"), cv2.cvtColor(hq, cv2.COLOR_RGB2BGR))
    ckpt = tmp / "run" / "checkpoints" / "latest.pt"
    invoke("restore", lq_dir, "--checkpoint", ckpt, "--out", tmp / "val_out", "--device", "cpu")
    for spec in ([], ["--y-channel", "--crop-border", "4"]):
        invoke("eval", "--checkpoint", ckpt, "--data", shards, "--csv", tmp / "model.csv", "--json",
               tmp / "model.json", "--device", "cpu", *spec)
        invoke("eval", "--pred", tmp / "val_out", "--gt", hq_dir, "--csv", tmp / "folder.csv", *spec)
        with open(tmp / "model.csv") as f:
            model_rows = {r["key"]: r for r in csv.DictReader(f)}
        with open(tmp / "folder.csv") as f:
            folder_rows = {r["name"]: r for r in csv.DictReader(f)}
        assert model_rows.keys() == folder_rows.keys() and len(model_rows) == N_VAL
        for key, row in model_rows.items():
            for metric in ("psnr", "ssim", "ms_ssim"):
                assert abs(float(row[f"{metric}_restored"]) - float(folder_rows[key][metric])) < 1e-9
        means = json.loads((tmp / "model.json").read_text())["metrics"]
        assert means["psnr_restored"] == round(np.mean([float(r["psnr_restored"]) for r in model_rows.values()]), 4)


def test_train_init(run):
    """--init from an exported generator: G starts from it (lr 0 keeps it), D from scratch; --init-d from
    a checkpoint starts D from the checkpoint's D."""
    tmp, shards = run
    exported = tmp / "G_init.safetensors"
    invoke("export", tmp / "run", "--out", exported)
    (tmp / "lr0.yaml").write_text("ndf: 8\nlr_g: 0\nlr_d: 0\nval_samples: 2\n")
    G0 = build_from_weights(read_weights(exported))
    source = load_checkpoint(tmp / "run" / "checkpoints" / "latest.pt")
    for name, init, extra in (("ft_g", exported, []), ("ft_gd", tmp / "run", ["--init-d"])):
        output = invoke("train", "--data", shards, "--out", tmp / name, "--config", tmp / "lr0.yaml",
                        "--max-steps", "1", "--init", init, *extra, *TINY)
        assert "initialised G from" in output and ("D from it too" if extra else "D from scratch") in output
        ck = load_checkpoint(tmp / name / "checkpoints" / "latest.pt")
        assert ck["step"] == 1 and ck["config"]["train"]["init"] == str(init)
        G1 = build_from_weights(read_weights(tmp / name, ema=False))
        assert all(torch.equal(v, params(G1)[k]) for k, v in params(G0).items())
        same_d = [torch.equal(v, source["D"][k]) for k, v in ck["D"].items() if k.endswith(("weight", "bias"))]
        assert all(same_d) if extra else not any(same_d)


@pytest.mark.parametrize("args, message", [
    (["--init", "{exported}", "--init-d"], "holds no discriminator"),
    (["--init", "{exported}", "--ngf", "16"], "ngf 8 (--init) vs 16 (this run); train with --ngf 8"),
    (["--init", "{tmp}/nothing.pt"], "--init: not found"),
    (["--init-d"], "pass --init too"),
])
def test_train_init_errors(run, args, message):
    tmp, shards = run
    exported = tmp / "G_err.safetensors"
    if not exported.exists():
        invoke("export", tmp / "run", "--out", exported)
    args = [a.format(tmp=tmp, exported=exported) for a in args]
    base = ["train", "--data", str(shards), "--out", str(tmp / "bad"), "--max-steps", "1", *TINY]
    if "--ngf" in args:
        base[base.index("--ngf"):base.index("--ngf") + 2] = []
    res = runner.invoke(app, [*base, *args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
    assert not (tmp / "bad" / "checkpoints").exists()


def test_unusable_weight_files(run, tmp_path):
    from safetensors.torch import save_file

    tmp, _ = run
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "pt"})
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    for path, message in ((tmp_path / "other.safetensors", "without hifacegan metadata"),
                          (tmp_path / "junk.safetensors", "unreadable"),
                          (tmp_path, "without checkpoints/latest.pt"),
                          (tmp_path / "none.pt", "not found")):
        with pytest.raises(CheckpointError, match=message):
            read_weights(path)
    res = runner.invoke(app, ["export", str(tmp / "run"), "--out", str(tmp_path / "G.pt")])
    assert res.exit_code == 2 and "must end with one of .safetensors" in res.output
