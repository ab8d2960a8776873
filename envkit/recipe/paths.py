"""The files a recipe names (dataset.path, dataset.eval_path, distributed.accelerate_config), relative to its
folder."""

from __future__ import annotations

from pathlib import Path

from envkit.errors import UsageError


class FileProblem(UsageError, ValueError):
    """A file the recipe names that cannot be used; ``str()`` says why (the recipe checks add the line and key and
    raise a RecipeError; one that escaped them would still be a usage error)."""


def local_file(base: Path, value: str) -> str:
    """An existing file named relative to the recipe's folder ``base``, as an absolute path; else FileProblem."""
    try:
        resolved = (base / value).resolve()
        found = resolved.is_file()
    except (OSError, ValueError, RuntimeError) as exc:  # a name too long, a NUL byte, a symbolic link loop
        raise FileProblem(f"unusable path: {str(exc)[:80]}") from None
    if not found:
        raise FileProblem(f"no such file: {resolved}")
    return str(resolved)
