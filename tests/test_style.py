"""ruff's line length (pyproject.toml [tool.ruff]: 120) in CI, through the README's one test command.

The lines over it carried over from before the limit was enforced are counted per file in
tests/fixtures/long-lines-left.json (issue #15): a file may not gain one, a new file has none, and a count
only goes down (lower it when you shorten lines)."""

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


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff not installed (pip install -e '.[test]')")
def test_no_file_gains_a_line_over_the_length_limit():
    found = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "E501", "--output-format", "json",
                            "--exit-zero", "envkit", "tests"], cwd=ROOT, capture_output=True, text=True, check=True)
    counts = Counter(Path(e["filename"]).resolve().relative_to(ROOT).as_posix() for e in json.loads(found.stdout))
    left = json.loads(LEFT.read_text())
    grown = {path: f"{n} > {left.get(path, 0)}" for path, n in counts.items() if n > left.get(path, 0)}
    assert not grown, f"lines over 120 characters (ruff check --select E501 envkit tests): {grown}"
