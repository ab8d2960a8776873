"""Rules: pure functions from facts to findings, grouped by report section."""

from __future__ import annotations

from envkit.facts import Facts
from envkit.rules import cuda, hardware, packages, rl  # noqa: F401  (registration)
from envkit.rules.base import REGISTRY, Finding, Rule, Severity
from envkit.rules.launch import LAUNCH_REGISTRY  # envkit train's checks of a recipe's launch (EK5xx)


def run_rules(facts: Facts) -> list[Finding]:
    return [rule.run(facts) for rule in sorted(REGISTRY.values(), key=lambda r: r.id)]


def find_rule(key: str) -> Rule | None:
    """A rule by ID (``EK301``, any case) or by name (``vllm-torch``), the launch checks included."""
    key = key.strip()
    rules = {**REGISTRY, **LAUNCH_REGISTRY}
    return rules.get(key.upper()) or next((r for r in rules.values() if r.name == key.lower()), None)


__all__ = ["Finding", "Rule", "Severity", "find_rule", "run_rules", "REGISTRY", "LAUNCH_REGISTRY"]
