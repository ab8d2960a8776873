"""Knowledge windows hold nightlies, release candidates, post releases and local builds (issue #25).

PEP 440 matching keeps a pre-release out of every specifier set that names none: under packaging 23.2-25
``0.21.1.dev0`` is not ``>=0.20.0``, and under every packaging ``0.20.0rc1`` is not ``>=0.20.0`` nor
``1.16.0.post1`` ``<=1.16.0``.  envkit.knowledge.in_window matches on the release instead; these cases go
through each consumer of a window: the data checks (known.py), EK404, EK406 and the patch selection.
"""

from __future__ import annotations

import pytest

from envkit.knowledge import in_window
from envkit.rules import DOCTOR_CHECKS, Severity
from envkit.train.patches import select_patches
from tests.conftest import COHERENT, make_facts
from tests.test_patches import SERVER, recipe


@pytest.mark.parametrize("version, window, inside", [
    ("0.21.1.dev0", ">=0.20.0", True),  # a vLLM nightly after 0.21.0
    ("0.20.0rc1", ">=0.20.0", True),  # the candidate of the release that broke it
    ("0.19.2.dev5", ">=0.20.0", False),
    ("0.17.0rc1", "<0.17.0", False),  # the candidate of the fixing release
    ("0.16.1.dev3+g1234abc", ">=0.14.0,<0.17.0", True),
    ("1.16.0.post1", ">=1.11.0,<=1.16.0", True),
    ("2.11.0+cu130", ">=2.11", True),
    ("5.2.0+local", "==5.2.0", True),
    ("1.0.0", "", True),
])
def test_a_window_holds_the_builds_of_its_releases(version, window, inside):
    assert in_window(version, window) is inside


@pytest.mark.parametrize("installed, expected", [
    ({"unsloth-zoo": "2026.6.5", "vllm": "0.21.1.dev0"}, Severity.FAIL),  # unsloth-zoo#737's own report
    ({"unsloth-zoo": "2026.6.5", "vllm": "0.20.0rc1"}, Severity.FAIL),
    ({"unsloth-zoo": "2026.6.5", "vllm": "0.26.0+cu130"}, Severity.FAIL),
    ({"unsloth-zoo": "2026.6.6", "vllm": "0.21.1.dev0"}, Severity.OK),
    ({"unsloth-zoo": "2026.6.5", "vllm": "0.18.2.dev1"}, Severity.OK),
])
def test_the_data_checks_see_nightlies_and_local_builds(installed, expected):
    assert DOCTOR_CHECKS["EK607"].finding(make_facts("h100", installed=installed)).severity is expected


@pytest.mark.parametrize("vllm, expected", [
    ("0.14.0rc1", Severity.WARN), ("0.16.1.dev3", Severity.WARN), ("0.15.1+cu129", Severity.WARN),
    ("0.17.0rc1", Severity.OK), ("0.13.0+cu128", Severity.OK),
])
def test_sleep_mode_window_holds_prereleases(vllm, expected):
    assert DOCTOR_CHECKS["EK404"].finding(make_facts("h100", {"vllm": vllm})).severity is expected


@pytest.mark.parametrize("trl, expected", [
    ("0.28.0rc1", Severity.WARN), ("1.9.3.dev0", Severity.WARN), ("1.9.2+local", Severity.WARN),
    ("1.10.0rc1", Severity.OK), ("0.27.3.dev0", Severity.OK),
])
def test_trl_sleep_sync_window_holds_prereleases(trl, expected):
    facts = make_facts("h100", {"vllm": "0.26.0", "trl": trl})
    assert DOCTOR_CHECKS["EK406"].finding(facts).severity is expected


@pytest.mark.parametrize("trl, expected", [
    ("1.16.0.post1", ["EKP001"]), ("1.16.0+cu130", ["EKP001"]), ("1.11.0rc1", ["EKP001"]),
    ("1.14.1.dev0", ["EKP001"]), ("1.17.0.dev0", []), ("1.10.1.dev0", []),
])
def test_patch_selection_holds_prereleases(tmp_path, trl, expected):
    facts = make_facts(["h200", "h200"], COHERENT | {"trl": trl})
    assert select_patches(recipe(tmp_path, SERVER), facts, use_vllm=True)[0] == expected


def test_release_floors_hold_candidates_and_nightlies():
    """vLLM 0.20.0rc1 is a CUDA 13 build like 0.20.0 (floor 7.5); 0.15.0rc1 has VLLM_LORA_DISABLE_PDL like 0.15.0."""
    from envkit.knowledge import pdl_switch, vllm_cc_floor

    assert vllm_cc_floor("0.20.0rc1") == vllm_cc_floor("0.20.0") == "7.5" and vllm_cc_floor("0.19.2.dev3") == "7.0"
    assert pdl_switch("10.0", "0.15.0rc1") == pdl_switch("10.0", "0.15.0") and pdl_switch("10.0", "0.14.1") is None
