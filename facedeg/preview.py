"""Contact sheets for ``facedeg preview``: the original plus degraded variants, each with a caption.

One meaning of a seed: variant i of ``preview --seed S`` is exactly what ``facedeg degrade --seed S+i``
gives (variant 0: the same seed), so any picture on a sheet can be made, and its plan saved, with
``degrade``.
"""

from __future__ import annotations

import textwrap

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facedeg.plan import Plan
from facedeg.recipe import Recipe

# Pillow's built-in font has no glyphs for these; captions in the picture use ASCII stand-ins.
_ASCII = str.maketrans({"→": ">", "×": "x", "σ": "s", "λ": "lam", "°": "deg"})


def variant_seed(seed: int, i: int) -> int:
    """The seed of preview variant ``i``: ``seed + i``, the ``--seed`` that ``facedeg degrade`` takes for it."""
    return seed + i


def variant_plans(recipe: Recipe, seed: int, n: int, shape: tuple[int, int]) -> list[Plan]:
    """The plans shown by preview: variant i is ``recipe.sample(seed + i, shape)``, the plan of
    ``facedeg degrade --seed seed+i``."""
    return [recipe.sample(variant_seed(seed, i), shape) for i in range(n)]


def contact_sheet(tiles: list[tuple[np.ndarray, str]], tile: int = 256, columns: int = 4) -> np.ndarray:
    """Lay out (image, caption) pairs in a grid of ``tile``-pixel squares with captions underneath."""
    font = ImageFont.load_default(size=max(10, tile // 20))
    line_h = font.size + 3
    chars = max(12, int(tile / (font.size * 0.55)))
    wrapped = [textwrap.wrap(caption.translate(_ASCII), chars) or [""] for _, caption in tiles]
    cap_h = line_h * max(len(w) for w in wrapped) + 6
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    pad = 6
    sheet = Image.new("RGB", (columns * (tile + pad) + pad, rows * (tile + cap_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, ((image, _), lines) in enumerate(zip(tiles, wrapped, strict=True)):
        x = pad + (i % columns) * (tile + pad)
        y = pad + (i // columns) * (tile + cap_h + pad)
        interp = cv2.INTER_AREA if max(image.shape[:2]) > tile else cv2.INTER_NEAREST
        sheet.paste(Image.fromarray(cv2.resize(image, (tile, tile), interpolation=interp)), (x, y))
        for j, line in enumerate(lines):
            draw.text((x + 2, y + tile + 3 + j * line_h), line, font=font, fill=(20, 20, 20))
    return np.asarray(sheet)


def preview_variants(image: np.ndarray, recipe: Recipe, n: int = 8, seed: int = 0,
                     tile: int = 256) -> tuple[np.ndarray, list[Plan]]:
    """The original and ``n`` variants of ``recipe``; returns the sheet and the plans."""
    plans = variant_plans(recipe, seed, n, image.shape[:2])
    tiles = [(image, "original")]
    tiles += [(p.apply(image), f"#{i} seed {p.seed}: {p.summary()}") for i, p in enumerate(plans)]
    return contact_sheet(tiles, tile, columns=min(5, len(tiles))), plans


def preview_steps(image: np.ndarray, recipe: Recipe, seed: int = 0, tile: int = 256) -> tuple[np.ndarray, Plan]:
    """One plan (variant 0 of ``seed``) applied op by op; returns the sheet and the plan."""
    plan = variant_plans(recipe, seed, 1, image.shape[:2])[0]
    tiles = [(image, "original")]
    for i, (step, out) in enumerate(plan.iter_apply(image), 1):
        tiles.append((out, f"{i}. {Plan((step,)).summary()}"))
    return contact_sheet(tiles, tile, columns=min(5, len(tiles))), plan


def draw_faces(rgb: np.ndarray, faces: list) -> np.ndarray:
    """A copy of ``rgb`` with each face's box, its five landmarks and its index drawn on it
    (``faces``: :class:`facedeg.faces.Face` list, largest first)."""
    out = rgb.copy()
    t = max(1, round(max(rgb.shape[:2]) / 150))  # still visible once the photo is shrunk to a tile
    for j, f in enumerate(faces):
        x0, y0, x1, y1 = (round(v) for v in f.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 220, 0), t, cv2.LINE_AA)
        for k, (x, y) in enumerate(f.landmarks):
            colour = (255, 60, 60) if k < 2 else (60, 120, 255) if k == 2 else (255, 200, 0)
            cv2.circle(out, (round(x), round(y)), 2 * t, colour, -1, cv2.LINE_AA)
        cv2.putText(out, str(j), (x0 + 2 * t, max(y0 - 3 * t, 10 * t)), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * t,
                    (0, 220, 0), t, cv2.LINE_AA)
    return out


def square(rgb: np.ndarray, fill: int = 255) -> np.ndarray:
    """Pad an image to a square (centred) so a contact-sheet tile does not stretch it."""
    h, w = rgb.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    return cv2.copyMakeBorder(rgb, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT,
                              value=(fill, fill, fill))


def preview_align(image: np.ndarray, recipe: Recipe, n: int = 4, seed: int = 0, tile: int = 256,
                  size: int = 512) -> tuple[np.ndarray, list[dict], list[Plan]]:
    """``facedeg preview --crop align``: the photo with detected boxes and landmarks, every aligned
    ``size`` crop (as ``--crop align --faces all`` would build them), then ``n`` variants of the first
    crop. Returns the sheet, the crops' records and the plans. No face: the annotated photo alone."""
    from facedeg.crop import AlignOptions, NoFaceError, align_faces
    from facedeg.faces import get_detector

    faces = get_detector().detect(image)
    tiles = [(square(draw_faces(image, faces)), f"{len(faces)} face(s) found: boxes and landmarks")]
    try:
        crops, _ = align_faces(image, size, AlignOptions(select="all", min_face=0))
    except NoFaceError:
        crops = []
    for hq, info in crops:
        a = info["align"]
        tiles.append((hq, f"face {info['face']} aligned, score {a['score']:.3f}"))
    plans = variant_plans(recipe, seed, n, (size, size)) if crops else []
    tiles += [(p.apply(crops[0][0]), f"#{i} {p.summary()}") for i, p in enumerate(plans)]
    return contact_sheet(tiles, tile, columns=min(5, len(tiles))), [info for _, info in crops], plans
