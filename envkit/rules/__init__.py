"""Rules: pure functions from facts to findings, grouped by report section."""

from __future__ import annotations

from envkit.facts import Facts
from envkit.rules import age, cuda, hardware, known, packages, rl  # noqa: F401  (registration)
from envkit.rules.base import REGISTRY, Finding, Rule, Severity


def run_rules(facts: Facts) -> list[Finding]:
    return [rule.run(facts) for rule in sorted(REGISTRY.values(), key=lambda r: r.id)]


def find_rule(key: str, rules: dict[str, Rule] | None = None) -> Rule | None:
    """A rule by ID (``EK301``, any case) or by name (``vllm-torch``) in ``rules`` (default: the doctor's;
    the launch checks have their own registry, envkit.launch.checks)."""
    key = key.strip()
    rules = REGISTRY if rules is None else rules
    return rules.get(key.upper()) or next((r for r in rules.values() if r.name == key.lower()), None)


__all__ = ["Finding", "Rule", "Severity", "find_rule", "run_rules", "REGISTRY"]
