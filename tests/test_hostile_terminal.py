"""Class 7 of issue #29: what users, folders, files or an index supply reaches the terminal through one
sanitising print (envkit.terminal.echo): no ESC, no other C0/C1 control, no bidirectional override."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from envkit.cli import main
from envkit.terminal import STEERING, echo
from tests.conftest import needs_matplotlib, needs_train

EVIL = "\x1b]0;pwned\x07\x1b[2J\u202eevil\x9b"


def shown(result) -> str:
    return result.output + (result.stderr if result.stderr_bytes is not None else "")


def steering(text: str) -> set[str]:
    return {c for c in text if ord(c) in STEERING and c != "\n"}


def invoke(args) -> str:
    return shown(CliRunner().invoke(main, [str(a) for a in args]))


@needs_matplotlib
def test_report_prints_a_hostile_folder_and_reward_names_escaped(tmp_path):
    run = tmp_path / f"run{EVIL}"
    run.mkdir()
    rows = [{"step": s, "reward": 0.5, f"rewards/{EVIL}/mean": 0.1 * s, EVIL: "x"} for s in (1, 2)]
    (run / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    out = invoke(["report", run])
    assert steering(out) == set() and "\\x1b" in out


@pytest.mark.parametrize("args", [["recipes", "show", f"nope{EVIL}"], ["recipes", "explain", f"grpo.{EVIL}"],
                                  ["matrix", "show", f"trl{EVIL}"], ["matrix", "show", "trl", EVIL]])
def test_user_input_echoed_back_is_escaped(args):
    assert steering(invoke(args)) == set()


def test_dump_facts_path_is_escaped(tmp_path):
    out = invoke(["doctor", "--no-gpu", "--dump-facts", tmp_path / EVIL / "facts.json"])
    assert steering(out) == set() and "cannot write" in out


def test_generate_prints_a_hostile_run_folder_escaped(tmp_path):
    pytest.importorskip("peft")
    run = tmp_path / f"run{EVIL}"
    run.mkdir()
    assert steering(invoke(["generate", run, "hi", "--merged"])) == set()


@needs_train
def test_train_prints_a_hostile_output_folder_escaped(tmp_path):
    out = tmp_path / f"run{EVIL}"
    out.mkdir()
    (out / "mine.txt").write_text("x")
    text = invoke(["train", "tiny", "--output", out])
    assert steering(text) == set() and "holds files envkit train did not write" in text


def test_the_run_summary_goes_through_the_sanitising_print(tmp_path, capsys):
    from envkit.runs.summary import run_summary

    echo(run_summary(tmp_path / EVIL, [{"step": 1, "reward": 0.5, f"rewards/{EVIL}/mean": 0.5}], 1, 1.0, "vLLM", False))
    out = capsys.readouterr().out
    assert steering(out) == set() and out.count("\n") > 2


@given(st.text())
def test_echo_never_lets_a_steering_character_through(text):
    import io

    import click

    buffer = io.StringIO()
    original = click.echo
    try:
        click.echo = lambda text, err=False, nl=True: buffer.write(text)
        echo(text)
    finally:
        click.echo = original
    assert steering(buffer.getvalue()) == set()
    assert buffer.getvalue().count("\n") == text.count("\n")
