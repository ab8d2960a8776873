"""Load a recipe YAML into envkit.recipe.schema, with one-line errors that name file, line and field.

The entry point: the text is read (read_recipe), composed into plain data that keeps each value's line
(envkit.recipe.compose), bound to the dataclasses (envkit.binding), then checked across fields and against the
disk (envkit.recipe.checks).  Every problem becomes a RecipeError whose message is one line,
``recipe.yaml:12: grpo.learnig_rate: unknown key (did you mean learning_rate?)``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from envkit.binding import FAILED, Binder
from envkit.errors import RecipeError
from envkit.files import read_regular
from envkit.recipe.checks import check, check_disk
from envkit.recipe.compose import Document, compose
from envkit.recipe.schema import Recipe


class Where:
    """A recipe's name, for a RecipeError at a line of it: ``recipe.yaml:12: grpo.learnig_rate: unknown key``."""

    def __init__(self, source: str):
        self.source = source

    def error(self, node: yaml.Node | None, path: str, message: str) -> RecipeError:
        """An error at ``node``'s line (none: the file's)."""
        return self.at(node.start_mark.line + 1 if node is not None else None, path, message)

    def at(self, line: int | None, path: str, message: str) -> RecipeError:
        error = RecipeError(f"{self.source}{f':{line}' if line else ''}: {path + ': ' if path else ''}{message}")
        error.line = line
        return error


MAX_BYTES = 1024 * 1024  # a recipe is ~1 KB; the bound keeps a wrong file (a log, a dataset) from a minute of parsing


def read_recipe(path: str | Path) -> str:
    """A recipe file's text, UTF-8 and at most MAX_BYTES, or a one-line RecipeError naming the file."""
    path = Path(path)
    try:
        data = read_regular(path, MAX_BYTES)  # a FIFO or /dev/zero named as the recipe: refused, not waited on
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as read_text()
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: cannot read recipe: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc.strerror or exc}") from None


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    text = read_recipe(path)
    recipe = parse_recipe(text, str(path))
    recipe.sha256 = hashlib.sha256(text.encode()).hexdigest()
    return recipe


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Parse and validate; relative dataset paths resolve against the recipe's folder.  Every problem found is
    reported at once, one line each, in the order of their lines."""
    where = Where(source)
    root = compose(text, where)
    document = Document(where)
    data = document.read(root)
    binder = Binder(strict=True, mapping="a mapping")
    recipe = binder.bind(Recipe, data) if data is not FAILED else FAILED
    errors = document.errors + [document.error(problem) for problem in binder.problems]
    if not errors:  # the checks across fields read a typed recipe
        recipe.source = source
        errors = check(recipe, root, where, Path(source).parent)
    elif isinstance(data, dict):  # the disk's answers too, in the same report (issue #24: one fix at a time)
        errors += check_disk(data, root, where, Path(source).parent)
    if errors:
        errors.sort(key=lambda e: e.line or 0)
        raise RecipeError("\n".join(str(e) for e in errors), escaped=True)  # one line each, each escaped
    return recipe
