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
from hifacegan.checkpoint import EMA_KEY, load_checkpoint
from hifacegan.errors import CheckpointError
from hifacegan.export import build_from_weights, init_models, read_weights
from hifacegan.models import MultiscaleDiscriminator, build_generator
from hifacegan.restore import load_generator

runner = CliRunner()
N_TRAIN, N_VAL, SIZE = 2, 2, 64
TINY = ["--size", str(SIZE), "--ngf", "8", "--workers", "0", "--log-every", "1"]


def invoke(*args: str) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Shards, a 1-step tiny run, and a copy of its checkpoint with an EMA generator that differs from G."""
    tmp = tmp_path_factory.mktemp("export")
    shards = write_shards(tmp / "shards", N_TRAIN, N_VAL, per_shard=2)
    (tmp / "cfg.yaml").write_text("ndf: 8\nval_samples: 2\n")
    invoke("train", "--data", shards, "--out", tmp / "run", "--config", tmp / "cfg.yaml", "--max-steps", "1", *TINY)
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
    assert w.arch == ck["config"]["generator"] and w.step == 1 and w.ema == (key == EMA_KEY)
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
    """restore writes the same images from the exported file as from the checkpoint; eval on the exported
    file scores the output rounded to uint8, so its per-image rows equal `eval --pred --gt` on the PNGs
    that restore wrote for the same LQ images; the JSON means are the means of the rows."""
    tmp, shards = run
    exported = tmp / "G_raw.safetensors"
    invoke("export", tmp / "run" / "checkpoints" / "latest.pt", "--out", exported)
    lq_dir, hq_dir = tmp / "val_lq", tmp / "val_hq"
    lq_dir.mkdir()
    hq_dir.mkdir()
    faces = face_crops(N_TRAIN + N_VAL, SIZE)
    for index in range(N_TRAIN, N_TRAIN + N_VAL):  # the val pairs of write_shards, as PNG files
        hq = faces[index]
        cv2.imwrite(str(lq_dir / f"{index:08d}.png"), cv2.cvtColor(degrade(hq, index), cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(hq_dir / f"{index:08d}.png"), cv2.cvtColor(hq, cv2.COLOR_RGB2BGR))
    for flag, weights, dest in (("--checkpoint", tmp / "run", "out_ckpt"), ("--weights", exported, "out_export")):
        invoke("restore", lq_dir, flag, weights, "--out", tmp / dest, "--device", "cpu")
    for f in (tmp / "out_ckpt").iterdir():
        assert np.array_equal(cv2.imread(str(f)), cv2.imread(str(tmp / "out_export" / f.name)))
    invoke("eval", "--weights", exported, "--data", shards, "--csv", tmp / "model.csv", "--json",
           tmp / "model.json", "--device", "cpu")
    invoke("eval", "--pred", tmp / "out_ckpt", "--gt", hq_dir, "--csv", tmp / "folder.csv")
    with open(tmp / "model.csv") as f:
        model_rows = {r["key"]: r for r in csv.DictReader(f)}
    with open(tmp / "folder.csv") as f:
        folder_rows = {r["name"]: r for r in csv.DictReader(f)}
    assert model_rows.keys() == folder_rows.keys() and len(model_rows) == N_VAL
    for key, row in model_rows.items():
        for metric in ("psnr", "ssim", "ms_ssim"):
            assert abs(float(row[f"{metric}_restored"]) - float(folder_rows[key][metric])) < 1e-9
    result = json.loads((tmp / "model.json").read_text())
    assert result["model"]["source"] == str(exported) and "rows" not in result
    assert result["metrics"]["psnr_restored"] == round(np.mean([float(r["psnr_restored"]) for r in model_rows.values()]), 4)


def test_train_init(run):
    """--init from an exported generator: a new run whose G starts from it (lr 0 keeps it), D from scratch."""
    tmp, shards = run
    exported = tmp / "G_init.safetensors"
    invoke("export", tmp / "run", "--out", exported)
    (tmp / "lr0.yaml").write_text("ndf: 8\nlr_g: 0\nlr_d: 0\nval_samples: 2\n")
    output = invoke("train", "--data", shards, "--out", tmp / "tuned", "--config", tmp / "lr0.yaml",
                    "--max-steps", "1", "--init", exported, *TINY)
    assert "initialised G from" in output and "D from scratch" in output
    ck = load_checkpoint(tmp / "tuned" / "checkpoints" / "latest.pt")
    assert ck["step"] == 1 and ck["config"]["train"]["init"] == str(exported)
    G0, G1 = (build_from_weights(read_weights(p, ema=False)) for p in (exported, tmp / "tuned"))
    assert all(torch.equal(v, params(G1)[k]) for k, v in params(G0).items())
    source = load_checkpoint(tmp / "run" / "checkpoints" / "latest.pt")
    assert not any(torch.equal(v, source["D"][k]) for k, v in ck["D"].items() if k.endswith("weight"))


@pytest.mark.parametrize("init_d", [False, True])
def test_init_models(run, init_d):
    """init_models loads G (EMA weights when present) and, with init_d, the checkpoint's D."""
    tmp, _ = run
    ck = load_checkpoint(tmp / "with_ema.pt")
    cfg = ck["config"]
    G = build_generator(**cfg["generator"])
    D = MultiscaleDiscriminator(**cfg["discriminator"])
    fresh_d = {k: v.clone() for k, v in D.state_dict().items()}
    message = init_models(G, D, tmp / "with_ema.pt", init_d=init_d)
    assert ("D from it too" if init_d else "D from scratch") in message and "EMA weights" in message
    assert all(torch.equal(v, ck[EMA_KEY][k]) for k, v in G.state_dict().items())
    want_d = ck["D"] if init_d else fresh_d
    assert all(torch.equal(v, want_d[k]) for k, v in D.state_dict().items())


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


def test_init_adopts_the_io_range_of_unit_weights(run, tmp_path):
    """Weights made for [0, 1] I/O (the authors' convention): the run adopts their io_range, its G step
    feeds them [0, 1] and maps the output back, and resumed runs and exports keep the convention."""
    from hifacegan.export import export_safetensors
    from hifacegan.infer import from_signed, signed_view, to_signed

    tmp, shards = run
    w = read_weights(tmp / "run")
    w.arch = {**w.arch, "io_range": "unit"}
    export_safetensors(w, tmp_path / "unit.safetensors")
    assert read_weights(tmp_path / "unit.safetensors").io_range == "unit"
    G = build_generator(**{k: v for k, v in w.arch.items() if k != "io_range"})
    D = MultiscaleDiscriminator(**load_checkpoint(tmp / "with_ema.pt")["config"]["discriminator"])
    init_models(G, D, tmp_path / "unit.safetensors")
    assert G.config["io_range"] == "unit" and D.config["io_range"] == "signed"  # D from scratch
    x = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    G.eval()  # train mode would advance spectral norm's power iteration between the two calls
    with torch.no_grad():
        assert torch.equal(signed_view(G, "unit", output=True)(x), to_signed(G(from_signed(x, "unit")), "unit"))
        assert signed_view(G, "signed", output=True) is G
    out = tmp_path / "tuned"
    for extra in ([], ["--resume", "--max-steps", "2"]):
        invoke("train", "--data", shards, "--out", out, "--max-steps", "1", "--init", tmp_path / "unit.safetensors",
               *TINY, *extra)
        ck = load_checkpoint(out / "checkpoints" / "latest.pt")
        assert ck["config"]["generator"]["io_range"] == "unit"
    assert read_weights(out).io_range == "unit" and load_generator(out)[0].config["io_range"] == "unit"
