"""The stale-weight guard: on the curves recorded on 2xH200 (tests/fixtures/guard, benchmarks/results/
2026-11-30-2xh200.md), live in the trainer's callbacks, in `envkit report`, and `guard: stop` end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.runs.plot import metric_rows
from envkit.train.guard import GuardLimits, StaleWeightGuard, check_rows
from tests.conftest import needs_matplotlib, needs_train

CURVES = Path(__file__).parent / "fixtures" / "guard"
HEALTHY = sorted(CURVES.glob("healthy-*.jsonl"))
STALE = sorted(CURVES.glob("stale-*.jsonl"))
METRIC = "sampling/sampling_logp_difference/mean"


def test_the_fixtures_are_there():
    assert len(HEALTHY) == 4 and len(STALE) == 1


@pytest.mark.parametrize("curve", HEALTHY, ids=lambda p: p.stem)
def test_silent_on_every_healthy_run(curve):
    assert check_rows(metric_rows(curve)) is None


@pytest.mark.parametrize("curve", STALE, ids=lambda p: p.stem)
def test_fires_on_the_stale_run_within_five_steps(curve):
    verdict = check_rows(metric_rows(curve))
    assert verdict is not None and verdict.step == 3
    assert verdict.metric == METRIC and verdict.value > verdict.threshold == 0.1
    assert "not running on the weights being trained" in verdict.message()


def test_one_noisy_step_does_not_fire_and_a_verdict_is_given_once():
    guard = StaleWeightGuard(GuardLimits(METRIC, 0.1, 2))
    assert guard.observe(1, {METRIC: 0.5}) is None  # one step above
    assert guard.observe(2, {METRIC: 0.01}) is None  # back down: the run resets
    assert guard.observe(3, {"reward": 0.5}) is None  # no metric (model.generate logs none): no change
    assert guard.observe(4, {METRIC: 0.2}) is None
    verdict = guard.observe(5, {METRIC: 0.3})
    assert verdict is not None and (verdict.step, verdict.value) == (5, 0.3)
    assert guard.observe(6, {METRIC: 0.9}) is None and guard.verdict is verdict


@needs_train
@pytest.mark.parametrize("stop", [False, True])
def test_callback_warns_and_with_stop_saves_and_ends_training(stop, capsys):
    from transformers import TrainerControl

    from envkit.train.callbacks import GuardCallback

    callback, control = GuardCallback(stop=stop, speak=True), TrainerControl()
    state = type("State", (), {"global_step": 2})()
    for step, gap in [(1, 0.007), (2, 0.4), (3, 0.43)]:
        state.global_step = step
        callback.on_log(None, state, control, logs={METRIC: gap})
    assert (control.should_save, control.should_training_stop) == (stop, stop)
    assert "WARNING: stale weights" in capsys.readouterr().err


@needs_train
def test_metrics_keep_the_sampling_gap(tmp_path):
    from envkit.train.callbacks import MetricsCallback

    callback = MetricsCallback(tmp_path / "m.jsonl")
    state = type("State", (), {"global_step": 1})()
    callback.on_log(None, state, None, logs={"reward": 0.1, METRIC: 0.007, "sampling/importance_sampling_ratio/min": 0.9,
                                             "entropy": 5.0})
    [row] = metric_rows(tmp_path / "m.jsonl")
    assert row[METRIC] == 0.007 and row["sampling/importance_sampling_ratio/min"] == 0.9 and "entropy" not in row


@needs_matplotlib
@pytest.mark.parametrize("curve, warned", [(STALE[0], True), (HEALTHY[0], False)], ids=["stale", "healthy"])
def test_report_warns_on_a_stale_run(tmp_path, curve, warned):
    shutil.copy(curve, tmp_path / "metrics.jsonl")
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 0 and (tmp_path / "run.png").exists()
    assert ("WARNING: stale weights" in result.output) is warned


@pytest.mark.train
def test_guard_stop_saves_a_checkpoint_and_exits_3(tmp_path, monkeypatch):
    """The tiny CPU run generates without vLLM, so no sampling gap is logged: the guard is pointed at a metric
    every step has (reward above -1) to take the stop path for real: TRL's trainer, the checkpoint, the exit."""
    monkeypatch.setattr(GuardLimits, "shipped", classmethod(lambda cls: GuardLimits("reward", -1.0, 2)))
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "tiny.yaml"
    text = recipe.read_text().replace("path: data/toy.jsonl", f"path: {recipe.parent / 'data' / 'toy.jsonl'}")
    (tmp_path / "tiny.yaml").write_text(text + "guard: stop\n")
    result = CliRunner().invoke(main, ["train", str(tmp_path / "tiny.yaml"), "--output", str(tmp_path / "run")])
    assert result.exit_code == 3, result.output
    assert "stopped at step 2 by the stale-weight guard" in result.output
    run = tmp_path / "run"
    assert (run / "checkpoint-2" / "trainer_state.json").exists() and not (run / "adapter").exists()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["completed"] is False and manifest["guard"]["stale_weights"]["step"] == 2
