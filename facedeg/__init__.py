"""facedeg: a composable face degradation engine and a deterministic webdataset shard builder.

    >>> import numpy as np, facedeg
    >>> hq = np.full((64, 64, 3), 128, np.uint8)
    >>> lq, plan = facedeg.degrade(hq, "jpeg", seed=0)
    >>> lq.shape, (plan.apply(hq) == lq).all()
    ((64, 64, 3), np.True_)
"""

from __future__ import annotations

import numpy as np

from facedeg.errors import BuildError, FacedegError, ImageError, RecipeError
from facedeg.plan import Plan, Step, check_image
from facedeg.recipe import Recipe, load_recipe, shipped_recipes
from facedeg.seeds import derive_seed

__version__ = "0.2.0"


def degrade(image: np.ndarray, recipe: Recipe | str, seed: int) -> tuple[np.ndarray, Plan]:
    """Degrade one uint8 HxWx3 RGB image with ``recipe`` (a Recipe, shipped name or YAML path)."""
    image = check_image(image)
    plan = load_recipe(recipe).sample(seed, image.shape[:2])
    return plan.apply(image), plan


__all__ = [
    "BuildError", "FacedegError", "ImageError", "Plan", "Recipe", "RecipeError", "Step",
    "__version__", "degrade", "derive_seed", "load_recipe", "shipped_recipes",
]
