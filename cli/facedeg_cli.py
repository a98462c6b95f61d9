"""The ``facedeg`` command: recipes, degrade, preview (+ build, verify, inspect, replay from build_cmds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from PIL import Image

import facedeg
from cli import build_cmds
from cli.common import fail, make_app, output_path, run_app, user_errors, write_output
from facedeg.crop import crop_and_resize
from facedeg.imread import read_image
from facedeg.preview import preview_align, preview_steps, preview_variants
from facedeg.recipe import load_recipe, shipped_recipes
from facedeg.samples import sample_paths

app = make_app("facedeg", "Degrade clean face photos into realistic low-quality inputs and build training shards.")
recipes_app = typer.Typer(help="List the shipped recipes, or show one.\n\nExamples: facedeg recipes; facedeg recipes show mixed",
                          pretty_exceptions_enable=False)
app.add_typer(recipes_app, name="recipes")

RecipeOpt = Annotated[str, typer.Option("--recipe", "-r", help="Shipped recipe name (see `facedeg recipes`) or a YAML path.")]
SeedOpt = Annotated[int, typer.Option("--seed", "-s", min=0, help="Seed; the same seed gives the same output.")]


def _save(image: np.ndarray, path: Path) -> None:
    write_output(path, Image.fromarray(image).save)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"facedeg {facedeg.__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Degrade clean face photos into realistic low-quality inputs and build training shards."""


@recipes_app.callback(invoke_without_command=True)
@user_errors()
def recipes_list(ctx: typer.Context) -> None:
    """List the shipped recipes with one-line descriptions.

    Example: facedeg recipes; facedeg recipes show mixed
    """
    if ctx.invoked_subcommand is not None:
        return
    names = shipped_recipes()
    width = max(map(len, names))
    for name in names:
        typer.echo(f"{name:<{width}}  {load_recipe(name).description}")


@recipes_app.command("show")
@user_errors()
def recipes_show(name: Annotated[str, typer.Argument(help="Recipe name or YAML path.")]) -> None:
    """Print a recipe's YAML file.

    Example: facedeg recipes show mixed
    """
    recipe = load_recipe(name)
    typer.echo(Path(recipe.source).read_text(encoding="utf-8").rstrip())
    typer.echo(f"# hash: {recipe.hash}")


@app.command()
@user_errors()
def degrade(
    image: Annotated[Path, typer.Argument(help="Input image (any common format).")],
    recipe: RecipeOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output LQ image (.png keeps it lossless).")],
    seed: SeedOpt = 0,
    plan_out: Annotated[Path | None, typer.Option("--plan-out", help="Also write the drawn plan as JSON.")] = None,
) -> None:
    """Degrade one image with a recipe.

    Example: facedeg degrade face.jpg --recipe mixed --seed 3 --out lq.png --plan-out plan.json
    """
    output_path(out)
    if plan_out is not None:
        output_path(plan_out, suffixes=None)
    recipe_obj = load_recipe(recipe)
    hq = read_image(image)
    lq, plan = facedeg.degrade(hq, recipe_obj, seed)
    _save(lq, out)
    if plan_out is not None:
        text = json.dumps(plan.to_json(), indent=2) + "\n"
        write_output(plan_out, lambda p: p.write_text(text, encoding="utf-8"))
    typer.echo(f"{out}: {plan.summary()}")


@app.command()
@user_errors()
def preview(
    image: Annotated[Path | None, typer.Argument(help="Input image; default: a bundled sample face.")] = None,
    recipe: RecipeOpt = "mixed",
    out: Annotated[Path, typer.Option("--out", "-o", help="Contact sheet PNG to write.")] = Path("preview.png"),
    n: Annotated[int, typer.Option("--n", "-n", min=1, max=64, help="Number of degraded variants.")] = 8,
    seed: Annotated[int, typer.Option("--seed", "-s", min=0, help=(
        "Seed of variant 0; variant i uses SEED+i, so each is exactly what `facedeg degrade --seed SEED+i` "
        "gives."))] = 0,
    steps: Annotated[bool, typer.Option("--steps", help="Show one plan (variant 0) applied op by op instead.")] = False,
    tile: Annotated[int, typer.Option("--tile", min=64, max=1024, help="Tile size in pixels.")] = 256,
    crop: Annotated[str | None, typer.Option(help="Crop the image first as `facedeg build --crop` would (center, "
                                             "face, none, align). align: show the detected faces and landmarks "
                                             "next to every aligned crop, then variants of the first.")] = None,
    size: Annotated[int, typer.Option(min=8, max=8192, help="Crop size for --crop.")] = 512,
) -> None:
    """Show what a recipe does: the original and n variants, each captioned with its seed and plan.

    Variant i is exactly the image `facedeg degrade --seed SEED+i` gives (variant 0: the same seed).

    Examples: facedeg preview --recipe mixed --n 8 --out preview.png;
    facedeg preview face.jpg --recipe blur --steps --out steps.png;
    facedeg preview group.jpg --crop align --n 4 --out align.png
    """
    output_path(out)
    recipe_obj = load_recipe(recipe)
    source = image if image is not None else sample_paths()[0]
    hq = read_image(source)
    if crop == "align":
        if steps:
            fail("--steps and --crop align: choose one")
        sheet, infos, plans = preview_align(hq, recipe_obj, n, seed, tile, size)
        _save(sheet, out)
        typer.echo(f"{source.name}: {len(infos)} face(s) aligned to {size}x{size}")
        for info in infos:
            a = info["align"]
            pts = " ".join(f"({x:.1f},{y:.1f})" for x, y in a["landmarks"])
            typer.echo(f"  face {info['face']}: score {a['score']:.3f}, landmarks {pts}")
        typer.echo(f"wrote {out}")
        return
    if crop is not None:
        hq, _ = crop_and_resize(hq, size, crop)
    if steps:
        sheet, plan = preview_steps(hq, recipe_obj, seed, tile)
        plans = [plan]
    else:
        sheet, plans = preview_variants(hq, recipe_obj, n, seed, tile)
    _save(sheet, out)
    typer.echo(f"recipe {recipe_obj.name} ({recipe_obj.hash[:12]}) on {source.name}, seed {seed}")
    for i, plan in enumerate(plans):
        typer.echo(f"  #{i}  seed {plan.seed}: {plan.summary()}")
        if steps:
            for step in plan.steps:
                typer.echo(f"       {step.op} {json.dumps(step.params)}")
    typer.echo(f"wrote {out}")


build_cmds.register(app)  # build, verify, inspect, replay


def main() -> None:
    run_app(app, "facedeg")


if __name__ == "__main__":
    main()
