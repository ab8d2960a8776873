"""Incompatibilities no metadata declares, as data (knowledge/incompatibilities.json): one doctor check each.

A check fails or warns when the installed distributions fall inside one of its windows; it is OK when every
package it names is installed outside them, and not applicable when one is missing.  Its title and fix name
the installed versions; its documentation (``envkit doctor --explain ID``) is the data's doc, source and date.
"""

from __future__ import annotations

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envkit.facts import Facts
from envkit.knowledge import inside_checks, inside_windows, load
from envkit.rules.base import DOCTOR_CHECKS, Outcome, Rule, Severity, ok, skip
from envkit.rules.requirements import installed_version

OUTCOME = {"fail": Severity.FAIL, "warn": Severity.WARN}


def _installed(facts: Facts, names: set[str]) -> dict[str, Version] | None:
    """The installed versions of ``names``, or None when one is missing or unreadable."""
    try:
        return {name: Version(installed_version(facts, name) or "") for name in names}
    except InvalidVersion:  # missing ("") or not a version
        return None


def lock_repairs(pins: dict[str, str]) -> list[str]:
    """The requirement lines that take a resolved set (a lock's name -> version) out of each check's window it
    falls in, warnings included, each once (overlapping checks share a repair): what `envkit lock` adds before
    resolving again (transformers 5.24.0 + peft 0.21.2 -> transformers<5.24.0)."""
    shown = {canonicalize_name(name): version for name, version in pins.items()}
    repairs = [r.format(**shown) for entry in inside_checks(pins) for r in entry.get("requirements", ())]
    return list(dict.fromkeys(repairs))


def check_of(entry: dict):
    """The rule function of one data entry."""
    names = {name for window in entry["windows"] for name in window}

    def run(facts: Facts) -> Outcome:
        versions = _installed(facts, names)
        if versions is None:
            return skip(f"needs {', '.join(sorted(names))} installed")
        shown = {name: str(v) for name, v in versions.items()}
        evidence = (", ".join(f"{n} {v}" for n, v in sorted(shown.items()))
                    + f"; {entry['source']} (checked {entry['checked']})")
        if inside_windows(entry, versions):
            repair = tuple(r.format(**shown) for r in entry.get("requirements", ()))  # what --fix installs
            return Outcome(OUTCOME[entry["severity"]], entry["title"].format(**shown), evidence,
                           entry["fix"].format(**shown), repair)
        return ok(f"{', '.join(f'{n} {v}' for n, v in sorted(shown.items()))}: outside the known-bad windows", evidence)

    placeholders = {name: f"<{name} version>" for name in names}  # the doc has no installed versions to show
    run.__doc__ = (f"{entry['summary']}.\n\n{entry['doc']}\n\nFix: {entry['fix'].format(**placeholders)}\n\n"
                   f"Source: {entry['source']} (checked {entry['checked']}).")
    return run


CHECKS: list[dict] = load("incompatibilities")["checks"]
for _entry in CHECKS:
    DOCTOR_CHECKS.register(Rule(_entry["id"], _entry["name"], _entry["section"], check_of(_entry)))
