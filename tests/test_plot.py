"""`envkit report` and envkit.runs.plot on a metrics.jsonl as found: torn lines, strings, NaN, ±inf, ±1e308,
and a metrics.jsonl that is not a file."""

from __future__ import annotations

import importlib.util
import os

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.runs.plot import MetricsError, Skipped, metric_rows, points

# What json.dumps writes for a diverged run (allow_nan), next to hand edits and a torn last line.
BAD = """{"step": 1, "reward": 0.5, "kl": 0.01}
{"step": 2, "reward": NaN, "kl": "0.02"}
{"step": 3, "reward": Infinity, "kl": 1e308}
{"step": 4, "reward": -Infinity, "kl": -1e308}
{"step": 5, "reward": true, "kl": null}
{"step": "6", "reward": 0.7}
[1, 2]
{"step": 7, "reward": 0.9, "kl": 0.03, "completion_length": [16]}
{"step": 8, "rew
"""
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def test_points_keep_finite_numbers_and_count_the_rest_per_key(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(BAD)
    skipped = Skipped()
    rows = metric_rows(tmp_path / "metrics.jsonl", skipped)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 7]
    assert skipped.lines == 3  # step "6", a list, the torn line
    assert points(rows, "reward", skipped) == [(1, 0.5), (7, 0.9)]
    assert points(rows, "kl", skipped) == [(1, 0.01), (7, 0.03)]
    assert points(rows, "completion_length", skipped) == []
    assert skipped.values == {"reward": 4, "kl": 4, "completion_length": 1}
    assert str(skipped) == ("3 lines without a step and 9 values not a number, NaN, ±inf or beyond ±1e+100 "
                            "(completion_length 1, kl 4, reward 4)")


def test_nothing_skipped_says_nothing(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "reward": 0.5}\n')
    skipped = Skipped()
    assert points(metric_rows(tmp_path / "metrics.jsonl", skipped), "reward", skipped) == [(1, 0.5)]
    assert str(skipped) == ""


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="needs matplotlib")
def test_report_draws_what_it_can_and_says_what_it_left_out(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(BAD)
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = result.stdout.splitlines()
    assert lines[0] == f"{tmp_path / 'run.png'} and report.html: 6 steps, reward 0.500 -> 0.900 (mean of the first step -> the last step)"
    assert lines[1].split() == ["step", "reward", "kl"]  # completion_length has no number: no column
    assert [line.split() for line in lines[2:]] == [["1", "0.5", "0.01"], ["2", "-", "-"], ["3", "-", "1.00e+308"],
                                                    ["4", "-", "-1.00e+308"], ["5", "-", "-"], ["7", "0.9", "0.03"]]
    assert result.stderr.splitlines() == [
        "envkit report: warning: left out of the picture: 3 lines without a step and 9 values not a number, NaN, "
        "±inf or beyond ±1e+100 (completion_length 1, kl 4, reward 4)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl", "report.html", "run.png"]  # no partial left


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="needs matplotlib")
def test_huge_values_of_both_signs_in_one_panel_do_not_break_the_axes(tmp_path):
    """1e308 and -1e308 are finite, yet a panel holding both overflowed matplotlib's axis limits."""
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "reward": 1e308}\n{"step": 2, "reward": -1e308}\n'
                                            '{"step": 3, "reward": 0.25}\n')
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "2 values not a number, NaN, ±inf or beyond ±1e+100 (reward 2)" in result.stderr


@pytest.mark.parametrize("make", [os.mkdir, os.mkfifo], ids=["folder", "fifo"])
def test_a_metrics_jsonl_that_is_not_a_regular_file_is_one_line_exit_2(tmp_path, make):
    make(tmp_path / "metrics.jsonl")
    with pytest.raises(MetricsError):
        metric_rows(tmp_path / "metrics.jsonl")
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"envkit report: {tmp_path / 'metrics.jsonl'} is not a regular file"]
    assert not (tmp_path / "run.png").exists()


def test_a_reward_axis_spans_zero_to_one_or_the_values_padded():
    """Issue #24: 0.09845-0.09880 autoscaled, and a 0.4 % wobble drew as a crash."""
    from envkit.runs.plot import reward_limits

    low, high = reward_limits([0.09845, 0.0988])
    assert -0.05 < low <= 0 and 1 <= high < 1.05
    low, high = reward_limits([0.16, 1.09])  # weights summing above 1
    assert low <= 0 and 1.09 < high < 1.2
    low, high = reward_limits([-2.0, -0.5])  # penalties
    assert low < -2.0 and 0 <= high < 0.2
