"""ruff's line length (pyproject.toml [tool.ruff]: 120) in CI, through the README's one test command.

The lines over it carried over from before the limit was enforced are counted per file in
tests/fixtures/long-lines-left.json (issue #15): a file may not gain one, a new file has none, and a pin
equals today's count (lower it when you shorten lines: a pin above the count would let them come back)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEFT = ROOT / "tests" / "fixtures" / "long-lines-left.json"


def drift(counts: dict[str, int], pins: dict[str, int]) -> tuple[dict[str, str], dict[str, str]]:
    """(files over their pin, pins above the file's count): both fail, so a shortened line cannot come back."""
    grown = {path: f"{n} > {pins.get(path, 0)}" for path, n in counts.items() if n > pins.get(path, 0)}
    stale = {path: f"{counts.get(path, 0)} < {pin}" for path, pin in pins.items() if counts.get(path, 0) < pin}
    return grown, stale


def test_a_count_that_rises_or_falls_below_its_pin_is_drift():
    pins = {"a.py": 2, "b.py": 1}
    assert drift({"a.py": 2, "b.py": 1}, pins) == ({}, {})
    assert drift({"a.py": 3, "b.py": 1, "new.py": 1}, pins) == ({"a.py": "3 > 2", "new.py": "1 > 0"}, {})
    assert drift({"a.py": 1}, pins) == ({}, {"a.py": "1 < 2", "b.py": "0 < 1"})  # b.py shortened or gone


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff not installed (pip install -e '.[test]')")
def test_every_file_has_exactly_its_pinned_count_of_lines_over_the_length_limit():
    found = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "E501", "--output-format", "json",
                            "--exit-zero", "envkit", "tests"], cwd=ROOT, capture_output=True, text=True, check=True)
    counts = Counter(Path(e["filename"]).resolve().relative_to(ROOT).as_posix() for e in json.loads(found.stdout))
    grown, stale = drift(counts, json.loads(LEFT.read_text()))
    assert not grown, f"lines over 120 characters (ruff check --select E501 envkit tests): {grown}"
    assert not stale, f"fewer long lines than pinned: lower these in {LEFT.relative_to(ROOT)} to today's count: {stale}"
