"""The build context of an image, written whole or not at all.

``build/<recipe>-<target>/`` holds the Dockerfile, the lock split in two layers,
a manifest, a copy of envkit's source, the recipe with its local data, a
``.dockerignore`` and, for offline builds, ``wheels/`` with every locked wheel.
Nothing in it depends on the time or the host (the same inputs give the same bytes).
"""

from __future__ import annotations

import json
import os
import pkgutil
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import envkit
from envkit.build.dockerfile import render
from envkit.build.lock import Lock, LockError
from envkit.build.stack import Stack
from envkit.errors import RecipeError
from envkit.files import OutputError
from envkit.recipe.reward_lookup import reward_module, spec_beside
from envkit.recipe.schema import Recipe

# envkit's package data (pyproject.toml [tool.setuptools.package-data]); its modules are found by name.
PACKAGE_DATA = ("knowledge/*.json", "build/templates/*.in")
DOCKERIGNORE = "**/__pycache__\n**/*.pyc\n**/.pytest_cache\n"
# pip download takes wheels of exactly the platforms named: the glibc 2.28 image accepts every older manylinux.
# The list of the files a context holds, written last: a folder without it, or with a file it does not name,
# holds files of the user's, and is never replaced.
MARKER = ".envkit-context"
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
    """Write the context into a sibling temporary folder, then swap it in.  ``out`` must be new, an empty folder
    or a context written before holding only the files envkit wrote (MARKER lists them): anything else (a
    file, a pipe, a device, a folder of the user's, a context with a file the user added) is an OutputError,
    never removed.  A write that fails (a full disk) is one too, and leaves nothing."""
    given = out
    _check_output(given)
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
        root = Path(envkit.__file__).parent
        for name in package_files():
            (tmp / "envkit" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / name, tmp / "envkit" / name)
        _copy_recipe(inputs, tmp / "recipes")
        if inputs.wheelhouse is not None:
            fetch_wheels(inputs, tmp / "wheels")
        written = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if not p.is_dir())
        (tmp / MARKER).write_text(json.dumps(written, indent=0) + "\n")
        _normalize_modes(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write {given}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_output(out: Path) -> None:
    try:
        found = os.stat(out)  # through links: a link to a folder is that folder
    except FileNotFoundError:
        return  # new (a dangling link: made at its target)
    except OSError as exc:  # a symbolic link loop, a path through a file
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(found.st_mode):
        raise OutputError(f"cannot write {out}: it is not a folder; name a new folder for the build context")
    if next(out.iterdir(), None) is None:
        return
    theirs = _not_written(out)
    if theirs:
        raise OutputError(f"cannot write {out}: it holds files envkit build did not write ({', '.join(theirs[:3])}"
                         f"{', ...' if len(theirs) > 3 else ''}); move them out, or name a new or empty folder")


def _not_written(folder: Path) -> list[str]:
    """The files in ``folder`` a context written before did not list in its MARKER: all of them when there is
    none (a look-alike manifest.json proves nothing).  Regenerating replaces the folder whole, so any of
    them would be lost."""
    try:
        listed = json.loads((folder / MARKER).read_text()) if (folder / MARKER).is_file() else []
    except (OSError, ValueError, RecursionError):
        listed = []
    ours = {MARKER, *(name for name in listed if isinstance(name, str))} if isinstance(listed, list) else {MARKER}
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir() or p.is_symlink())
    return [name for name in found if name not in ours] if (folder / MARKER).is_file() else found


def package_files() -> list[str]:
    """envkit's own files, relative to its folder, by list: its modules (found as Python finds them, nothing
    imported) and the package data pyproject.toml declares.  Never a walk of the folder: a credentials file,
    a symlink to a token or a hidden folder lying there stays out of the image."""
    root = Path(envkit.__file__).parent

    def modules(folder: Path, prefix: str):
        for module in pkgutil.iter_modules([str(folder)]):
            if module.ispkg:
                yield f"{prefix}{module.name}/__init__.py"
                yield from modules(folder / module.name, f"{prefix}{module.name}/")
            else:
                yield f"{prefix}{module.name}.py"

    names = {"__init__.py", *modules(root, "")} | {str(p.relative_to(root)) for pattern in PACKAGE_DATA for p in root.glob(pattern)}
    return sorted(n for n in names if _own_file(root, n))


def _own_file(root: Path, name: str) -> bool:
    """A regular file inside ``root`` reached through no symlink (a link could point anywhere: a token)."""
    path = root / name
    return path.is_file() and path.resolve() == root.resolve() / name


def recipe_files(recipe: Recipe, folder: Path) -> dict[str, Path]:
    """The files a run of ``recipe`` reads besides the YAML, by the field naming them: the dataset, the accelerate
    config, and each user reward module (a module or a package found in the recipe's folder).  The image holds
    that folder only (/recipes), so a reward module found elsewhere is an error here, not at run time."""
    found = {}
    for key in ("path", "eval_path"):  # the training rows, and the evaluation rows a run reads beside them
        if getattr(recipe.dataset, key):
            found[f"dataset.{key}"] = Path(getattr(recipe.dataset, key))
    if recipe.distributed.accelerate_config:
        found["distributed.accelerate_config"] = Path(recipe.distributed.accelerate_config)
    for i, reward in enumerate(recipe.rewards):
        module = reward_module(reward.name)
        if module is None or module == "envkit":
            continue
        spec = spec_beside(module, folder)
        if spec is None:
            raise RecipeError(f"{recipe.source}: rewards[{i}].name: module {module!r} is not in the recipe's folder {folder}; "
                              "the image holds only that folder (/recipes): move the module beside the recipe")
        if spec.submodule_search_locations:  # a package (a namespace package too): all of its Python files
            files = sorted(p for location in spec.submodule_search_locations for p in Path(location).rglob("*.py"))
            for j, file in enumerate(files):
                found[f"rewards[{i}].name ({module}, file {j})"] = file
        else:
            found[f"rewards[{i}].name"] = Path(spec.origin)
    return found


def _copy_recipe(inputs: Inputs, folder: Path) -> None:
    """The recipe as written, plus the files it reads at the same relative paths (it lands in /recipes).  Paths
    are taken relative to the recipe's folder as the loader saw it (a symlinked recipe's own folder)."""
    folder.mkdir()
    base = inputs.recipe_path.parent.resolve()
    shutil.copyfile(inputs.recipe_path, folder / f"{inputs.name}.yaml")
    for field, path in recipe_files(inputs.recipe, base).items():
        relative = os.path.relpath(path.resolve(), base)
        if relative.startswith(".."):
            raise RecipeError(f"{inputs.recipe_path}: {field} {path} lies outside the recipe's folder; "
                              "move it beside the recipe to build an image of it")
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / relative)


def _normalize_modes(folder: Path) -> None:
    """0755 folders and 0644 files whatever the umask (under umask 077 the image's user could not read its recipe)."""
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


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
