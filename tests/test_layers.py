"""envkit's imports go one way (issue #15): knowledge, facts (with secret masking) and recipe at the ground; probe
and rules; budget, launch, build, matrix, the doctor's output and runs (a run folder read back); train; the commands on top.
Read from the source with ast (every import, also the ones inside functions; `if TYPE_CHECKING:` blocks are
annotations only), so a lazy import is no way around it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "envkit"
LAYERS = [
    {"__init__", "exitcodes", "errors", "files", "masking", "terminal", "binding", "knowledge", "facts", "recipe"},
    {"probe", "rules"},
    {"budget", "launch", "build", "matrix", "doctor_output", "runs"},
    {"train"},
    {"cli", "doctor", "__main__"},
]
LAYER = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def unit_of(path: Path) -> str:
    """A module's unit: its top-level package below envkit, or the module itself (envkit/cli.py -> cli)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _is_unit(name: str) -> bool:
    """envkit.X is a module or package (not a name such as envkit.__version__)."""
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()


def imported_units(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = {id(node) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)}
    found = set()

    def visit(node):
        if id(node) in skip:
            return
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "envkit" else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "envkit" and len(parts) > 1 and _is_unit(parts[1]):
                found.add(parts[1])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        unit = unit_of(path)
        graph.setdefault(unit, set()).update(u for u in imported_units(path) if u != unit)
    return graph


def test_every_unit_has_a_layer():
    assert set(edges()) <= set(LAYER), f"add to LAYERS: {set(edges()) - set(LAYER)}"


def test_no_import_goes_up_a_layer():
    upward = sorted(f"{a} -> {b}" for a, targets in edges().items() for b in targets if LAYER[b] > LAYER[a])
    assert upward == []


def test_no_import_loop_between_units():
    graph, loops = edges(), []

    def walk(unit: str, path: list[str]):
        for target in sorted(graph.get(unit, ())):
            if target in path:
                loops.append(" -> ".join(path[path.index(target):] + [target]))
            elif len(path) < len(graph):
                walk(target, path + [target])

    for unit in sorted(graph):
        walk(unit, [unit])
    assert loops == []


def test_the_walker_sees_lazy_imports_and_skips_type_checking(tmp_path, monkeypatch):
    module = tmp_path / "sample.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from envkit.train import x\n"
                      "def f():\n    from envkit.cli import run\n    import envkit.probe.gpu\n")
    assert imported_units(module) == {"cli", "probe"}


def private_imports(path: Path) -> list[str]:
    """The ``_private`` names a module imports from another envkit module (``from envkit.x import _helper``)."""
    return [f"{node.module}.{alias.name}" for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("envkit")
            for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]


def test_no_module_imports_another_modules_private_names():
    """A module's API is its public names (issue #27: recipe/load's internals were imported by four packages)."""
    found = {path.relative_to(PACKAGE).as_posix(): names for path in PACKAGE.rglob("*.py")
             if (names := private_imports(path))}
    assert found == {}


def test_the_private_import_walker_sees_one(tmp_path):
    module = tmp_path / "sample.py"
    module.write_text("def f():\n    from envkit.recipe.load import _node, parse_recipe\n"
                      "from envkit import __version__\n")
    assert private_imports(module) == ["envkit.recipe.load._node"]
