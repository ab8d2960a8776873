"""Class 1 of issue #29: trust to run a model folder's Python code comes from the command line, never from a file
in a run folder someone handed over (its manifest.json)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from envkit.cli import main
from envkit.runs.generate import GenerateError, find_trained


def planted_run(tmp_path, trust) -> tuple:
    """A run folder whose merged/ model maps its config class to evil.py, which leaves a file when imported."""
    canary = tmp_path / "evil-was-imported"
    merged = tmp_path / "run" / "merged"
    merged.mkdir(parents=True)
    (merged / "config.json").write_text(json.dumps({"model_type": "evil", "auto_map": {
        "AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}}))
    (merged / "evil.py").write_text(f"open({str(canary)!r}, 'w').close()\n")
    (tmp_path / "run" / "manifest.json").write_text(json.dumps({"generate": {"trust_remote_code": trust}}))
    return tmp_path / "run", canary


def test_a_manifest_saying_trust_is_refused_without_the_flag(tmp_path):
    run, _ = planted_run(tmp_path, True)
    with pytest.raises(GenerateError, match="pass --trust-remote-code"):
        find_trained(run, merged=True)
    assert find_trained(run, merged=True, trust_remote_code=True).trust_remote_code is True


def test_generate_never_imports_the_run_folders_code_without_the_flag(tmp_path):
    pytest.importorskip("peft")
    run, canary = planted_run(tmp_path, True)
    result = CliRunner().invoke(main, ["generate", str(run), "hi", "--merged", "--engine", "transformers"])
    assert result.exit_code == 2 and not canary.exists()
    assert result.stderr.splitlines() == [f"envkit generate: {run} was trained with model.trust_remote_code: true; "
                                          "pass --trust-remote-code to run the Python code its model ships (only for "
                                          "a run and model you trust)"]


@settings(max_examples=50, deadline=None)
@given(record=st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5),
                        st.dictionaries(st.sampled_from(["trust_remote_code", "chat_template"]),
                                        st.one_of(st.booleans(), st.text(max_size=3), st.integers()))))
def test_no_manifest_turns_trust_on(tmp_path_factory, record):
    run = tmp_path_factory.mktemp("run")
    (run / "merged").mkdir()
    (run / "merged" / "config.json").write_text("{}")
    (run / "manifest.json").write_text(json.dumps({"generate": record}))
    try:
        trained = find_trained(run, merged=True)
    except GenerateError:
        return
    assert trained.trust_remote_code is False
