"""Render the Dockerfile of a build: a fixed template filled from the stack and the lock, nothing else.

Same recipe, target and lock in, same bytes out: no timestamps, no host paths,
no environment variables read (so no secret can reach it).
"""

from __future__ import annotations

from pathlib import Path

from envkit import __version__
from envkit.build.stack import Stack
from envkit.knowledge import curated, gpu_catalog

TEMPLATE = Path(__file__).parent / "templates" / "Dockerfile.in"


def torch_index(stack: Stack) -> str:
    """The PyTorch index the lock's torch variant comes from (``--torch-backend``); PyPI needs none."""
    if not stack.torch_backend:
        return ""
    return " --extra-index-url " + curated("torch_index")["url"].format(backend=stack.torch_backend)


def render(stack: Stack, base: str, recipe_name: str, recipe_sha: str, lock_sha: str, offline: bool = False) -> str:
    values = {
        "VERSION": __version__,
        "RECIPE": recipe_name,
        "TARGET": stack.target,
        "PLATFORM": stack.platform,
        "BASE": base,
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
