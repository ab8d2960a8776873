"""Curated knowledge carries its evidence: every fact a source, and the date it was last checked."""

from __future__ import annotations

import re

from envkit.knowledge import load

DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Facts carried over from before the 2026-11-30 audit (issue #12) and not re-verified since.  The list may only
# shrink: a fact re-checked gets its `checked` date and leaves it; a new fact never enters it.
NOT_RECHECKED: set[str] = set()


def test_every_curated_fact_has_a_source_and_a_checked_date():
    facts = {k: v for k, v in load("curated").items() if isinstance(v, dict)}
    assert all(v.get("source") for v in facts.values()), [k for k, v in facts.items() if not v.get("source")]
    unchecked = {k for k, v in facts.items() if not DATE.fullmatch(str(v.get("checked", "")))}
    assert unchecked == NOT_RECHECKED, "date newly checked facts, and never add an undated one"


def test_every_data_driven_check_and_patch_is_dated():
    for entry in load("incompatibilities")["checks"] + load("patches")["patches"]:
        assert entry["source" if "source" in entry else "evidence"] and DATE.fullmatch(entry["checked"]), entry["id"]
