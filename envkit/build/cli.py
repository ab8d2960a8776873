"""`envkit lock` and `envkit build`.  Only click at import time (the doctor's start-up stays fast)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from envkit.errors import OptionError
from envkit.exitcodes import FAILED

PLATFORM_ARCH = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}

recipe_option = click.option("--recipe", required=True,
                             help="A shipped recipe name (envkit recipes list) or a YAML path.")
target_option = click.option("--target", metavar="GPU|cpu",
                             help="A catalog GPU (h100, b200, t4, gb10, ...) or cpu.  Default: this machine's GPU.")
IMAGE = "envkit/grpo"  # every image is tagged IMAGE:RECIPE-TARGET and IMAGE:latest (the last one built)
python_option = click.option("--python", "python", metavar="X.Y",
                             help="The image's Python (default: the base image's).")
platform_option = click.option("--platform", type=click.Choice(sorted(PLATFORM_ARCH)), help="Default: the target's.")
index_option = click.option("--index-url", help="Resolve against this index instead of PyPI.")
refresh_option = click.option("--refresh", is_flag=True,
                              help="Ask the index for the newest releases instead of uv's cache first.")
torch_option = click.option("--torch", metavar="VERSION",
                            help="Keep this torch (a version or specifier), e.g. the one a machine has.")
wheelhouse_option = click.option("--wheelhouse", type=click.Path(exists=True, file_okay=False, path_type=Path),
                                 help="Lock against this wheel folder too; "
                                 "the image installs offline from the context.")


def this_machines_target(command: str) -> str:
    """The catalog key of this machine's GPU 0 (said on stderr), or an OptionError listing the targets."""
    from envkit.knowledge import gpu_catalog
    from envkit.probe.gpu import probe_gpus

    _, gpus = probe_gpus()
    if gpus and gpus[0].catalog_id:
        click.echo(f"envkit {command}: --target {gpus[0].catalog_id} (this machine's GPU: {gpus[0].name})", err=True)
        return gpus[0].catalog_id
    found = f"this machine's GPU {gpus[0].name!r} is not in the catalog" if gpus else "no GPU on this machine"
    raise OptionError(f"--target: {found}; pass --target one of: {', '.join([*gpu_catalog(), 'cpu'])}")


def _recipe_stack(recipe_name, target, python, platform, base, wheelhouse, torch=None):
    """(recipe path, recipe, stack, base image), or a UsageError naming the recipe or the option."""
    from envkit.build.dockerfile import image_reference
    from envkit.build.lock import with_wheelhouse
    from envkit.build.stack import choose
    from envkit.knowledge import UnknownGpu, catalog_key
    from envkit.knowledge.solve import DEFAULT_PYTHON
    from envkit.recipe.library import find_recipe
    from envkit.recipe.load import load_recipe

    try:
        target = catalog_key(target, also=("cpu",))
    except UnknownGpu as err:
        raise OptionError(f"--target {target}: {err}") from None
    path = find_recipe(recipe_name)
    recipe = load_recipe(path)
    arch = PLATFORM_ARCH[platform] if platform else None
    stack = choose(recipe, target, python or DEFAULT_PYTHON, arch, torch=torch)
    if base is None:
        default = stack.base
        if python and python != default["python"]:
            raise OptionError(f"--python {python}: the default base {default['image']} has Python {default['python']}; "
                              "pass --base IMAGE with that Python, or drop --python")
        base = default["image"]
    return path, recipe, with_wheelhouse(stack, str(wheelhouse) if wheelhouse else None), image_reference(base)


def stack_options(command):
    """The options that choose and lock a stack, shared by lock and build."""
    options = (recipe_option, target_option, python_option, platform_option, torch_option, index_option,
               wheelhouse_option, refresh_option)
    for option in reversed(options):
        command = option(command)
    return command


@click.command("lock")
@stack_options
@click.option("-o", "--output", metavar="FILE", help="Write here instead of stdout.")
def lock_command(recipe, target, python, platform, torch, index_url, wheelhouse, refresh, output) -> None:
    """Resolve a recipe's packages for TARGET's image platform into a hash-locked requirements file."""
    from envkit.build.lock import lock
    from envkit.files import write_atomic

    target = target or this_machines_target("lock")
    _, _, stack, _ = _recipe_stack(recipe, target, python, platform, None, wheelhouse, torch)
    locked = lock(stack, index_url, str(wheelhouse) if wheelhouse else None, refresh)
    if output:
        write_atomic(output, locked.text)
    else:
        click.echo(locked.text, nl=False)
    click.echo(f"locked {len(locked.pins())} packages for {stack.platform} Python {stack.python} "
               f"in {locked.seconds:.2f} s ({'index' if locked.online else 'cache'})", err=True)
    _say_avoided("lock", locked, stack)


def _say_avoided(command: str, locked, stack) -> None:
    """The requirements the lock added, and the packages it left out, to leave a known incompatibility
    (envkit doctor --explain EK6xx, EK307); and anything the doctor's package checks would still say of it."""
    from envkit.build.replay import lock_findings
    from envkit.knowledge.matrix import Matrix

    changes = [f"{word} {', '.join(items)}" for word, items in (("with", locked.avoided), ("without", locked.excluded))
               if items]
    if changes:
        click.echo(f"{command}: resolved again {' and '.join(changes)}: the first resolution fell in a known "
                   "incompatibility (knowledge/incompatibilities.json; xformers: EK307)", err=True)
    for finding in lock_findings(locked.pins(), stack, Matrix.shipped()):
        click.echo(f"{command}: envkit doctor would {finding.severity.value} on this lock: {finding.title} "
                   f"({finding.id})", err=True)


@click.command()
@stack_options
@click.option("--base", metavar="IMAGE", help="Base image instead of the one matching the locked torch's CUDA.")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path),
              help="Context folder (default build/RECIPE-TARGET).")
@click.option("--tag", help=f"Image tag (default {IMAGE}:RECIPE-TARGET, and {IMAGE}:latest).")
@click.option("--builder", "builder_name", type=click.Choice(["auto", "docker-buildx", "docker", "podman", "buildah"]),
              default="auto", show_default=True)
@click.option("--push", is_flag=True, help="Push the image after building.")
@click.option("--emit-only", is_flag=True, help="Write the context and stop (exit 0 without a builder).")
def build(recipe, target, python, platform, torch, index_url, wheelhouse, refresh, base, output, tag, builder_name,
          push, emit_only) -> None:
    """Write the build context of RECIPE for TARGET and build the image with the builder at hand.

    Exit codes: 0 built (or written with --emit-only), 1 build failed or no builder, 2 bad input or no lock.
    """
    from envkit.build.context import Inputs, write_context
    from envkit.build.dockerfile import recipe_slug
    from envkit.build.lock import lock
    from envkit.recipe.library import find_recipe

    found = find_recipe(recipe)
    recipe_slug(found.stem, str(found))  # before the lock: the name reaches the Dockerfile, the tag and the folder
    target = target or this_machines_target("build")
    path, parsed, stack, base = _recipe_stack(str(found), target, python, platform, base, wheelhouse, torch)
    locked = lock(stack, index_url, str(wheelhouse) if wheelhouse else None, refresh)
    name = f"{path.stem}-{target}"
    context = write_context(Inputs(parsed, path, stack, locked, base, wheelhouse, index_url),
                            output or Path("build") / name)
    tags = (tag,) if tag else (f"{IMAGE}:{name}", f"{IMAGE}:latest")
    buildx = f"docker buildx build --platform {stack.platform} -t {shlex.quote(tags[0])} {shlex.quote(str(context))}"
    click.echo(f"context: {context}  ({len(locked.pins())} packages locked in {locked.seconds:.1f} s; base {base})",
               err=True)
    _say_avoided("build", locked, stack)
    if emit_only:
        click.echo(f"build it with: {buildx}", err=True)
        return
    from envkit.build import builder as builders

    found = builders.detect(None if builder_name == "auto" else builder_name)
    if found is None:
        click.echo(f"envkit build: no image builder found (docker with a running engine, podman or buildah); "
                   f"the context is written: {buildx}",
                   err=True)
        sys.exit(FAILED)
    code, unpulled = builders.build(context, tags, stack.platform, push, found)
    if unpulled:
        offline = "" if wheelhouse else ", and --wheelhouse DIR if PyPI is out of reach too"
        click.echo(f"envkit build: {found.name} could not pull the base image {base}: give it registry access, "
                   f"or --base IMAGE naming a base already in {found.runner}'s local store ({found.runner} images)"
                   f"{offline}; the context is in {context}", err=True)
        sys.exit(FAILED)
    if code != 0:
        click.echo(f"envkit build: {found.name} failed (exit {code}); the context is in {context}", err=True)
        sys.exit(FAILED)
    command = builders.run_command(tags[0], f"/recipes/{path.stem}.yaml", found, gpus=stack.target != "cpu")
    click.echo(f"built {' and '.join(tags)}. Run it with:\n  {command}")

