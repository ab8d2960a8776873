"""`envkit recipes list|show`.  Only click at import time (the doctor's start-up stays fast)."""

from __future__ import annotations

from pathlib import Path

import click

from envkit.terminal import echo


@click.group()
def recipes() -> None:
    """The shipped training recipes."""


@recipes.command("list")
def list_() -> None:
    """Name, model and dataset of each shipped recipe."""
    from envkit.errors import RecipeError
    from envkit.recipe.library import list_recipes
    from envkit.recipe.load import load_recipe

    for path in list_recipes():
        try:
            r = load_recipe(path)
            what = f"{r.model.name or 'tiny Llama (built locally)'}  on  {r.dataset.name or Path(r.dataset.path).name}"
        except RecipeError as exc:
            what = f"invalid: {exc}"
        echo(f"{path.stem:16} {what}")


@recipes.command()
@click.argument("name")
def show(name: str) -> None:
    """Print a recipe (shipped NAME or a path)."""
    from envkit.recipe.library import find_recipe
    from envkit.recipe.load import read_recipe

    echo(read_recipe(find_recipe(name)), nl=False)


@recipes.command()
@click.argument("key")
def explain(key: str) -> None:
    """What a recipe key means: its type, default, bounds and help (grpo.FIELD: any of TRL's GRPOConfig)."""
    from envkit.recipe.reference import explain_key

    echo(explain_key(key))
