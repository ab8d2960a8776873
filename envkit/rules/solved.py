"""The pip fix of a package finding, computed with the solver (envkit.knowledge.solve) so that it satisfies every
window envkit knows at once: vLLM's torch pin and transformers window, TRL's vLLM extra and transformers
requirement, peft's.  Naming one package and leaving the rest produced fixes that broke the next check (issue #24:
EK303's `pip install vllm==0.31.0 torch==2.13.0` left transformers 5.25, which vLLM 0.31 excludes)."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envkit.facts import Facts
from envkit.knowledge.solve import Constraints, NoSolution, solve
from envkit.rules.requirements import installed_version


@dataclass(frozen=True)
class Repair:
    requirements: tuple[str, ...]  # name==version for each package to change, ``focus`` first
    kept: tuple[str, ...]  # "torch 2.11.0": the installed versions the repair keeps

    def command(self) -> str:
        return f"pip install {' '.join(self.requirements)}" + (f"  (fits {', '.join(self.kept)})" if self.kept else "")


def _public(text: str | None) -> str | None:
    """The release a version names (2.11.0+cu130 -> 2.11.0); None when missing or not a version."""
    try:
        return Version(text).public if text else None
    except InvalidVersion:
        return None


def solved_repair(facts: Facts, focus: str, *keeps: tuple[str, ...]) -> Repair | None:
    """The installs that make the installed stack one the solver accepts, ``focus`` among them (installed or
    not), keeping the installed versions of the first of ``keeps`` that allows one; None when none does."""
    return next(filter(None, (_repair_keeping(facts, focus, keep) for keep in keeps)), None)


def _repair_keeping(facts: Facts, focus: str, keep: tuple[str, ...]) -> Repair | None:
    have = {name: _public(installed_version(facts, name)) for name in ("torch", "vllm", "trl", "transformers",
                                                                       "peft", "bitsandbytes")}
    kept = {name: have[name] for name in keep if have.get(name)}
    python = ".".join(facts.host.python.split(".")[:2]) or None
    try:
        solution = solve(Constraints(**kept, **({"python": python} if python else {})))
    except NoSolution:
        return None
    changes = [f"{name}=={version}" for name, version in solution.versions.items()
               if name == focus or (have.get(name) and have[name] != version)]
    changes.sort(key=lambda requirement: canonicalize_name(requirement.split("==")[0]) != focus)
    return Repair(tuple(changes), tuple(f"{name} {version}" for name, version in kept.items()))
