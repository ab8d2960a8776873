"""The doctor's output: its findings as text for people, JSON for machines, and one repair command.

(Not `envkit report`, which reads a finished training run: envkit.runs.)"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from envkit.facts import Facts
from envkit.knowledge import curated
from envkit.rules.base import Finding, Severity

DOCTOR_SCHEMA = "envkit.doctor/1"


@dataclass(frozen=True)
class Summary:
    passed: int
    warned: int
    failed: int
    skipped: int

    @property
    def checks(self) -> int:
        return self.passed + self.warned + self.failed

    def line(self) -> str:
        parts = [f"{self.passed}/{self.checks} checks passed"]
        if self.warned:
            parts.append(f"{self.warned} warning{'s' * (self.warned > 1)}")
        if self.failed:
            parts.append(f"{self.failed} failed")
        return ", ".join(parts)


def summarize(findings: list[Finding]) -> Summary:
    count = {s: sum(f.severity is s for f in findings) for s in Severity}
    return Summary(count[Severity.OK], count[Severity.WARN], count[Severity.FAIL], count[Severity.SKIP])


def exit_code(findings: list[Finding], strict: bool = False) -> int:
    """0: no failure; 1: a failure (with ``strict``, a warning too)."""
    bad = {Severity.FAIL, Severity.WARN} if strict else {Severity.FAIL}
    return 1 if any(f.severity in bad for f in findings) else 0


def repair_requirements(findings: list[Finding]) -> list[str]:
    """One requirement per package across all package findings; the first (failing) finding wins."""
    chosen: dict[str, str] = {}
    ordered = sorted(findings, key=lambda f: f.severity is not Severity.FAIL)
    for finding in ordered:
        for text in finding.requirements:
            chosen.setdefault(canonicalize_name(Requirement(text).name), text)
    return list(chosen.values())


def repair_indexes(requirements: list[str]) -> list[str]:
    """pip's --extra-index-url for requirements pinned to a PyTorch build (``torch==2.13.0+cu130``: EK201's
    CUDA build of a +cpu torch), which only PyTorch's index serves."""
    backends = [Version(spec.version).local for text in requirements for spec in Requirement(text).specifier
                if spec.operator == "==" and "*" not in spec.version and Version(spec.version).local]
    url = curated("torch_index")["url"]
    return [arg for backend in dict.fromkeys(backends) for arg in ("--extra-index-url", url.format(backend=backend))]


def to_json(findings: list[Finding], facts: Facts, strict: bool = False) -> dict:
    """The ``--json`` document (docs/doctor-json.md)."""
    summary = summarize(findings)
    return {
        "schema": DOCTOR_SCHEMA,
        "envkit_version": facts.envkit_version,
        "target": facts.target,
        "summary": {**asdict(summary), "checks": summary.checks, "line": summary.line()},
        "exit_code": exit_code(findings, strict),
        "findings": [f.to_dict() for f in findings],
        "repair": repair_requirements(findings),
        "facts": facts.to_dict(),
    }
