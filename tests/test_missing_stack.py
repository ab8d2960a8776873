"""A command whose libraries are not installed says which and how to get them, in one line (a `.[test]`-only
venv found both of these as tracebacks: issue #27 item 7)."""

from __future__ import annotations

import importlib.util
import json

from click.testing import CliRunner

from envkit.cli import main
from tests.conftest import make_facts


def test_train_without_the_train_extra_names_what_is_missing(monkeypatch, tmp_path):
    facts = make_facts(None, packages={"torch": "2.11.0", "transformers": "5.23.0"})
    monkeypatch.setattr("envkit.probe.collect", lambda *a, **k: facts)
    result = CliRunner().invoke(main, ["train", "tiny", "--output", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == ("envkit train: needs trl, peft, accelerate, datasets: "
                                              "pip install 'envkit[train]', or use the envkit image")
    assert not (tmp_path / "run").exists()


def test_report_without_matplotlib_is_one_line(monkeypatch, tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward": 0.5}) + "\n")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["envkit report: needs matplotlib to draw run.png: pip install "
                                          "'envkit[train]' (--samples works without)"]
