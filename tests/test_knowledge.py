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


def test_a_failing_fact_has_a_mechanism_and_a_clean_reproduction_else_it_warns():
    """docs/severity.md (issue #25): a FAIL refuses runs and repairs locks, so its row records the mechanism (doc)
    and a reproduction in a clean environment (reproduced); a fact only seen somewhere warns and says where."""
    rows = load("incompatibilities")["checks"]
    assert {row["severity"] for row in rows} <= {"fail", "warn"}
    for row in rows:
        if row["severity"] == "fail":
            assert row["doc"] and len(row.get("reproduced", "")) > 40, f"{row['id']}: a FAIL without its reproduction"
    curated = {k: v for k, v in load("curated").items() if isinstance(v, dict)}
    for fact in [*rows, *curated.values()]:
        if fact.get("seen") and not fact.get("reproduced"):
            assert fact.get("severity", "warn") == "warn", fact


def test_ek605_names_where_it_was_seen_and_how_it_was_reproduced():
    fact = load("curated")["dill_module_by_value"]
    assert "/tmp/site" in fact["seen"] and "PYTHONPATH" in fact["seen"]
    assert "clean" in fact["reproduced"] and "site-packages" in fact["reproduced"]
    assert "EK605" not in {row["id"] for row in load("incompatibilities")["checks"]}  # no version window any more
