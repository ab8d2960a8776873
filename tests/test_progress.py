"""envkit train's line per step (envkit.train.progress): what it says from metrics.jsonl's rows."""

from __future__ import annotations

from envkit.train.progress import StepLines

GAP = "sampling/sampling_logp_difference/mean"


def row(step: int, elapsed: float, **more) -> dict:
    return {"step": step, "step_time": 0.5, "elapsed_s": elapsed, "reward": 0.25, **more}


def test_a_line_has_the_step_reward_pace_and_eta_and_the_gap_when_measured():
    lines = StepLines(bar=False)
    assert lines.line(row(1, 30.0), 10) == "envkit train: step 1/10  reward 0.250  0.50 s/step  ETA 0:04"
    line = lines.line(row(3, 34.0, tokens_per_s=812.4, **{GAP: 0.00321}), 10)
    # the pace from step 1 on (2 s a step), not step 1's start-up: 7 steps left, 14 s
    assert line == "envkit train: step 3/10  reward 0.250  sampler gap 0.0032  2.00 s/step  812 tok/s  ETA 0:14"


def test_on_a_terminal_the_line_carries_a_bar_and_hours_show_in_the_eta():
    lines = StepLines(bar=True)
    lines.line(row(1, 100.0), 2000)
    line = lines.line(row(500, 100.0 + 499 * 4), 2000)
    assert "step 500/2000  [#####...............]" in line and line.endswith("ETA 1:40:00")
