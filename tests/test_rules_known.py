"""The data-driven incompatibility checks (knowledge/incompatibilities.json): each on both sides of its window.
Versions are real releases; the windows were read in their wheels (see each check's source)."""

from __future__ import annotations

import pytest

from envkit.knowledge import load
from envkit.rules import DOCTOR_CHECKS, Severity
from tests.conftest import make_facts

# (check, installed distributions, expected): a row per side of each window.
CASES = [
    ("EK601", {"trl": "0.28.0", "transformers": "5.3.0"}, Severity.FAIL),
    ("EK601", {"trl": "0.27.2", "transformers": "5.24.0"}, Severity.FAIL),
    ("EK601", {"trl": "0.28.0", "transformers": "5.2.0"}, Severity.OK),
    ("EK601", {"trl": "0.29.0", "transformers": "5.24.0"}, Severity.OK),
    ("EK601", {"trl": "0.28.0"}, Severity.SKIP),
    ("EK602", {"vllm": "0.27.1", "vllm-bnb-plugin": "0.0.3"}, Severity.FAIL),
    ("EK602", {"vllm": "0.28.0", "vllm-bnb-plugin": "0.0.3"}, Severity.OK),
    ("EK602", {"vllm": "0.26.0"}, Severity.SKIP),
    ("EK603", {"transformers": "5.24.0", "peft": "0.21.2"}, Severity.WARN),
    ("EK603", {"transformers": "5.17.0", "peft": "0.21.2"}, Severity.OK),
    ("EK603", {"transformers": "5.17.0", "peft": "0.19.0"}, Severity.WARN),
    ("EK603", {"transformers": "5.8.0", "peft": "0.18.1"}, Severity.WARN),
    ("EK603", {"transformers": "5.2.0", "peft": "0.18.0"}, Severity.OK),
    ("EK603", {"transformers": "4.57.1", "peft": "0.15.0"}, Severity.OK),
    ("EK604", {"liger-kernel": "0.6.4", "transformers": "5.17.0"}, Severity.WARN),
    ("EK604", {"liger-kernel": "0.6.5", "transformers": "5.17.0"}, Severity.OK),
    ("EK604", {"liger-kernel": "0.6.4", "transformers": "4.57.1"}, Severity.OK),
    ("EK606", {"unsloth-zoo": "2025.3.13", "vllm": "0.8.0"}, Severity.FAIL),
    ("EK606", {"unsloth-zoo": "2025.3.14", "vllm": "0.8.0"}, Severity.OK),
    ("EK606", {"unsloth-zoo": "2025.3.13", "vllm": "0.7.3"}, Severity.OK),
    ("EK606", {"vllm": "0.8.0"}, Severity.SKIP),
    ("EK607", {"unsloth-zoo": "2026.6.5", "vllm": "0.20.0"}, Severity.FAIL),
    ("EK607", {"unsloth-zoo": "2026.6.5", "vllm": "0.19.0"}, Severity.FAIL),  # unsloth#4841: the piecewise pass
    ("EK607", {"unsloth-zoo": "2026.6.5", "vllm": "0.18.1"}, Severity.OK),
    ("EK607", {"unsloth-zoo": "2026.6.6", "vllm": "0.23.0"}, Severity.OK),
    ("EK608", {"unsloth-zoo": "2026.6.5", "vllm": "0.22.0"}, Severity.FAIL),
    ("EK608", {"unsloth-zoo": "2026.6.5", "vllm": "0.21.0"}, Severity.OK),
    ("EK608", {"unsloth-zoo": "2026.6.6", "vllm": "0.22.0"}, Severity.OK),
    ("EK608", {"unsloth-zoo": "2026.10.9", "vllm": "0.26.0"}, Severity.OK),
]


@pytest.mark.parametrize("check, installed, expected", CASES)
def test_each_check_on_both_sides_of_its_window(check, installed, expected):
    finding = DOCTOR_CHECKS[check].finding(make_facts("h100", installed=installed))
    assert finding.severity is expected
    if expected in (Severity.FAIL, Severity.WARN):
        assert all(version in finding.title or version in finding.fix for version in installed.values())
        assert "{" not in finding.title + finding.fix and finding.fix


def test_every_check_has_cases_on_both_sides_and_its_source():
    entries = load("incompatibilities")["checks"]
    for entry in entries:
        outcomes = {expected for check, _, expected in CASES if check == entry["id"]}
        assert Severity.OK in outcomes and outcomes & {Severity.FAIL, Severity.WARN}, entry["id"]
        assert entry["source"] and entry["checked"] and entry["summary"] and DOCTOR_CHECKS[entry["id"]].doc.startswith(entry["summary"])


def test_a_lock_inside_a_window_gets_the_checks_repair_and_nothing_else_does():
    """Issue #23: what envkit installs passes its own doctor, so warnings are repaired too."""
    from envkit.rules.known import lock_repairs

    assert lock_repairs({"transformers": "5.24.0", "PEFT": "0.21.2", "torch": "2.11.0"}) == ["transformers<5.24.0"]
    assert lock_repairs({"transformers": "5.23.0", "peft": "0.21.2"}) == []
    assert lock_repairs({"transformers": "5.24.0"}) == []  # peft not in the lock
    assert lock_repairs({"liger-kernel": "0.6.4", "transformers": "5.17.0"}) == ["liger-kernel>=0.6.5"]  # a warning
    assert lock_repairs({"datasets": "5.2.0", "pyarrow": "26.0.1"}) == []  # EK605 is no version window (issue #25)
    # EK607 and EK608 both fail for unsloth_zoo 2026.6.5 + vLLM 0.22.0 and share one repair
    assert lock_repairs({"unsloth_zoo": "2026.6.5", "vllm": "0.22.0"}) == ["unsloth-zoo>=2026.6.6"]
    verified = {"unsloth-zoo": "2026.10.9", "unsloth": "2026.10.9", "vllm": "0.26.0"}  # unsloth_vllm_verified
    assert lock_repairs(verified) == []
