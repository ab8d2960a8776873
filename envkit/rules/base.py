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
    check: Callable[..., Outcome]  # Facts (and, for launch rules, their LaunchInputs) -> Outcome

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.check.__doc__ or "")

    def run(self, facts: Facts, *inputs) -> Finding:
        out = self.check(facts, *inputs)
        return Finding(self.id, self.name, self.section, out.severity, out.title, out.evidence, out.fix, out.requirements)


REGISTRY: dict[str, Rule] = {}


def rule(rule_id: str, name: str, section: str, registry: dict[str, Rule] | None = None) -> Callable[[Callable[..., Outcome]], Callable[..., Outcome]]:
    """Register a check in ``registry`` (default: the doctor's REGISTRY)."""
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}")
    target = REGISTRY if registry is None else registry

    def register(check: Callable[..., Outcome]) -> Callable[..., Outcome]:
        if rule_id in target:
            raise ValueError(f"duplicate rule id {rule_id}")
        target[rule_id] = Rule(rule_id, name, section, check)
        return check

    return register
