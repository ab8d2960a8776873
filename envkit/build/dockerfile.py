"""Render the Dockerfile of a build: a fixed template filled from the stack and the lock, nothing else.

Same recipe, target and lock in, same bytes out: no timestamps, no host paths,
no environment variables read (so no secret can reach it).
"""

from __future__ import annotations

import re
from pathlib import Path

from envkit import __version__
from envkit.build.stack import Stack
from envkit.knowledge import curated, gpu_catalog
from envkit.recipe.load import RecipeError

TEMPLATE = Path(__file__).parent / "templates" / "Dockerfile.in"
# What may fill each user-given slot: a recipe's name lands in a LABEL, a comment, the image tag and /recipes/NAME.yaml;
# the base in FROM.  Nothing with a quote, a space or a line break can reach the Dockerfile.
SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}")


def recipe_slug(name: str, source: str) -> str:
    """The recipe's file name (without .yaml) when it can name an image and a file in it; else a one-line error."""
    if not SLUG.fullmatch(name):
        raise RecipeError(f"{source}: the recipe's file name {name!r} names the image and /recipes/NAME.yaml: "
                          "use letters, digits, '.', '_' and '-' (rename the file)")
    return name


def image_reference(base: str) -> str:
    if not IMAGE.fullmatch(base):
        raise RecipeError(f"--base {base!r}: not an image reference (registry/name:tag or name@sha256:...)")
    return base


def torch_index(stack: Stack) -> str:
    """The PyTorch index the lock's torch variant comes from (``--torch-backend``); PyPI needs none."""
    if not stack.torch_backend:
        return ""
    return " --extra-index-url " + curated("torch_index")["url"].format(backend=stack.torch_backend)


def render(stack: Stack, base: str, recipe_name: str, recipe_sha: str, lock_sha: str, offline: bool = False) -> str:
    values = {
        "VERSION": __version__,
        "RECIPE": recipe_slug(recipe_name, recipe_name),
        "TARGET": stack.target,
        "PLATFORM": stack.platform,
        "BASE": image_reference(base),
        "PYTHON": stack.python,
        "DTYPE": stack.dtype,
        "RECIPE_SHA": recipe_sha,
        "LOCK_SHA": lock_sha,
        "DRIVER_FLOOR": stack.driver_floor or "none",
        "TORCH_BACKEND": stack.torch_backend or "pypi",
        "WHEEL_MOUNT": " \\\n    --mount=type=bind,source=wheels,target=/tmp/wheels" if offline else "",
        "FIND_LINKS": " --no-index --find-links /tmp/wheels" if offline else "",
        "TORCH_INDEX": torch_index(stack) if not offline else "",
        "EXTRA_ENV": "".join(f" \\\n    {k}={v}" for k, v in sorted(stack.env.items())),
        "DOCTOR_TARGET": f" --target {stack.target}" if stack.target in gpu_catalog() else "",
    }
    text = TEMPLATE.read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    return text
