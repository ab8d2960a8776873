"""What a run says in words (envkit.runs.summary) and which panels run.png draws (envkit.runs.plot.panels)."""

from __future__ import annotations

from pathlib import Path

from envkit.runs.plot import panels
from envkit.runs.summary import generation_line, metrics_table, reward_trend, run_summary

GAP = "sampling/sampling_logp_difference/mean"


def rows(n: int, **extra) -> list[dict]:
    return [{"step": i + 1, "reward": float(i), "rewards/exact/mean": 0.0, "step_time": 1.5, **extra} for i in range(n)]


def test_the_trend_compares_five_steps_at_each_end_or_halves_of_a_short_run():
    assert reward_trend(rows(20)) == "2.000 -> 17.000 (mean of the first 5 steps -> the last 5 steps)"
    assert reward_trend(rows(4)) == "0.500 -> 2.500 (mean of the first 2 steps -> the last 2 steps)"
    assert reward_trend(rows(3)) == "0.000 -> 2.000 (mean of the first step -> the last step)"
    assert reward_trend(rows(1)) is None
    assert reward_trend([{"step": 1, "reward": "x"}, {"step": 2, "reward": None}]) is None


def test_generation_line_says_why_vllm_is_off():
    assert generation_line("no GPU visible", "colocate", False) == "model.generate (vLLM off: no GPU visible)"
    assert generation_line(None, "colocate", True) == "vLLM, colocate, sleep mode"
    assert generation_line(None, "server", True) == "vLLM, server"


def test_summary_names_the_folder_the_adapter_and_the_next_commands():
    text = run_summary(Path("runs/my run"), rows(12), 12, 125.0, "model.generate (vLLM off: no GPU visible)", merged=True)
    lines = text.splitlines()
    assert lines[0] == "envkit train: done: 12 steps in 2 min -> runs/my run"
    assert "  generation  model.generate (vLLM off: no GPU visible)" in lines
    assert "  reward      2.000 -> 9.000 (mean of the first 5 steps -> the last 5 steps)" in lines
    assert "  adapter     runs/my run/adapter  (merged model: runs/my run/merged)" in lines
    assert any(line.strip().startswith("next        envkit generate 'runs/my run' ") for line in lines)
    assert "envkit report 'runs/my run'" in text


def test_table_has_a_column_per_metric_present_and_dashes_for_bad_values():
    table = metrics_table(rows(3, kl=0.0) + [{"step": 4, "reward": float("nan"), "step_time": "x"}]).splitlines()
    assert table[0].split() == ["step", "reward", "r:exact", "kl", "step", "s"]  # "step s": step time
    assert table[1].split() == ["1", "0", "0", "0", "1.5"]
    assert table[4].split() == ["4", "-", "-", "-", "-"]
    assert "loss" not in table[0] and "tok/s" not in table[0]  # not in any row: no column


def test_a_long_run_shows_evenly_spread_steps_first_and_last_included():
    table = metrics_table(rows(100), limit=5).splitlines()
    assert [line.split()[0] for line in table[1:6]] == ["1", "26", "51", "75", "100"]
    assert table[-1] == "(5 of 100 steps shown)"


def test_panels_without_points_are_left_out():
    titles = [title for title, _, _ in panels(rows(3), GAP)[0]]
    assert titles == ["reward (weighted total)", "reward per function (unweighted mean)", "step time (s), tokens/s (right)"]
    with_all = rows(3, kl=0.1, completion_length=12, tokens_per_s=99.0, **{GAP: 0.001})
    assert len(panels(with_all, GAP)[0]) == 6
    assert [title for title, _, _ in panels([], GAP)[0]] == ["reward (weighted total)"]
