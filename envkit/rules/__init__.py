"""Rules: pure functions from facts to findings, grouped by report section.

Importing the package fills DOCTOR_CHECKS: each rule module registers its checks as it is imported, known.py
those of knowledge/incompatibilities.json.  `envkit doctor` runs them with ``DOCTOR_CHECKS.run(facts)``.
"""

from __future__ import annotations

from envkit.rules import age, cuda, hardware, known, packages, rl  # noqa: F401  (they register into DOCTOR_CHECKS)
from envkit.rules.base import DOCTOR_CHECKS, Finding, Rule, Severity

__all__ = ["DOCTOR_CHECKS", "Finding", "Rule", "Severity"]
