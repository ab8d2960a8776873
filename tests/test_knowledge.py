"""Curated knowledge carries its evidence: every fact a source, and the date it was last checked."""

from __future__ import annotations

import re
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[1]
# A path in this repository: it starts with one of its top-level folders that upstream repositories lack (vLLM's
# evidence cites its own docs/ and docker/; trl/..., vllm/... name upstream files), or leaves the checkout.
REPO_PATH = re.compile(r"(?<![\w./-])(?:\.\./)*(?:benchmarks|dev|envkit|recipes|tests|shared)/[\w./-]*\w")


def cited_paths(text: str) -> set[str]:
    return set(REPO_PATH.findall(text))


def test_a_repository_path_is_found_in_text_and_an_upstream_one_is_not():
    text = "trl/generation/vllm_generation.py; benchmarks/results/a.md: x (issue #11, ../shared/gpu-bundle/README.md)."
    assert cited_paths(text) == {"benchmarks/results/a.md", "../shared/gpu-bundle/README.md"}


def test_shipped_knowledge_cites_only_files_of_this_repository():
    """The data ships in the wheel: its evidence is a public source or a file here, never a folder beside the
    checkout (issue #27: ../shared/gpu-bundle, the development machine's notes, now dev/README.md)."""
    cited = {path for data in (ROOT / "envkit" / "knowledge").glob("*.json") for path in cited_paths(data.read_text())}
    assert cited, "no repository path found: the pattern no longer matches the citations"
    missing = {path for path in cited if path.startswith(("../", "shared/")) or not (ROOT / path.rstrip(".")).exists()}
    assert not missing, f"cited in envkit/knowledge but not a file of this repository: {sorted(missing)}"
