"""The check catalog (envkit.catalog): every registry listed once, one ID space across them, any entry found."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from envkit.catalog import CHECKS, REGISTRIES, all_checks, find
from envkit.rules import DOCTOR_CHECKS
from envkit.rules.registry import Registry
from envkit.train.check_impact import DECIDED_BY, IMPACT

PACKAGE = Path(__file__).resolve().parents[1] / "envkit"


def test_every_registry_in_the_source_is_listed_in_the_catalog():
    made = {m.group(1) for path in PACKAGE.rglob("*.py")
            for m in re.finditer(r"^(\w+): Registry\[\w+\] = Registry\(", path.read_text(), re.MULTILINE)}
    assert made == {"DOCTOR_CHECKS", "RECIPE_CHECKS", "LAUNCH_CHECKS", "PATCHES"}
    assert len(REGISTRIES) == len(made) and all(isinstance(r, Registry) for r in REGISTRIES)


def test_ids_and_names_are_unique_across_every_registry():
    entries = [entry for registry in REGISTRIES for entry in registry.values()]
    ids, names = [e.id for e in entries], [e.name for e in entries]
    assert len(ids) == len(set(ids)) and len(names) == len(set(names))
    assert all(re.fullmatch(r"EKP?\d{3}", i) for i in ids)
    assert len(all_checks()) == sum(len(r) for r in CHECKS)


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.name)
def test_a_taken_id_is_refused_in_any_other_registry(registry):
    taken = next(iter(registry.values()))
    with pytest.raises(ValueError, match=f"duplicate check id {taken.id}: already in the {registry.name}"):
        Registry("scratch").register(taken)


def test_find_reaches_every_entry_by_id_or_name_in_any_case():
    for registry in REGISTRIES:
        for entry in registry.values():
            assert find(entry.id) is entry and find(f" {entry.id.lower()} ") is entry and find(entry.name) is entry
    assert find("EK999") is None and find("no-such-check") is None


def test_what_a_check_means_to_a_run_names_registered_checks():
    assert set(IMPACT) <= {check.id for check in all_checks()}
    assert set(DECIDED_BY.values()) <= set(DOCTOR_CHECKS)  # the plan's decisions read the doctor's findings
