"""Finding a recipe's rewards without running them: a builtin's name, or a ``module:function`` whose module is
looked up (beside the recipe, then on the Python path) and whose source is read, never imported.  Loading a
recipe (budget, lock, build, --dry-run) must not run user code; envkit.train.rewards imports it when training
starts."""

from __future__ import annotations

import ast
import difflib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

BUILTIN_REWARDS = ("format", "exact_answer", "length", "digits")


def reward_module(name: str) -> str | None:
    """The top-level module of a ``module:function`` reward (None for a builtin)."""
    return None if name in BUILTIN_REWARDS else name.partition(":")[0].split(".")[0]


def spec_beside(top: str, folder: Path | None):
    """The module spec of a top-level module in the recipe's folder (a reward module lives beside its recipe),
    or None.  Looking it up imports nothing."""
    return importlib.machinery.PathFinder.find_spec(top, [str(folder)]) if folder is not None else None


def find_module(top: str, folder: Path | None) -> bool:
    """A top-level module exists beside the recipe (searched first) or on the Python path; nothing imported."""
    try:
        return spec_beside(top, folder) is not None or importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def reward_problem(name: str, folder: Path | None = None) -> str | None:
    """What is wrong with a reward's name, without importing anything: loading a recipe (budget, lock, build,
    --dry-run) must not run user code, so a ``module:function`` is only looked up here (in ``folder``, the
    recipe's, then on the path) and imported when training starts (envkit.train.rewards.resolve_reward).
    None when it looks usable."""
    if name in BUILTIN_REWARDS:
        return None
    module_name, _, function = name.partition(":")
    if not module_name or not function:
        close = difflib.get_close_matches(name, BUILTIN_REWARDS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"unknown reward {name!r}: {hint}use a builtin ({', '.join(BUILTIN_REWARDS)}) or module:function"
    if not all(part.isidentifier() for part in module_name.split(".")) or not function.isidentifier():
        return f"{name!r} is not module:function (Python names, e.g. my_rewards:correctness)"
    top = reward_module(name)
    if top in sys.stdlib_module_names:
        return f"{module_name!r} is Python's standard library, not a reward module: name your own module:function"
    if not find_module(top, folder):
        return (f"cannot find module {top!r} beside the recipe or on the Python path "
                "(put it beside the recipe, or set PYTHONPATH)")
    return _missing_function(module_name, function, folder)


def _missing_function(module_name: str, function: str, folder: Path | None) -> str | None:
    """A top-level module's source read (not imported: no user code runs) for the function a reward names, so a
    misspelt name is one line with the closest, before the model loads (issue #24: it surfaced 24 s in).  None
    when found, or when the source cannot say: a package's submodule, a compiled module, a module-level
    ``__getattr__`` or ``import *`` that may provide it."""
    if "." in module_name:
        return None
    spec = spec_beside(module_name, folder) or importlib.util.find_spec(module_name)
    origin = Path(spec.origin) if spec and spec.origin else None
    if origin is None or origin.suffix != ".py":
        return None
    try:
        tree = ast.parse(origin.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None  # importing it says what is wrong, in one line (envkit.train.rewards.resolve_reward)
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}
    if function in names or "__getattr__" in names or "*" in names:
        return None
    functions = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    close = difflib.get_close_matches(function, functions, n=1)
    hint = f"did you mean {close[0]}?" if close else f"it defines {', '.join(functions) or 'no function'}"
    return f"{origin.name} has no function {function!r} ({hint})"
