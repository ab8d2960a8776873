"""Where the shipped recipes live.

One source of truth: the repository's ``recipes/`` folder.  The wheel installs it as data files
into ``<prefix>/share/envkit/recipes`` (pyproject ``[tool.setuptools.data-files]``), so a checkout
or editable install reads ``recipes/`` next to the package and an installed one reads the prefix
(or the user base, for ``pip install --user``).
"""

from __future__ import annotations

import os
import site
import sys
from pathlib import Path

IN_IMAGE = "ENVKIT_IN_IMAGE"  # set by envkit's image (envkit/build/templates/Dockerfile.in)


def recipes_dir() -> Path:
    checkout = Path(__file__).resolve().parents[2] / "recipes"
    installed = [Path(prefix) / "share" / "envkit" / "recipes" for prefix in (sys.prefix, site.getuserbase())]
    return next((folder for folder in (checkout, *installed) if folder.is_dir()), installed[0])


def list_recipes() -> list[Path]:
    return sorted(recipes_dir().glob("*.yaml"))


def find_recipe(name: str) -> Path:
    """A path as given if it exists, else a shipped recipe by name (``tiny`` or ``tiny.yaml``).  A path that cannot
    be looked at (a folder of another uid, mode 700, mounted into a container; a name too long) is a RecipeError."""
    from envkit.errors import RecipeError

    given = Path(name)
    try:
        if given.is_file():
            return given
        shipped = recipes_dir() / (name if name.endswith(".yaml") else f"{name}.yaml")
        if shipped.is_file():
            return shipped
    except OSError as exc:
        denied = isinstance(exc, PermissionError)
        owner = ' (in a container: docker run --user "$(id -u):$(id -g)" ...)' if denied else ""
        raise RecipeError(f"{name[:200]}: cannot look at the recipe: {exc.strerror}{owner}") from None

    import difflib

    shipped = [p.stem for p in list_recipes()]
    close = difflib.get_close_matches(Path(name).stem, shipped, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    if os.environ.get(IN_IMAGE):  # the user's folder is not the image's unless mounted there
        raise RecipeError(f"{name[:200]}: no such recipe file in {Path.cwd()}, the image's working folder, nor a "
                          f"shipped recipe ({hint}shipped: {', '.join(shipped)}); mount the folder that holds it "
                          f'there: docker run ... -v "$PWD":/work IMAGE train {name[:200]} (podman alike)')
    raise RecipeError(f"{name[:200]}: no such recipe file or shipped recipe ({hint}shipped: {', '.join(shipped)})")
