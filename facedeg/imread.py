"""Robust image reading: any photo a user has, as 8-bit RGB, or one clear error.

Every reader returns a C-contiguous ``uint8`` array of shape ``(H, W, 3)`` in RGB order (EXIF
orientation applied; gray, alpha, CMYK, palette and 16-bit converted; decompression bombs refused), or
raises :class:`facedeg.errors.ImageError` with a one-line message ``"<name>: <reason>"``.

>>> from facedeg.codec import encode_png
>>> import numpy as np
>>> decode_image(encode_png(np.zeros((4, 6, 3), np.uint8)), "x.png").shape
(4, 6, 3)
"""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facedeg.errors import ImageError
from facedeg.files import file_problem, shown

#: Default decompression-bomb limit: images with more pixels are refused before decoding.
DEFAULT_MAX_PIXELS = 80_000_000
#: File extensions (lower case, with dot) recognised as images when scanning folders and tars.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


@dataclass(frozen=True)
class Decoded:
    """A decoded image plus what is needed to decide whether its bytes can pass through unchanged."""

    rgb: np.ndarray
    #: True when the file is an 8-bit RGB PNG without alpha, transparency or EXIF rotation,
    #: i.e. re-encoding it would change nothing but the compressed bytes.
    plain_png: bool


# --------------------------------------------------------------------------- reading


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as ``uint8`` RGB ``(H, W, 3)``; :class:`ImageError` names the file and reason."""
    return decode_image(read_bytes(path), str(path), max_pixels)


def read_bytes(path: str | os.PathLike, name: str | None = None) -> bytes:
    """Read a file's bytes, mapping OS errors to :class:`ImageError` (``name`` defaults to ``path``)."""
    name = shown(path if name is None else name)
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        problem = file_problem(path)
        raise ImageError(f"{name}: {problem or f'unreadable ({e.strerror or e})'}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageError(f"{name}: {file_problem(path) or 'not a regular file'}")
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read()
        except OSError as e:
            raise ImageError(f"{name}: unreadable ({e.strerror or e})") from None


def decode_image(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to ``uint8`` RGB ``(H, W, 3)``: EXIF orientation applied; gray, alpha
    (composited over white), CMYK, palette and 16-bit converted. ``name`` is used in error messages."""
    return decode_image_ex(data, name, max_pixels).rgb


def decode_image_ex(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Like :func:`decode_image`, and also report whether the bytes are a plain 8-bit RGB PNG."""
    if len(data) == 0:
        raise ImageError(f"{name}: empty file")
    fast = _decode_plain_png(data, max_pixels)
    if fast is not None:
        return Decoded(fast, True)
    with _pil_errors(name):
        img = _open(data, max_pixels)
        w, h = img.size
        if w <= 0 or h <= 0:
            raise ImageError(f"{name}: image has no pixels ({w}x{h})")
        if w * h > max_pixels:
            raise ImageError(f"{name}: decompression bomb refused ({w}x{h} = {w * h} pixels > limit {max_pixels})")
        img.load()  # animated GIF/WebP/multi-page TIFF: the first frame, where open() leaves it
        orientation = _exif_orientation(img)
        if orientation not in (None, 1):
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:  # broken EXIF block: keep the stored orientation
                orientation = None
        rgb = _to_rgb8(img, name)
    plain = (
        img.format == "PNG"
        and orientation in (None, 1)
        and "transparency" not in img.info
        and _png_is_rgb8(data)
    )
    return Decoded(np.ascontiguousarray(rgb), plain)


_PIL_LIMIT_LOCK = threading.Lock()


def _formats() -> list[str]:
    """Every raster format Pillow opens, except EPS: it runs Ghostscript on the file's PostScript."""
    Image.init()
    return [f for f in Image.OPEN if f != "EPS"]


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """``Image.open`` with our own pixel limit: Pillow's (a global) refuses images over twice its default
    before we can apply a higher ``max_pixels``, so it is lifted for this call when ours allows more."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data), formats=_formats())
        except Image.DecompressionBombError:
            if Image.MAX_IMAGE_PIXELS is None or max_pixels <= 2 * Image.MAX_IMAGE_PIXELS:
                raise
        with _PIL_LIMIT_LOCK:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                return Image.open(io.BytesIO(data), formats=_formats())
            finally:
                Image.MAX_IMAGE_PIXELS = saved


@contextmanager
def _pil_errors(name: str) -> Iterator[None]:
    """Map Pillow/decoder exceptions to one-line :class:`ImageError` messages."""
    try:
        yield
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a recognised image format") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: decompression bomb refused ({e})") from None
    except MemoryError:
        raise ImageError(f"{name}: out of memory while decoding") from None
    except Exception as e:  # truncated data, bad chunks, broken headers: all decoder failures
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "truncated" in msg.lower():
            raise ImageError(f"{name}: truncated image ({msg})") from None
        raise ImageError(f"{name}: corrupt image ({msg})") from None


def _exif_orientation(img: Image.Image) -> int | None:
    try:
        value = img.getexif().get(0x0112)
    except Exception:
        return None
    return value if isinstance(value, int) else None


def _to_rgb8(img: Image.Image, name: str) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _gray_high_depth(img)
    if mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint16)
        alpha = rgba[..., 3:4]
        out = (rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255  # over white
        return out.astype(np.uint8)
    if mode != "RGB":
        img = img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"{name}: unsupported pixel layout (mode {mode})")
    return arr


def _gray_high_depth(img: Image.Image) -> np.ndarray:
    """16-bit / 32-bit integer or float gray to 8-bit RGB (integers scaled by 1/257, floats by range)."""
    arr = np.asarray(img)
    if arr.dtype.kind == "f":
        a = np.nan_to_num(arr.astype(np.float64), nan=0.0)
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0
        g = np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)
    else:
        a = arr.astype(np.int64)
        if a.size and a.max() > 65535:  # genuine 32-bit data
            a = a >> 16
        g = ((np.clip(a, 0, 65535) + 128) // 257).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


_PNG_IEND = b"IEND\xaeB`\x82"


def _decode_plain_png(data: bytes, max_pixels: int) -> np.ndarray | None:
    """Fast path for complete plain 8-bit RGB PNGs (most face datasets): libpng through OpenCV decodes
    them ~1.5x faster than Pillow, to the same pixels. Anything else -- a transparency or EXIF chunk,
    a truncated file, a size over the limit, a decode failure -- returns None and takes the Pillow
    path, which also produces the error messages."""
    if not (_png_is_rgb8(data) and data.endswith(_PNG_IEND)) or b"tRNS" in data or b"eXIf" in data:
        return None
    w, h = struct.unpack(">II", data[16:24])
    if not 0 < w * h <= max_pixels:
        return None
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if bgr is None or bgr.dtype != np.uint8 or bgr.shape != (h, w, 3):
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _png_is_rgb8(data: bytes) -> bool:
    """True when the PNG header says bit depth 8, colour type 2 (RGB, no alpha)."""
    if len(data) < 33 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return False
    bit_depth, color_type = struct.unpack(">BB", data[24:26])
    return bit_depth == 8 and color_type == 2
