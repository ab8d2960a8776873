"""Render the Dockerfile of a build: a fixed template filled from the stack and the lock, nothing else.

Same recipe, target and lock in, same bytes out: no timestamps, no host paths,
no environment variables read (so no secret can reach it).
"""

from __future__ import annotations

import re
from pathlib import Path

from envkit import __version__
from envkit.build.stack import Stack
from envkit.errors import OptionError, RecipeError
from envkit.knowledge import curated, gpu_catalog, load

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
        raise OptionError(f"--base {base!r}: not an image reference (registry/name:tag or name@sha256:...)")
    return base


def torch_index(stack: Stack) -> str:
    """The PyTorch index the lock's torch variant comes from (``--torch-backend``); PyPI needs none."""
    if not stack.torch_backend:
        return ""
    return " --extra-index-url " + curated("torch_index")["url"].format(backend=stack.torch_backend)


PYTHON_PACKAGES = ("python3", "python3-venv", "ca-certificates")
HAS_PYTHON = "python3 -c 'import ensurepip, venv' 2>/dev/null"
# What the JIT compilers need (images.json jit_packages): g++ on PATH and the interpreter's Python.h.
HAS_COMPILERS = ("command -v g++ > /dev/null \\\n        && python3 -c 'import os, sysconfig; "
                 "assert os.path.isfile(sysconfig.get_path(\"include\") + \"/Python.h\")' 2>/dev/null")
# The locked CUDA 13 wheels hold a CUDA toolkit's files under site-packages/nvidia/cu13 (bin/nvcc, include/, lib/).
# The JIT compilers (FlashInfer, torch.utils.cpp_extension) look for a CUDA home at /usr/local/cuda when CUDA_HOME is
# unset and no nvcc is on PATH, and FlashInfer links with -L$cuda_home/lib64 -L$cuda_home/lib64/stubs -lcudart -lcuda:
# /usr/local/cuda is made of links to the wheels' folders, lib64 with unversioned names, and a stub libcuda.so (an
# empty library named libcuda.so.1, as the toolkit's stubs are: the driver's is mounted at run time).  Made where the
# lock has an nvcc and the base none (nvidia/cuda's base links /usr/local/cuda to a toolkit of the runtime only).
CUDA_HOME = """ \\
    && nvcc=$(find /opt/venv/lib -path '*/site-packages/nvidia/*/bin/nvcc' -print -quit) \\
    && if [ -n "$nvcc" ] && [ ! -e /usr/local/cuda/bin/nvcc ]; then \\
        wheels=${nvcc%/bin/nvcc} \\
        && rm -rf /usr/local/cuda \\
        && mkdir -p /usr/local/cuda/lib64/stubs \\
        && ln -s "$wheels/bin" "$wheels/include" "$wheels/nvvm" /usr/local/cuda/ \\
        && ln -s "$wheels"/lib/* /usr/local/cuda/lib64/ \\
        && for so in "$wheels"/lib/*.so.*; do \\
            name=${so##*/}; ln -sf "$so" "/usr/local/cuda/lib64/${name%%.so.*}.so"; \\
        done \\
        && gcc -shared -x c /dev/null -Wl,-soname,libcuda.so.1 -o /usr/local/cuda/lib64/stubs/libcuda.so; \\
    fi"""


def system_slots(stack: Stack) -> dict[str, str]:
    """The distribution packages step: Python and venv where the base lacks them; for a GPU image the compilers
    Triton and FlashInfer run at first use too (see images.json)."""
    if not stack.cuda:
        return {"SYSTEM_WHAT": "", "SYSTEM_CHECK": HAS_PYTHON, "SYSTEM_PACKAGES": " ".join(PYTHON_PACKAGES),
                "CUDA_HOME": ""}
    jit = load("images")["jit_packages"]
    return {"SYSTEM_WHAT": ", " + ", ".join(jit) + " (run-time kernel compilers)",
            "SYSTEM_CHECK": "{ " + HAS_PYTHON + " && " + HAS_COMPILERS + "; }",
            "SYSTEM_PACKAGES": " ".join([*PYTHON_PACKAGES, *jit]), "CUDA_HOME": CUDA_HOME}


def image_env(stack: Stack) -> dict[str, str]:
    """Variables the image sets beyond the template's: the stack's own, and for a GPU image the container toolkit's
    (which GPUs, which driver libraries, the driver the CUDA runtime needs), as NVIDIA's base images set them."""
    gpu = {k: v.format(cuda=stack.cuda) for k, v in load("images")["gpu_env"].items()} if stack.cuda else {}
    return {**gpu, **stack.env}


def env_value(value: str) -> str:
    return f'"{value}"' if any(c in value for c in " <>=|&") else value


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
        "EXTRA_ENV": "".join(f" \\\n    {k}={env_value(v)}" for k, v in sorted(image_env(stack).items())),
        **system_slots(stack),
        "DOCTOR_TARGET": f" --target {stack.target}" if stack.target in gpu_catalog() else "",
    }
    text = TEMPLATE.read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    return text
