"""The build context of an image, written whole or not at all.

``build/<recipe>-<target>/`` holds the Dockerfile, the lock split in two layers,
a manifest, a copy of envkit's source, the recipe with its local data, a
``.dockerignore`` and, for offline builds, ``wheels/`` with every locked wheel.
Nothing in it depends on the time or the host (the same inputs give the same bytes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import envkit
from envkit.build.dockerfile import render
from envkit.build.lock import Lock, LockError
from envkit.build.stack import Stack
from envkit.recipe.load import RecipeError
from envkit.recipe.schema import Recipe

PACKAGE_FILES = (".py", ".json", ".in")  # sources, knowledge, templates
DOCKERIGNORE = "**/__pycache__\n**/*.pyc\n**/.pytest_cache\n"
# pip download takes wheels of exactly the platforms named: the glibc 2.28 image accepts every older manylinux.
MANYLINUX = [f"manylinux_2_{minor}" for minor in range(28, 4, -1)] + ["manylinux2014", "manylinux2010", "manylinux1"]


@dataclass(frozen=True)
class Inputs:
    recipe: Recipe
    recipe_path: Path  # the YAML file as given
    stack: Stack
    lock: Lock
    base: str
    wheelhouse: Path | None = None  # offline build: every locked wheel goes into the context
    index_url: str | None = None  # where the wheels the wheelhouse lacks come from (default: pip's own)

    @property
    def name(self) -> str:
        return self.recipe_path.stem


def manifest(inputs: Inputs) -> dict:
    """What the image is made of; the driver floor is what the host needs."""
    stack = inputs.stack
    return {
        "schema": "envkit.build/1",
        "envkit": envkit.__version__,
        "recipe": inputs.name,
        "recipe_sha256": inputs.recipe.sha256,
        "target": stack.target,
        "platform": stack.platform,
        "python": stack.python,
        "dtype": stack.dtype,
        "base_image": inputs.base,
        "cuda": stack.cuda,
        "torch_backend": stack.torch_backend,
        "driver_floor": stack.driver_floor,
        "env": stack.env,
        "notes": stack.notes,
        "offline": inputs.wheelhouse is not None,
        "lock_sha256": inputs.lock.sha256,
        "packages": inputs.lock.pins(),
    }


def dockerfile(inputs: Inputs) -> str:
    return render(inputs.stack, inputs.base, inputs.name, inputs.recipe.sha256, inputs.lock.sha256,
                  offline=inputs.wheelhouse is not None)


def write_context(inputs: Inputs, out: Path) -> Path:
    """Write the context into a sibling temporary folder, then swap it in."""
    out = out.resolve()
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        heavy, rest = inputs.lock.split()
        files = {"Dockerfile": dockerfile(inputs), "requirements.heavy.lock": heavy, "requirements.lock": rest,
                 "manifest.json": json.dumps(manifest(inputs), indent=2, sort_keys=True) + "\n",
                 ".dockerignore": DOCKERIGNORE}
        for name, text in files.items():
            (tmp / name).write_text(text)
        shutil.copytree(Path(envkit.__file__).parent, tmp / "envkit", ignore=_not_package_files)
        _copy_recipe(inputs, tmp / "recipes")
        if inputs.wheelhouse is not None:
            fetch_wheels(inputs, tmp / "wheels")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _not_package_files(folder: str, names: list[str]) -> set[str]:
    """Only envkit's own files go into the image: a stray .env or editor file beside them stays out."""
    return {name for name in names if name == "__pycache__"
            or (Path(folder, name).is_file() and not name.endswith(PACKAGE_FILES))}


def _copy_recipe(inputs: Inputs, folder: Path) -> None:
    """The recipe as written, plus its local dataset at the same relative path (it lands in /recipes)."""
    folder.mkdir()
    shutil.copyfile(inputs.recipe_path, folder / f"{inputs.name}.yaml")
    data = inputs.recipe.dataset.path
    if data:
        relative = os.path.relpath(data, inputs.recipe_path.resolve().parent)
        if relative.startswith(".."):
            raise RecipeError(f"{inputs.recipe_path}: dataset.path {data} lies outside the recipe's folder; "
                              "move it beside the recipe to build an image of it")
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data, folder / relative)


def fetch_wheels(inputs: Inputs, folder: Path) -> None:
    """Every locked wheel, from the wheelhouse where it has it, else from the index; hashes checked by pip."""
    stack = inputs.stack
    lockfile = folder.with_name("wheels.lock")
    lockfile.write_text(inputs.lock.text)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes", "--only-binary=:all:",
               *[arg for tag in MANYLINUX for arg in ("--platform", f"{tag}_{stack.arch}")], "--python-version", stack.python, "--implementation", "cp",
               "--find-links", str(inputs.wheelhouse), "--dest", str(folder), "-r", str(lockfile),
               *(["--index-url", inputs.index_url] if inputs.index_url else [])]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lockfile.unlink()
    if result.returncode != 0:
        tail = " ".join(line.strip() for line in result.stderr.strip().splitlines()[-2:])
        raise LockError(f"cannot gather the locked wheels for an offline build: {tail}")
