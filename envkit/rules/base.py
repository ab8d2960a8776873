"""The rule framework: a rule is a pure function from Facts to an Outcome.

Rules register themselves in a Registry (envkit.rules.registry) with a stable ID (``EK301``), a short name
(``vllm-torch``) and a report section.  The function's docstring is the rule's documentation, printed by
``envkit doctor --explain ID``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

from envkit.facts import Facts
from envkit.rules.registry import Registry


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


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    section: str
    check: Callable[..., Outcome]  # Facts (and, for recipe and launch rules, their inputs) -> Outcome
    # It concerns vLLM: matters only to a run (or an image) generating with vLLM.  What else a finding means to
    # `envkit train` (refuse or not, on which runs, which plan decision it informs) is the trainer's to say:
    # envkit.train.check_impact.
    needs_vllm: bool = False

    def __post_init__(self) -> None:
        if self.section not in SECTIONS:
            raise ValueError(f"{self.id}: unknown section {self.section!r}")

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.check.__doc__ or "")

    @property
    def summary(self) -> str:
        """The doc's first line: docs/doctor.md's check tables."""
        return self.doc.splitlines()[0] if self.doc else self.name

    def finding(self, facts: Facts, *inputs) -> Finding:
        """What the check says about ``facts`` (and its registry's inputs), stamped with the rule's identity."""
        out = self.check(facts, *inputs)
        return Finding(self.id, self.name, self.section, out.severity, out.title, out.evidence, out.fix,
                       out.requirements)


# The doctor's checks (the rule modules of this package); envkit.catalog lists every registry.
DOCTOR_CHECKS: Registry[Rule] = Registry("doctor checks")


def rule(rule_id: str, name: str, section: str, registry: Registry[Rule] = DOCTOR_CHECKS, *,
         needs_vllm: bool = False) -> Callable[[Callable[..., Outcome]], Callable[..., Outcome]]:
    """Register a check in ``registry`` (default: the doctor's)."""

    def add(check: Callable[..., Outcome]) -> Callable[..., Outcome]:
        registry.register(Rule(rule_id, name, section, check, needs_vllm))
        return check

    return add
