"""facedeg.imread, facedeg.crop, facedeg.codec: robust reading of awkward files, crop/resize, and shard encode/decode."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from facedeg.codec import decode, encode, encode_png, psnr
from facedeg.crop import crop_and_resize, resize
from facedeg.errors import ImageError
from facedeg.imread import decode_image, decode_image_ex, read_image
from facedeg.samples import sample_paths

RNG = np.random.default_rng(0)
BASE = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)  # H=30, W=40


def pil_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def exif_rotated(orientation: int) -> bytes:
    exif = Image.Image().getexif()
    exif[0x0112] = orientation
    return pil_bytes(Image.fromarray(BASE), "PNG", exif=exif.tobytes())


def animated_gif() -> bytes:
    frames = [Image.fromarray(BASE).convert("P"), Image.fromarray(255 - BASE).convert("P")]
    return pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])


def png16(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    assert ok
    return buf.tobytes()


# (name, bytes, expected shape): every layout a photo folder may hold ends as uint8 HxWx3
FORMATS = [
    ("rgb.png", pil_bytes(Image.fromarray(BASE), "PNG"), (30, 40, 3)),
    ("gray.png", pil_bytes(Image.fromarray(BASE).convert("L"), "PNG"), (30, 40, 3)),
    ("bilevel.png", pil_bytes(Image.fromarray(BASE).convert("1"), "PNG"), (30, 40, 3)),
    ("gray_alpha.png", pil_bytes(Image.fromarray(BASE).convert("LA"), "PNG"), (30, 40, 3)),
    ("rgba.png", pil_bytes(Image.fromarray(BASE).convert("RGBA"), "PNG"), (30, 40, 3)),
    ("palette.png", pil_bytes(Image.fromarray(BASE).convert("P"), "PNG"), (30, 40, 3)),
    ("palette_trns.png", pil_bytes(Image.fromarray(BASE).convert("P"), "PNG", transparency=0), (30, 40, 3)),
    ("cmyk.jpg", pil_bytes(Image.fromarray(BASE).convert("CMYK"), "JPEG"), (30, 40, 3)),
    ("cmyk.tif", pil_bytes(Image.fromarray(BASE).convert("CMYK"), "TIFF"), (30, 40, 3)),
    ("gray16.png", png16(BASE[..., 0].astype(np.uint16) * 257), (30, 40, 3)),
    ("rgb16.png", png16(BASE.astype(np.uint16) * 257), (30, 40, 3)),
    ("gray16.tif", pil_bytes(Image.fromarray(BASE[..., 0].astype(np.uint16) * 257), "TIFF"), (30, 40, 3)),
    ("float.tif", pil_bytes(Image.fromarray(BASE[..., 0].astype(np.float32) / 255), "TIFF"), (30, 40, 3)),
    ("anim.gif", animated_gif(), (30, 40, 3)),
    ("rgb.bmp", pil_bytes(Image.fromarray(BASE), "BMP"), (30, 40, 3)),
    ("rgb.webp", pil_bytes(Image.fromarray(BASE), "WEBP", lossless=True), (30, 40, 3)),
    ("rgb.jpg", pil_bytes(Image.fromarray(BASE), "JPEG", quality=95), (30, 40, 3)),
    ("rot90.png", exif_rotated(6), (40, 30, 3)),  # EXIF orientation 6: stored landscape, shown portrait
    ("mirror.png", exif_rotated(2), (30, 40, 3)),
]


@pytest.mark.parametrize("name,data,shape", FORMATS, ids=[f[0] for f in FORMATS])
def test_every_layout_decodes_to_rgb8(name: str, data: bytes, shape: tuple) -> None:
    img = decode_image(data, name)
    assert img.shape == shape and img.dtype == np.uint8 and img.flags.c_contiguous


def test_lossless_layouts_keep_their_values() -> None:
    assert (decode_image(FORMATS[0][1], "rgb.png") == BASE).all()
    bgr16 = np.ascontiguousarray(BASE[..., ::-1]).astype(np.uint16) * 257  # cv2 writes BGR
    assert (decode_image(png16(bgr16), "rgb16.png") == BASE).all()
    gray16 = decode_image(png16(BASE[..., 0].astype(np.uint16) * 257), "gray16.png")
    assert (gray16 == BASE[..., :1]).all()
    assert (decode_image(exif_rotated(6), "rot.png") == np.rot90(BASE, -1)).all()
    assert (decode_image(exif_rotated(2), "mirror.png") == BASE[:, ::-1]).all()


def test_alpha_is_composited_over_white() -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = 10
    rgba[0, 0, 3] = 255  # opaque
    rgba[0, 1, 3] = 0  # transparent
    rgba[1, :, 3] = 128
    img = decode_image(pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"), "a.png")
    assert img[0, 0].tolist() == [10, 10, 10]
    assert img[0, 1].tolist() == [255, 255, 255]
    assert 125 <= img[1, 0, 0] <= 135


def test_plain_png_flag_only_for_8bit_rgb_png_without_rotation() -> None:
    assert decode_image_ex(FORMATS[0][1], "rgb.png").plain_png
    for name, data, _ in FORMATS[1:]:
        assert not decode_image_ex(data, name).plain_png, name


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "empty file"),
        (b"hello, I am a text file\n", "not a recognised image format"),
        (FORMATS[0][1][:120], "truncated"),
        (FORMATS[16][1][:300], "truncated"),  # jpeg cut short
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image"),  # header only, garbage after
    ],
    ids=["empty", "text", "truncated-png", "truncated-jpg", "garbage-png"],
)
def test_bad_bytes_raise_one_line_image_error(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError) as e:
        decode_image(data, "photos/x 1.png")
    msg = str(e.value)
    assert msg.startswith("photos/x 1.png: ") and reason in msg and "\n" not in msg


def test_decompression_bomb_is_refused_before_decoding() -> None:
    big = pil_bytes(Image.new("1", (5000, 4000)), "PNG")  # 20 Mpx in a few kB
    assert len(big) < 20_000
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(big, "bomb.png", max_pixels=1_000_000)


def test_read_image_file_errors(tmp_path) -> None:
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(ImageError, match="is a directory"):
        read_image(tmp_path / "dir.jpg")
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.png")
    p = tmp_path / "ünï cödé.PNG"
    p.write_bytes(FORMATS[0][1])
    assert (read_image(p) == BASE).all()


def test_center_crop_box_and_size() -> None:
    img, info = crop_and_resize(BASE, 16, "center")
    assert img.shape == (16, 16, 3) and info == {"mode": "center", "box": [5, 0, 35, 30]}
    tall = np.ascontiguousarray(BASE.transpose(1, 0, 2))
    _, info = crop_and_resize(tall, 16, "center")
    assert info["box"] == [0, 5, 30, 35]
    img, info = crop_and_resize(BASE, 20, "none")
    assert img.shape == (20, 20, 3) and info["box"] == [0, 0, 40, 30]


def test_resize_uses_area_down_and_cubic_up() -> None:
    assert (resize(BASE, (15, 20)) == cv2.resize(BASE, (20, 15), interpolation=cv2.INTER_AREA)).all()
    assert (resize(BASE, (60, 80)) == cv2.resize(BASE, (80, 60), interpolation=cv2.INTER_CUBIC)).all()
    assert resize(BASE, (30, 40)) is BASE


def test_face_crop_finds_a_real_face_and_falls_back_on_noise() -> None:
    face = read_image(sample_paths()[0])
    img, info = crop_and_resize(face, 64, "face")
    assert img.shape == (64, 64, 3)
    assert info["face"] is not None and info["fallback"] is None
    x0, y0, x1, y1 = info["box"]
    assert x1 - x0 == y1 - y0 and 0 <= x0 and 0 <= y0 and x1 <= face.shape[1] and y1 <= face.shape[0]
    _, info = crop_and_resize(BASE, 16, "face")
    assert info["face"] is None and "no face" in info["fallback"] and info["box"] == [5, 0, 35, 30]


def test_unknown_crop_mode() -> None:
    with pytest.raises(ImageError, match="--crop"):
        crop_and_resize(BASE, 16, "middle")


def test_encode_decode_round_trip() -> None:
    png = encode_png(BASE, 1)
    assert png == encode_png(BASE, 1)  # deterministic bytes
    assert (decode(png) == BASE).all()
    for fmt in ("jpg", "webp"):
        out = decode(encode(BASE, fmt))
        assert out.shape == BASE.shape and psnr(out, BASE) is not None
    assert psnr(BASE, BASE) is None
    with pytest.raises(ImageError):
        decode(b"not an image", "m.png")


def test_max_pixels_above_pillows_own_limit_is_honoured(monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses > 200 px (30x40 = 1200) by itself
    data = FORMATS[0][1]
    assert (decode_image(data, "big.png", max_pixels=10_000) == BASE).all()
    assert Image.MAX_IMAGE_PIXELS == 100  # Pillow's global is restored
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(data, "big.png", max_pixels=150)


def test_postscript_is_never_handed_to_ghostscript() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(ImageError, match="x.png: not a recognised image format"):
        decode_image(eps, "x.png")


def test_plain_png_fast_path_gives_pillows_pixels() -> None:
    from facedeg.imread import _decode_plain_png, decode_image_ex

    for path in sample_paths():
        data = path.read_bytes()
        fast = _decode_plain_png(data, 10**9)
        assert fast is not None and fast.flags.c_contiguous
        assert np.array_equal(fast, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
        assert decode_image_ex(data, path.name).plain_png
        assert _decode_plain_png(data[:-1], 10**9) is None  # truncated: Pillow path, its message
        assert _decode_plain_png(data, 100) is None  # over the pixel limit: Pillow path refuses it
    rgb = Image.new("RGB", (8, 8), (10, 20, 30))
    buf = io.BytesIO()
    rgb.save(buf, "PNG", transparency=(10, 20, 30))  # tRNS: composited over white by the Pillow path
    assert _decode_plain_png(buf.getvalue(), 10**9) is None
    assert (decode_image_ex(buf.getvalue(), "t.png").rgb == 255).all()
