"""The rule framework: a rule is a pure function from Facts to an Outcome.

Rules register themselves with a stable ID (``EK301``), a short name
(``vllm-torch``) and a report section.  The function's docstring is the rule's
documentation, printed by ``envkit doctor --explain ID``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

from envkit.facts import Facts


class Severity(str, Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"  # not applicable here (no GPU, package absent); not counted as a check


SECTIONS = {
    "hardware": "Hardware",
    "driver": "Driver & CUDA",
    "packages": "Packages",
    "rl": "vLLM / RL readiness",
    "launch": "Multi-GPU launch",  # envkit train's checks of a recipe's layout (envkit/launch/checks.py)
    "tracking": "Trackers",  # envkit train's checks of output.report_to (envkit/launch/tracking.py)
}


@dataclass(frozen=True)
class Outcome:
    """What a rule says; the runner stamps the rule's identity on it."""

    severity: Severity
    title: str
    evidence: str = ""
    fix: str = ""
    requirements: tuple[str, ...] = ()  # pip requirement strings that repair it (for --fix)


def ok(title: str, evidence: str = "") -> Outcome:
    return Outcome(Severity.OK, title, evidence)


def skip(title: str, evidence: str = "") -> Outcome:
    return Outcome(Severity.SKIP, title, evidence)


def warn(title: str, evidence: str = "", fix: str = "", requirements: tuple[str, ...] = ()) -> Outcome:
    return Outcome(Severity.WARN, title, evidence, fix, requirements)


def fail(title: str, evidence: str = "", fix: str = "", requirements: tuple[str, ...] = ()) -> Outcome:
    return Outcome(Severity.FAIL, title, evidence, fix, requirements)


@dataclass(frozen=True)
class Finding:
    id: str
    name: str
    section: str
    severity: Severity
    title: str
    evidence: str = ""
    fix: str = ""
    requirements: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "section": self.section,
            "severity": self.severity.value,
            "title": self.title,
            "evidence": self.evidence,
            "fix": self.fix,
            "requirements": list(self.requirements),
        }


# What a check means to `envkit train` (Rule.run_relevance): "any" run, CPU-only too (the Python stack); a "gpu" run;
# "planned": the preflight acts on it itself (sets a variable, or refuses with its own finding), never blocking as is.
RUN_RELEVANCE = ("any", "gpu", "planned")
# The plan decisions a check informs (Rule.decides): envkit.train.preflight reads a check by what it decides, not by ID.
DECISIONS = ("dtype", "vllm", "pdl", "sleep", "sleep-sync")


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    section: str
    check: Callable[..., Outcome]  # Facts (and, for recipe and launch rules, their inputs) -> Outcome
    needs_vllm: bool = False  # matters only to a run generating with vLLM
    run_relevance: str = "gpu"  # RUN_RELEVANCE
    backends: tuple[str, ...] = ()  # the recipe backends it matters to (empty: all)
    decides: str | None = None  # the plan decision it informs (DECISIONS)

    def __post_init__(self) -> None:
        if self.section not in SECTIONS:
            raise ValueError(f"{self.id}: unknown section {self.section!r}")
        if self.run_relevance not in RUN_RELEVANCE or self.decides not in (None, *DECISIONS):
            raise ValueError(f"{self.id}: unknown run relevance {self.run_relevance!r} or decision {self.decides!r}")

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.check.__doc__ or "")

    @property
    def summary(self) -> str:
        """The doc's first line: docs/doctor.md's check tables."""
        return self.doc.splitlines()[0] if self.doc else self.name

    def blocks(self, *, gpu: bool, use_vllm: bool, backend: str) -> bool:
        """Whether this check, failing, refuses an `envkit train` run of this shape."""
        runs_here = self.run_relevance == "any" or (gpu and self.run_relevance == "gpu")
        return runs_here and (use_vllm or not self.needs_vllm) and (not self.backends or backend in self.backends)

    def run(self, facts: Facts, *inputs) -> Finding:
        out = self.check(facts, *inputs)
        return Finding(self.id, self.name, self.section, out.severity, out.title, out.evidence, out.fix,
                       out.requirements)


REGISTRY: dict[str, Rule] = {}


def register(found: Rule, registry: dict[str, Rule] | None = None) -> Rule:
    """Add a rule to ``registry`` (default: the doctor's REGISTRY); an ID is registered once, in any registry."""
    target = REGISTRY if registry is None else registry
    if found.id in target or found.id in REGISTRY:
        raise ValueError(f"duplicate rule id {found.id}")
    target[found.id] = found
    return found


def rule(rule_id: str, name: str, section: str, registry: dict[str, Rule] | None = None,
         **metadata) -> Callable[[Callable[..., Outcome]], Callable[..., Outcome]]:
    """Register a check in ``registry`` (default: the doctor's REGISTRY); ``metadata``: Rule's fields after check."""

    def add(check: Callable[..., Outcome]) -> Callable[..., Outcome]:
        register(Rule(rule_id, name, section, check, **metadata), registry)
        return check

    return add
