"""Metrics comparable with published tables: our PSNR/SSIM against reference values computed outside
this repository, and `hifacegan eval --pred DIR --gt DIR` (folder against folder, no model).

Reference values (recorded below, not computed here) come from a scratch environment outside the repo:
- scikit-image 0.26.0: ``peak_signal_noise_ratio(gt, pred, data_range=255)`` and
  ``structural_similarity(gt, pred, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)``;
- BasicSR's ``basicsr/metrics/psnr_ssim.py`` (``calculate_psnr``/``calculate_ssim``, XPixelGroup/BasicSR
  commit 8d56e3a045f9fb3e1d8872f92ee4a4f07f886b0a) run on the same pairs as BGR arrays (as cv2 reads
  them), with ``crop_border`` 0 or 4 and ``test_y_channel`` False or True.
The pairs are rebuilt here by the same pure-numpy recipe (`PAIRS`); their pixel sums pin the inputs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli.hifacegan_cli import app
from facedeg.samples import sample_paths
from hifacegan.compare import image_scores, match_folders
from hifacegan.errors import HiFaceGANError
from hifacegan.metrics import MetricSpec, prepare, quantize, rgb_to_y

runner = CliRunner()


def face_pair() -> tuple[np.ndarray, np.ndarray]:
    """A 96x80 crop of obama.png (gt) and its 2x2 block means plus a fixed signed pattern (pred)."""
    path = next(p for p in sample_paths() if p.name == "obama.png")
    gt = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)[200:296, 180:260]
    h, w = gt.shape[:2]
    blocks = gt.astype(np.int32).reshape(h // 2, 2, w // 2, 2, 3).sum(axis=(1, 3)) // 4
    pred = np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)
    i, j, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    return gt, np.clip(pred + (i * 7 + j * 13 + c * 5) % 11 - 5, 0, 255).astype(np.uint8)


def synthetic_pair() -> tuple[np.ndarray, np.ndarray]:
    """A 64x72 gradient with a checker pattern (gt) and a shifted, brightened copy (pred)."""
    i, j, c = np.meshgrid(np.arange(64), np.arange(72), np.arange(3), indexing="ij")
    gt = ((i * 3 + j * 2 + c * 40 + 20 * ((i // 4 + j // 6) % 2)) % 256).astype(np.uint8)
    return gt, np.clip(gt.astype(np.int32) + 9 - (i * j + c) % 19, 0, 255).astype(np.uint8)


# name: (recipe, gt pixel sum, pred pixel sum, references)
PAIRS = {
    "face": (face_pair, 3290940, 3282305, {
        "skimage": (29.39910430478794, 0.8267989430987268),
        "basicsr_rgb_crop0": (29.39910430478794, 0.8267989430987476),
        "basicsr_y_crop0": (31.30688191495259, 0.875291155723787),
        "basicsr_rgb_crop4": (29.314315164575675, 0.8230675715062223),
        "basicsr_y_crop4": (31.21043558485127, 0.8707780668072559)}),
    "synthetic": (synthetic_pair, 1862656, 1869874, {
        "skimage": (33.149992541856605, 0.9234796764393923),
        "basicsr_rgb_crop0": (33.149992541856605, 0.9234796764393934),
        "basicsr_y_crop0": (35.21700516238647, 0.9350966477941992),
        "basicsr_rgb_crop4": (33.23315126159702, 0.9248847823012983),
        "basicsr_y_crop4": (35.337899035496115, 0.9336847986854465)}),
}
# reference: the MetricSpec that must reproduce it
SPECS = {
    "skimage": MetricSpec(),
    "basicsr_rgb_crop0": MetricSpec(),
    "basicsr_y_crop0": MetricSpec(y_channel=True),
    "basicsr_rgb_crop4": MetricSpec(crop_border=4),
    "basicsr_y_crop4": MetricSpec(y_channel=True, crop_border=4),
}
# BasicSR computes the Y channel in float32 (we use float64): it moves PSNR by ~3e-7 dB, SSIM by ~1e-8
TOLERANCE = {False: (1e-9, 1e-12), True: (1e-5, 1e-7)}


def tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].double() / 255


def pair(name: str) -> tuple[np.ndarray, np.ndarray]:
    make, gt_sum, pred_sum, _ = PAIRS[name]
    gt, pred = make()
    assert (int(gt.astype(np.int64).sum()), int(pred.astype(np.int64).sum())) == (gt_sum, pred_sum)
    return gt, pred


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("reference", SPECS)
def test_matches_reference_values(name, reference):
    gt, pred = pair(name)
    spec = SPECS[reference]
    want_psnr, want_ssim = PAIRS[name][3][reference]
    scores = image_scores(tensor(pred), tensor(gt), spec)
    tol_psnr, tol_ssim = TOLERANCE[spec.y_channel]
    assert abs(scores["psnr"].item() - want_psnr) < tol_psnr
    assert abs(scores["ssim"].item() - want_ssim) < tol_ssim


def test_round_to_uint8_by_default():
    """The float output is scored as the 8-bit file it becomes; --no-round scores the floats."""
    gt, pred = pair("face")
    noisy = tensor(pred) + (torch.rand(tensor(pred).shape, generator=torch.Generator().manual_seed(0)) - 0.5) / 300
    noisy = noisy.clamp(0, 1)
    rounded = image_scores(noisy, tensor(gt), MetricSpec())
    as_file = image_scores(quantize(noisy), tensor(gt), MetricSpec(quantize=False))
    floats = image_scores(noisy, tensor(gt), MetricSpec(quantize=False))
    assert all(torch.allclose(rounded[k], as_file[k], rtol=0, atol=1e-12) for k in rounded)
    assert abs(rounded["psnr"].item() - floats["psnr"].item()) > 1e-4


def test_y_channel_is_bt601():
    """Pure colours map to MATLAB rgb2ycbcr's Y: black 16, white 235, red 81.481, green 144.553, blue 40.966."""
    rgb = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    y = rgb_to_y(rgb.T.reshape(1, 3, 1, 5)).flatten() * 255
    assert torch.allclose(y, torch.tensor([16, 235, 81.481, 144.553, 40.966], dtype=torch.float64))
    with pytest.raises(ValueError, match="crop-border 40 leaves nothing"):
        prepare(tensor(pair("face")[0]), MetricSpec(crop_border=40))


@pytest.fixture
def folders(tmp_path):
    """pred/ and gt/ holding both pairs; gt as BMP (names match without extension), an unmatched extra."""
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    (pred / "sub").mkdir(parents=True)
    (gt / "sub").mkdir(parents=True)
    for name, rel in (("face", "face"), ("synthetic", "sub/synthetic")):
        g, p = pair(name)
        cv2.imwrite(str(gt / f"{rel}.bmp"), cv2.cvtColor(g, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(pred / f"{rel}.png"), cv2.cvtColor(p, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(pred / "extra.png"), np.zeros((8, 8, 3), np.uint8))
    return pred, gt


@pytest.mark.parametrize("options, reference", [([], "skimage"), (["--y-channel", "--crop-border", "4"],
                                                                  "basicsr_y_crop4")])
def test_eval_folders_csv(folders, tmp_path, options, reference):
    pred, gt = folders
    out_csv, out_json = tmp_path / "rows.csv", tmp_path / "eval.json"
    res = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--csv", str(out_csv),
                              "--json", str(out_json), *options])
    assert res.exit_code == 0, res.output
    assert "2 image pairs" in res.output and "1 file(s) only in --pred" in res.output and "extra" in res.output
    with out_csv.open() as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"face", "sub/synthetic"}
    tol_psnr, tol_ssim = TOLERANCE[bool(options)]
    for name, key in (("face", "face"), ("synthetic", "sub/synthetic")):
        want_psnr, want_ssim = PAIRS[name][3][reference]
        assert abs(float(rows[key]["psnr"]) - want_psnr) < tol_psnr
        assert abs(float(rows[key]["ssim"]) - want_ssim) < tol_ssim
    result = json.loads(out_json.read_text())
    assert result["samples"] == 2 and result["unmatched"] == {"pred_only": ["extra"], "gt_only": []}
    assert result["spec"]["y_channel"] is bool(options)
    assert result["metrics"]["psnr"] == round((float(rows["face"]["psnr"]) + float(rows["sub/synthetic"]["psnr"])) / 2, 4)


@pytest.mark.parametrize("args, message", [
    (["--pred", "{pred}"], "--pred and --gt go together"),
    (["--pred", "{pred}", "--gt", "{gt}", "--data", "x"], "without a model"),
    (["--checkpoint", "x.pt"], "pass --checkpoint and --data"),
    (["--pred", "{pred}", "--gt", "{empty}"], "no image files found"),
    (["--pred", "{pred}", "--gt", "{other}"], "no file names in common"),
    (["--pred", "{pred}", "--gt", "{small}"], "must have the same size"),
])
def test_eval_folder_errors(folders, tmp_path, args, message):
    pred, gt = folders
    for name in ("empty", "other", "small"):
        (tmp_path / name).mkdir()
    cv2.imwrite(str(tmp_path / "other" / "nobody.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "small" / "face.png"), np.zeros((8, 8, 3), np.uint8))
    paths = {"pred": pred, "gt": gt, **{n: tmp_path / n for n in ("empty", "other", "small")}}
    res = runner.invoke(app, ["eval", *[a.format(**paths) for a in args]])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output


def test_match_refuses_ambiguous_names(tmp_path):
    for folder in ("p", "g"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "a.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "g" / "a.bmp"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(HiFaceGANError, match="a.bmp and a.png have the same name"):
        match_folders(tmp_path / "p", tmp_path / "g")
    assert Path(tmp_path / "p" / "a.png").is_file()
