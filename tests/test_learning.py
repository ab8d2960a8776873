"""The learning-signal guard (envkit.train.learning): each cause of a step that trains on nothing, from TRL's
log keys; live in the trainer with the tiny model, one run per cause (each would end "done" in silence
without the guard); and what the summary and manifest.json say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.train.guard import StaleWeightGuard, guard_lines, guard_record
from envkit.train.learning import LearningSignalGuard, SignalLimits, signal_line, step_cause
from tests.conftest import needs_matplotlib, needs_train

LIMITS = SignalLimits(consecutive=3, still=1e-7)
HEALTHY = {"reward": 0.1, "grad_norm": 0.2, "completions/clipped_ratio": 0.75, "frac_reward_zero_std": 0.0,
           "adapter_update": 0.012}  # step 1 of the tiny recipe (lr 1e-3) on the CPU


@pytest.mark.parametrize("change, masking, cause", [
    ({}, True, None),
    ({"completions/clipped_ratio": 1.0, "grad_norm": 0.0}, True, "truncated"),
    ({"completions/clipped_ratio": 1.0}, False, None),  # unmasked, a truncated completion still trains
    ({"frac_reward_zero_std": 1.0, "grad_norm": 0.0}, False, "zero_spread"),
    ({"frac_reward_zero_std": 0.5}, False, None),
    ({"grad_norm": 0.0}, False, "no_gradient"),
    ({"adapter_update": 3e-30}, False, "not_moving"),
    ({"adapter_update": 6e-5}, False, None),  # the tiny recipe at lr 5e-6
], ids=["healthy", "truncated", "truncated-unmasked", "zero-spread", "half-spread", "no-gradient", "still", "slow"])
def test_each_cause_of_a_dead_step(change, masking, cause):
    assert step_cause({**HEALTHY, **change}, masking, LIMITS) == cause


def test_the_verdict_comes_after_three_dead_steps_in_a_row_once():
    guard = LearningSignalGuard(masking=True, limits=LIMITS)
    dead = {**HEALTHY, "completions/clipped_ratio": 1.0, "grad_norm": 0.0}
    steps = [(1, dead), (2, dead), (3, HEALTHY), (4, dead), (5, dead)]
    assert [guard.observe(step, logs) for step, logs in steps] == [None] * 5
    assert guard.observe(5, {"eval_reward": 0.1}) is None  # an evaluation row is no step
    verdict = guard.observe(6, dead)
    assert verdict is not None and (verdict.step, verdict.cause, verdict.consecutive) == (6, "truncated", 3)
    assert guard.observe(7, dead) is None and guard.verdict is verdict
    assert guard.report() == {"steps": 7, "dead_steps": 6, "causes": {"truncated": 6}, "verdict": verdict.to_dict()}
    assert "raise grpo.max_completion_length" in verdict.hint and verdict.exit_code == 4
    assert signal_line(guard.report()).startswith("6 of 7 steps trained on nothing, mostly (6): every completion was")


def test_the_shipped_limits():
    assert SignalLimits.shipped() == LIMITS


def test_the_summary_says_the_sampler_gap_was_not_measured_on_unsloth():
    record = guard_record("warn", StaleWeightGuard(), LearningSignalGuard(False, LIMITS), None, "unsloth")
    assert record["stale_weights_measured_steps"] == 0
    [line] = guard_lines(record)
    assert line.startswith("  sampler gap not measured: backend unsloth logged no sampling/sampling_logp_difference")
    measured = StaleWeightGuard()
    measured.observe(1, {"sampling/sampling_logp_difference/mean": 0.004})
    assert guard_record("warn", measured, None, None, "unsloth")["stale_weights_not_measured"] is None


@needs_train
def test_the_callback_stops_on_a_learning_verdict(capsys):
    from transformers import TrainerControl

    from envkit.train.callbacks import GuardCallback

    callback = GuardCallback(stop=True, speak=True, guards=[StaleWeightGuard(), LearningSignalGuard(False, LIMITS)])
    control, state = TrainerControl(), type("State", (), {"global_step": 0})()
    for step in (1, 2, 3):
        state.global_step = step
        callback.on_log(None, state, control, logs={**HEALTHY, "frac_reward_zero_std": 1.0})
    assert control.should_training_stop and control.should_save
    assert "WARNING: no learning signal: 3 steps in a row up to step 3 trained on nothing" in capsys.readouterr().err


# The tiny recipe forced into each cause: a few steps each, in this process (torch is imported once).
RECIPES = Path(__file__).resolve().parents[1] / "recipes"
CONSTANT = "def constant(prompts, completions, **_):\n    return [1.0] * len(completions)\n"


def tiny_run(tmp_path: Path, *changes: tuple[str, str], guard: str = "warn"):
    text = (RECIPES / "tiny.yaml").read_text()
    text = text.replace("path: data/toy.jsonl", f"path: {RECIPES / 'data' / 'toy.jsonl'}")
    for old, new in [("max_steps: 20", "max_steps: 3"), ("merge: true", "merge: false"), *changes]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    (tmp_path / "recipe.yaml").write_text(text + f"guard: {guard}\n")
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(tmp_path / "recipe.yaml"), "--output", str(run)])
    manifest = json.loads((run / "manifest.json").read_text())
    return result, run, manifest["guard"]["learning_signal"]




@pytest.mark.train
def test_completions_that_never_end_under_masking_stop_the_run(tmp_path):
    # min_new_tokens: no completion may end before the cap (the tiny model learns to stop within a step)
    result, run, signal = tiny_run(tmp_path, ("max_completion_length: 16", "max_completion_length: 2\n"
                                              "  mask_truncated_completions: true\n"
                                              "  generation_kwargs: {min_new_tokens: 2}"), guard="stop")
    assert result.exit_code == 4, result.output
    said = "stopped at step 3 by the learning-signal guard: 3 steps in a row up to step 3 trained on nothing"
    assert said in result.output
    assert "fix: raise grpo.max_completion_length, or set grpo.mask_truncated_completions: false" in result.output
    assert signal["verdict"]["cause"] == "truncated" and signal["causes"] == {"truncated": 3}
    assert (run / "checkpoint-3").is_dir() and not (run / "adapter").exists()


@pytest.mark.train
def test_a_reward_that_scores_every_completion_alike_is_named(tmp_path):
    (tmp_path / "const.py").write_text(CONSTANT)
    rewards = ("  - {name: exact_answer, weight: 1.0}\n  - {name: length, weight: 0.1}\n"
               "  - {name: digits, weight: 1.0}\n")
    result, run, signal = tiny_run(tmp_path, (rewards, "  - {name: const:constant, weight: 1.0}\n"))
    assert result.exit_code == 0, result.output
    assert "WARNING: no learning signal: 3 steps in a row up to step 3" in result.output
    said = "learning    3 of 3 steps trained on nothing, mostly (3): every group's completions got the same reward"
    assert said in result.output
    assert signal["causes"] == {"zero_spread": 3} and signal["verdict"]["cause"] == "zero_spread"


@pytest.mark.train
def test_an_adapter_that_does_not_move_is_named(tmp_path):
    result, run, signal = tiny_run(tmp_path, ("learning_rate: 2.0e-2", "learning_rate: 1.0e-30"))
    assert result.exit_code == 0, result.output
    assert "fix: raise grpo.learning_rate" in result.output
    assert signal["causes"] == {"not_moving": 3} and signal["verdict"]["cause"] == "not_moving"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(row["adapter_update"] < 1e-20 and row["grad_norm"] > 0 for row in rows)


@needs_matplotlib
@pytest.mark.parametrize("masking, warned", [(True, True), (False, False)], ids=["masked", "unmasked"])
def test_report_names_a_run_that_trained_on_nothing(tmp_path, masking, warned):
    rows = [{"step": s, **HEALTHY, "completions/clipped_ratio": 1.0} for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = {"grpo_config": {"mask_truncated_completions": masking}, "effective_config": None}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert ("WARNING: no learning signal: 3 steps in a row up to step 3 trained on nothing" in result.output) is warned
