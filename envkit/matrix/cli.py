"""`envkit matrix refresh|show|solve`."""

from __future__ import annotations

import json
import sys

import click

from envkit.errors import SUBCOMMAND
from envkit.exitcodes import FAILED
from envkit.knowledge import HERE
from envkit.knowledge.sources import DEFAULT_INDEX, FLOORS
from envkit.knowledge.solve import DEFAULT_PYTHON
from envkit.terminal import echo, printable


@click.group()
@click.pass_context
def matrix(ctx: click.Context) -> None:
    """Version knowledge from the packages' own metadata."""
    ctx.meta[SUBCOMMAND] = ctx.invoked_subcommand  # each says its name in an error: envkit matrix solve: ...


@matrix.command()
@click.option("--index-url", default=DEFAULT_INDEX, show_default=True, help="A PEP 691 (JSON simple API) index.")
@click.option("--package", "packages", multiple=True, type=click.Choice(sorted(FLOORS)), help="Refresh only these (repeatable).")
@click.option("--output", metavar="FILE", default=str(HERE / "matrix.json"), show_default=True)
def refresh(index_url: str, packages: tuple[str, ...], output: str) -> None:
    """Regenerate the matrix from the index and show what changed."""
    from envkit.files import JSON_BYTES, read_regular, write_atomic
    from envkit.knowledge.refresh import diff
    from envkit.knowledge.refresh import refresh as build

    try:
        old = json.loads(read_regular(output, JSON_BYTES))  # a FIFO there: refused, not waited on
    except (OSError, ValueError, RecursionError):
        old = {"packages": {}}
    if not isinstance(old, dict) or not isinstance(old.get("packages"), dict):
        old = {"packages": {}}
    wanted = list(packages) or sorted(FLOORS)
    with click.progressbar(length=1, label="reading release metadata", file=sys.stderr) as bar:

        def progress(done: int, total: int, what: str) -> None:
            bar.length = total
            bar.update(1, what)

        new = build(wanted, index_url, progress)
    if packages:  # a partial refresh keeps the other packages as they were, and their dates
        new["packages"] = {**old.get("packages", {}), **new["packages"]}
        before = {name: old.get("refreshed", {}).get(name, old.get("generated", "unknown")) for name in old.get("packages", {})}
        new["refreshed"] = {**before, **new.get("refreshed", {})}
        # the file is as fresh as its stalest package: a partial refresh must not stamp an older listing
        # with the day's date (issue #12: "generated 2026-11-23" lacked transformers 5.24.0 of 2026-11-21)
        new["generated"] = min(new["refreshed"].values(), default=new.get("generated"))
    changes = diff(old, new)
    write_atomic(output, json.dumps(new, indent=1, sort_keys=True) + "\n")
    click.echo("\n".join(changes) if changes else "no changes")
    click.echo(f"{sum(map(len, new['packages'].values()))} releases of {len(new['packages'])} packages -> {output}")


@matrix.command(short_help="What a package's releases declare about the rest of the stack.")
@click.argument("package", required=False)
@click.argument("version", required=False)
def show(package: str | None, version: str | None) -> None:
    """What PACKAGE's releases (or one VERSION) declare about the stack; without PACKAGE, the packages known."""
    from envkit.knowledge.matrix import Matrix

    table = Matrix.shipped()
    if package is None:
        for name in sorted(table.doc["packages"]):
            known = table.releases(name)
            echo(f"{name:<14} {len(known):>4} releases, newest {known[0][0] if known else '-'}")
        click.echo("envkit matrix show PACKAGE [VERSION] shows what each release requires", err=True)
        return
    releases = table.releases(package)
    if not releases:
        raise click.UsageError(printable(f"no package {package!r} in the matrix; known: "
                                         f"{', '.join(sorted(table.doc['packages']))}"))
    if version:
        rec = table.record(package, version)
        if rec is None:
            raise click.UsageError(printable(f"{package} {version} is not in the matrix; newest known: {releases[0][0]}"))
        releases = [(version, rec)]
    for ver, rec in releases:
        extra = f"  vllm extra: {rec['vllm_extra']}" if rec.get("vllm_extra") else ""
        cuda = f"  CUDA {rec['cuda']}" if rec.get("cuda") else ""
        needs = ", ".join(f"{k}{'' if v == '*' else v}" for k, v in rec["requires"].items())
        # the index's METADATA, as refreshed into matrix.json: printed, never obeyed
        echo(f"{package} {ver}  ({rec['uploaded']}, Python {rec['requires_python'] or 'any'}){cuda}{extra}")
        if needs:
            echo(f"    requires {needs}")


@matrix.command(short_help="The newest coherent stack for the constraints, or why none exists.")
@click.option("--trl", help="A version (1.16.0) or specifier (>=1.14).")
@click.option("--vllm", help="A version or specifier.")
@click.option("--torch", help="A version or specifier.")
@click.option("--target", metavar="GPU", help="A catalog GPU (h100, b200, gb10, ...).")
@click.option("--python", default=DEFAULT_PYTHON, show_default=True)
@click.option("--backend", type=click.Choice(["trl", "unsloth"]), default="trl", show_default=True,
              help="unsloth: add unsloth + unsloth_zoo and stay inside the bounds they declare.")
@click.option("--json", "as_json", is_flag=True)
def solve(trl, vllm, torch, target, python, backend, as_json) -> None:
    """The newest coherent torch/vllm/trl/transformers/peft/bitsandbytes set, or why none exists."""
    from envkit.knowledge import catalog_key
    from envkit.knowledge.solve import Constraints, NoSolution
    from envkit.knowledge.solve import solve as find

    constraints = Constraints(trl, vllm, torch, catalog_key(target) if target else None, python, backend)
    try:
        solution = find(constraints)
    except NoSolution as exc:  # the answer "none", with the reasons (--json too): exit 1, where build's lock says 2
        shown = exc.reasons[:5] + ([f"... and {len(exc.reasons) - 5} more"] if len(exc.reasons) > 5 else [])
        if as_json:
            click.echo(json.dumps({"solution": None, "reasons": exc.reasons}, indent=2))
        else:
            click.echo("no coherent set:\n  " + "\n  ".join(shown), err=True)
        sys.exit(FAILED)
    if as_json:
        click.echo(json.dumps({"solution": solution.versions, "cuda": solution.cuda, "notes": solution.notes}, indent=2))
        return
    click.echo(" ".join(solution.requirements()))
    click.echo(f"torch's default wheel is built for CUDA {solution.cuda}", err=True)
    for note in solution.notes:
        click.echo(f"note: {note}", err=True)
