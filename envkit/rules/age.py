"""The doctor's own age (EK310): installed releases newer than anything envkit's knowledge has seen.

Every window, pin and fix envkit knows was written against the releases its matrix listed on the day it was
refreshed (matrix.json ``refreshed``, shipped in the package).  A release published since is judged by
windows that never saw it, so the report says so once instead of passing it silently.
"""

from __future__ import annotations

from datetime import date

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envkit.facts import Facts
from envkit.knowledge.matrix import Matrix
from envkit.rules.base import Outcome, ok, rule, skip, warn


def _unseen(facts: Facts, matrix: Matrix) -> list[tuple[str, str, Version]]:
    """(package, installed version, newest known) for each tracked package installed newer than its newest
    known release; compared on the release, so a nightly after the newest (0.34.1.dev0) is unseen too."""
    found = []
    for package in sorted(matrix.doc["packages"]):
        text, newest = facts.installed.get(canonicalize_name(package)), matrix.newest(package)
        try:
            if text and newest and Version(Version(text).base_version) > newest:
                found.append((package, text, newest))
        except InvalidVersion:
            continue
    return found


def _days_between(earlier: str | None, later: str | None) -> int | None:
    try:
        return (date.fromisoformat(later[:10]) - date.fromisoformat(earlier[:10])).days
    except (TypeError, ValueError):
        return None


@rule("EK310", "knowledge-age", "packages")
def knowledge_age(facts: Facts) -> Outcome:
    """envkit's knowledge has seen the installed releases of the stack (its matrix is not older than them).

    envkit's checks, version windows and fixes come from a matrix of releases read from PyPI on the day it
    was refreshed (envkit/knowledge/matrix.json ``refreshed``, per package, shipped with envkit).  A vLLM,
    TRL, transformers (or any tracked package) released after that day is judged by knowledge that never
    saw it: a window "<= 0.31" cannot know whether 0.35 breaks.  One warning names those packages, the
    newest release envkit knows of each and how old that knowledge was when the machine was probed.
    Fix: `envkit matrix refresh` (re-reads the index into envkit's matrix), or upgrade envkit.
    """
    matrix = Matrix.shipped()
    tracked = [p for p in matrix.doc["packages"] if canonicalize_name(p) in facts.installed]
    if not tracked:
        return skip("none of the packages envkit's matrix tracks is installed")
    unseen = _unseen(facts, matrix)
    if not unseen:
        return ok(f"envkit's matrix knows the installed {', '.join(sorted(tracked))}",
                  f"refreshed {', '.join(sorted({matrix.refreshed(p) or '?' for p in tracked}))}")
    oldest = min(matrix.refreshed(p) or "" for p, _, _ in unseen) or None
    days = _days_between(oldest, facts.collected_at)
    age = f", {days} days before this probe" if days is not None and days > 0 else ""
    names = ", ".join(f"{p} {v}" for p, v, _ in unseen)
    return warn(f"envkit's knowledge predates {names}: its matrix was refreshed {oldest}{age}",
                "newest known: " + ", ".join(f"{p} {n} (refreshed {matrix.refreshed(p)})" for p, _, n in unseen),
                "envkit matrix refresh  (re-reads the index into envkit's matrix), or pip install -U envkit; "
                "until then these releases are judged by windows written before they existed")
