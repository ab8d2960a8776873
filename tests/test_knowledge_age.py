"""EK310: the doctor knows its own age (issue #25 item 5).  A machine with releases newer than anything envkit's
matrix has seen gets one line naming them and how old the knowledge is, instead of being judged silently."""

from __future__ import annotations

from datetime import date

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.knowledge.matrix import Matrix
from envkit.rules import DOCTOR_CHECKS, Severity
from tests.conftest import FIXTURES, make_facts

NEWER = FIXTURES / "facts" / "h100-newer-than-matrix.json"  # the H100 snapshot with vllm 0.35.0, trl 1.17.0,
REAL = FIXTURES / "facts" / "h100-vllm0.26-trl1.16.json"  # transformers 5.26.0, probed 2026-12-21


def test_a_machine_newer_than_the_matrix_gets_one_line_naming_the_packages_and_the_age():
    result = CliRunner().invoke(main, ["doctor", "--facts", str(NEWER)])
    lines = [line for line in result.output.splitlines() if "knowledge predates" in line]
    assert len(lines) == 1, result.output
    oldest = min(Matrix.shipped().refreshed(p) for p in ("transformers", "trl", "vllm"))
    days = (date(2026, 12, 21) - date.fromisoformat(oldest)).days
    assert "transformers 5.26.0, trl 1.17.0, vllm 0.35.0" in lines[0]
    assert f"refreshed {oldest}, {days} days before this probe" in lines[0]
    assert "envkit matrix refresh" in result.output


def test_the_real_snapshot_is_known_to_the_matrix():
    result = CliRunner().invoke(main, ["doctor", "--json", "--facts", str(REAL)])
    assert "knowledge predates" not in result.output
    assert '"id": "EK310"' in result.output


@pytest.mark.parametrize("installed, expected", [
    ({"vllm": "0.34.1.dev0"}, Severity.WARN),  # a nightly after the newest release known
    ({"vllm": "0.99.0rc1"}, Severity.WARN),
    ({"vllm": "0.34.0+cu130"}, Severity.OK),  # a local build of a known release
    ({"torch": "2.15.0+cu132", "trl": "1.16.0"}, Severity.OK),
    ({"torch": "2.16.0"}, Severity.WARN),
    ({"numpy": "9.0.0"}, Severity.SKIP),  # nothing the matrix tracks
])
def test_newer_than_known_is_compared_on_the_release(installed, expected):
    finding = DOCTOR_CHECKS["EK310"].finding(make_facts("h100", installed=installed))
    assert finding.severity is expected


def test_facts_probed_before_the_refresh_state_no_age():
    """make_facts' probe date (2026-11-23) precedes the matrix: the line names the date without a negative age."""
    finding = DOCTOR_CHECKS["EK310"].finding(make_facts("h100", installed={"trl": "9.0.0"}))
    assert finding.title.endswith(f"refreshed {Matrix.shipped().refreshed('trl')}")
    assert "trl 9.0.0" in finding.title and "newest known: trl 1.16.0" in finding.evidence


def test_explain_documents_the_check():
    result = CliRunner().invoke(main, ["doctor", "--explain", "EK310"])
    assert result.exit_code == 0 and "envkit matrix refresh" in result.output and "refreshed" in result.output
