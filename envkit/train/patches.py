"""Which of envkit's TRL patches (knowledge/patches.json) a run needs, and their documentation.

Pure over Facts and the recipe (no torch, no trl): the selection is part of the run's Plan, so
``--dry-run``, the manifest and the tests see what a run applies.  The code of each patch lives in
envkit.train.trl_patches, keyed by the same ID.
"""

from __future__ import annotations

from dataclasses import dataclass

from envkit.errors import OptionError
from envkit.facts import Facts
from envkit.knowledge import in_window, load
from envkit.recipe.schema import Recipe
from envkit.doctor_output.text import markdown_table


@dataclass(frozen=True)
class Patch:
    id: str
    name: str
    title: str
    packages: dict[str, str]  # distribution -> specifier the installed version must match
    vllm_mode: str | None  # the recipe's vllm.mode it applies to (None: any)
    backend: str | None
    problem: str
    change: str
    cost: str
    evidence: tuple[str, ...]
    upstream: str
    checked: str

    def window(self) -> str:
        parts = [f"{name} {spec}" for name, spec in self.packages.items()]
        parts += [f"vllm.mode: {self.vllm_mode}"] if self.vllm_mode else []
        parts += [f"backend: {self.backend}"] if self.backend else []
        return ", ".join(parts)

    def doc(self) -> str:
        """What ``envkit doctor --explain ID`` prints."""
        evidence = "\n".join(f"  - {line}" for line in self.evidence)
        return (f"{self.id} {self.name} (patch)\n\n{self.title}\n\nApplies to: {self.window()}\n\n"
                f"Problem: {self.problem}\n\nChange: {self.change}\n\nCost: {self.cost}\n\nEvidence:\n{evidence}\n\n"
                f"Upstream: {self.upstream} (checked {self.checked}).\n"
                f"Turn it off: envkit train RECIPE --no-patch {self.id}")


def all_patches() -> list[Patch]:
    return [Patch(p["id"], p["name"], p["title"], dict(p["when"].get("packages", {})), p["when"].get("vllm_mode"),
                  p["when"].get("backend"), p["problem"], p["change"], p["cost"], tuple(p["evidence"]), p["upstream"],
                  p["checked"])
            for p in load("patches")["patches"]]


def find_patch(key: str) -> Patch | None:
    """A patch by ID (``EKP001``, any case) or name (``server-lora-sync``)."""
    key = key.strip()
    return next((p for p in all_patches() if p.id == key.upper() or p.name == key.lower()), None)


def applies(patch: Patch, recipe: Recipe, facts: Facts, use_vllm: bool) -> bool:
    """The installed packages are inside the patch's window and the run has its shape (every patch so far
    concerns vLLM generation, so none applies to a run that generates with model.generate)."""
    for name, spec in patch.packages.items():
        package = facts.package(name)
        if package is None or not in_window(package.version, spec):
            return False
    return (use_vllm and (patch.vllm_mode is None or patch.vllm_mode == recipe.vllm.mode)
            and (patch.backend is None or patch.backend == recipe.backend))


def select_patches(recipe: Recipe, facts: Facts, use_vllm: bool,
                   disabled: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """(IDs to apply, IDs that apply but ``--no-patch`` turned off).  An unknown ID is a usage error."""
    off = set()
    for key in disabled:
        patch = find_patch(key)
        if patch is None:
            known = ", ".join(f"{p.id} {p.name}" for p in all_patches())
            raise OptionError(f"--no-patch {key}: no such patch (known: {known})")
        off.add(patch.id)
    matching = [p.id for p in all_patches() if applies(p, recipe, facts, use_vllm)]
    return [i for i in matching if i not in off], [i for i in matching if i in off]


def markdown() -> str:
    """docs/training.md's patch table, generated from the data (tests/test_patches.py keeps the page in step)."""
    return markdown_table(["ID", "name", "applies to", "what it fixes", "evidence", "upstream"],
                          [[p.id, p.name, p.window(), p.title, "; ".join(p.evidence),
                            f"{p.upstream} (checked {p.checked})"] for p in all_patches()])


if __name__ == "__main__":  # python -m envkit.train.patches > table: docs/training.md's Patches section
    print(markdown(), end="")
