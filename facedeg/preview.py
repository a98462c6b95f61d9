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
