"""Every exception envkit defines is a UsageError (exit 2) or a Failure (exit 1) of envkit.errors, and the command
line turns each into one line, ``envkit COMMAND: message``, and that exit code (issue #27)."""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.errors import EnvkitError, Failure, OptionError, UsageError
from envkit.exitcodes import FAILED, USAGE

PACKAGE = Path(__file__).resolve().parents[1] / "envkit"
# Each exception class and the exit code its commands gave before envkit.errors (tests and docs assert them).
EXIT_CODES = {
    "envkit.errors.RecipeError": USAGE, "envkit.errors.OptionError": USAGE, "envkit.errors.OutputFolderError": USAGE,
    "envkit.facts.FactsError": USAGE, "envkit.knowledge.UnknownGpu": USAGE,
    "envkit.knowledge.solve.BadConstraint": USAGE,
    "envkit.knowledge.solve.NoSolution": USAGE,  # build and lock; `matrix solve` prints it as its answer, exit 1
    "envkit.recipe.reference.KeyUnknown": USAGE, "envkit.budget.shapes.UnknownName": USAGE,
    "envkit.recipe.paths.FileProblem": USAGE,
    "envkit.launch.layout.LaunchError": USAGE, "envkit.build.lock.LockError": USAGE,
    "envkit.runs.plot.MetricsError": USAGE, "envkit.runs.generate.GenerateError": USAGE,
    "envkit.train.trl_patches.PatchUnavailable": USAGE, "envkit.files.OutputError": USAGE,
    "envkit.files.OwnFileError": FAILED, "envkit.train.rundir.RunBusy": FAILED,
    "envkit.launch.procs.LaunchFailed": FAILED, "envkit.knowledge.refresh.RefreshError": FAILED,
    "envkit.runs.generate.EngineFailed": FAILED,  # generate says a known one as a GenerateError, re-raises the rest
}
BASES = {"envkit.errors.EnvkitError", "envkit.errors.UsageError", "envkit.errors.Failure", "envkit.errors.OneLineError",
         "envkit.files.WriteError"}  # raised only as their subclasses
NOT_EXCEPTIONS_OF_A_COMMAND = {"envkit.exitcodes.Terminated"}  # SIGTERM as SystemExit: exit 143, no line


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def exception_classes() -> dict[str, type]:
    """Every exception class defined in envkit's source, found by reading it (a class whose base is a builtin
    exception or another such class), then imported: no module with an exception pulls in torch or trl."""
    bases: dict[str, tuple[str, list[str]]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                names = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
                bases[f"{_module(path)}.{node.name}"] = (node.name, names)
    short: dict[str, list[str]] = {}  # a name may be two classes of different modules: either may be the base
    for full, (name, _) in bases.items():
        short.setdefault(name, []).append(full)

    def is_exception(name: str, seen=()) -> bool:
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type) and issubclass(builtin, BaseException):
            return True
        return name not in seen and any(is_exception(b, (*seen, name)) for full in short.get(name, ())
                                        for b in bases[full][1])

    found = {}
    for full, (name, _) in bases.items():
        if is_exception(name):
            module, _, attribute = full.rpartition(".")
            found[full] = getattr(importlib.import_module(module), attribute)
    return {full: cls for full, cls in found.items() if issubclass(cls, BaseException)}  # a namesake read as one


def test_every_exception_is_a_usage_error_or_a_failure():
    classes = exception_classes()
    assert set(classes) == set(EXIT_CODES) | BASES | NOT_EXCEPTIONS_OF_A_COMMAND, \
        "a new exception class: derive it from envkit.errors.UsageError or Failure and add it to EXIT_CODES"
    for name, cls in classes.items():
        if name in NOT_EXCEPTIONS_OF_A_COMMAND:
            assert not issubclass(cls, Exception), name  # past every `except Exception`
            continue
        assert issubclass(cls, (UsageError, Failure)) or name in BASES, name
        assert not issubclass(cls, UsageError) or not issubclass(cls, Failure), name
        if name in EXIT_CODES:
            assert cls.exit_code == EXIT_CODES[name], name


def _instance(cls: type) -> Exception:
    message = "--thing value: what went wrong; what to do"
    return cls([message]) if cls.__name__ == "NoSolution" else cls(message)


@pytest.mark.parametrize("name", sorted(EXIT_CODES))
def test_the_command_line_gives_each_error_one_line_and_its_exit_code(monkeypatch, name):
    error = _instance(exception_classes()[name])
    monkeypatch.setattr("envkit.recipe.reference.explain_key", lambda key: (_ for _ in ()).throw(error))
    result = CliRunner().invoke(main, ["recipes", "explain", "grpo.beta"])
    assert result.exit_code == EXIT_CODES[name]
    assert result.stderr.splitlines() == [f"envkit recipes: {error}"]
    assert "--thing value" in result.stderr and result.stdout == ""


def test_a_subcommand_of_matrix_names_itself_and_secrets_stay_masked(monkeypatch):
    result = CliRunner().invoke(main, ["matrix", "solve", "--python", "2.7"])
    said = "envkit matrix solve: --python '2.7': expected a Python 3 version such as 3.12\n"
    assert (result.exit_code, result.stderr) == (USAGE, said)

    def unreachable(*args):
        raise importlib.import_module("envkit.knowledge.refresh").RefreshError("cannot reach https://u:tok@mirror/x")

    monkeypatch.setattr("envkit.knowledge.refresh.refresh", unreachable)
    result = CliRunner().invoke(main, ["matrix", "refresh", "--package", "trl", "--output", "/nonexistent/m.json"])
    assert result.exit_code == FAILED and "tok" not in result.output
    said = "envkit matrix refresh: cannot reach https://<set>@mirror/x. Check the network, or pass --index-url for a "
    assert result.stderr.splitlines()[-1] == said + "reachable mirror."


def test_anything_else_is_a_bug_and_keeps_its_traceback(monkeypatch):
    monkeypatch.setattr("envkit.recipe.reference.explain_key", lambda key: {}["missing"])
    result = CliRunner().invoke(main, ["recipes", "explain", "grpo.beta"])
    assert isinstance(result.exception, KeyError) and not isinstance(result.exception, EnvkitError)


def test_an_option_error_quotes_the_users_text_on_one_line():
    assert str(OptionError("--output a\nb\x1b[2J: not a folder")) == "--output a\\nb\\x1b[2J: not a folder"
