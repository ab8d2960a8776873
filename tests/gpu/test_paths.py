"""GPU acceptance, call 1 (issue #23): the paths a user types, each next to a known-good arm in one results file.

    python -m pytest tests/gpu/test_paths.py       # ~7 min on an H100 with envkit's lock staged

`envkit train` colocate (next to plain TRL, same seed), colocate + sleep and vLLM off; `envkit generate` through
vLLM and transformers on the trained run and on the base model; `envkit report`; `envkit budget` against the
measured run.  The two-GPU arms (server mode, colocate over two ranks) and backend unsloth (its own bundle) are
skipped here with their reason unless the machine has them.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import statistics
from pathlib import Path

import pytest
from acceptance import (GPUS, MARKS, NEEDS_VLLM, STEPS, WORK, envkit, gain, installed, metrics, plain_trl, rewards,
                        write_recipe)
from acceptance import model, results  # noqa: F401 - fixtures

pytestmark = MARKS

GUARD_METRIC = "sampling/sampling_logp_difference/mean"
LEARNS = 0.3  # reward gain (last 3 steps - first 3) a run must show; the 205M shape goes 0.06 -> ~1.0
SAMPLES = 64  # completions per engine in the generate comparison


def digit_scores(folder: Path, texts: list[str]) -> list[float]:
    """The reward the run trained on (the user's digits.py beside the recipe) over ``texts``."""
    spec = importlib.util.spec_from_file_location("digits", folder / "digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.digit_reward(texts)


def train_arm(name: str, model: Path, results, vllm: str, **recipe) -> dict:
    folder = WORK / name
    recipe_path = write_recipe(folder, model, vllm, **recipe)
    ran = envkit("train", "recipe.yaml", "--output", "run", cwd=folder, log=folder / "train.log", timeout=420)
    rows = metrics(folder / "run")
    gaps = [r[GUARD_METRIC] for r in rows if GUARD_METRIC in r]
    written = folder / "run" / "manifest.json"
    config = (json.loads(written.read_text()).get("grpo_config") or {}) if written.exists() else {}
    times = [r["step_time"] for r in rows[2:] if "step_time" in r]
    peaks = [r["gpu_peak_gib"] for r in rows if "gpu_peak_gib" in r]
    entry = ran.summary() | {"steps": len(rows), "rewards": rewards(rows),
                             "gain": gain(rewards(rows)) if rows else None,
                             "sampler_gap_max": round(max(gaps), 4) if gaps else None,
                             "gpu_peak_gib": max(peaks, default=None),
                             "median_step_s": round(statistics.median(times), 3) if times else None,
                             "vllm": {k: v for k, v in config.items() if k.startswith(("use_vllm", "vllm_"))}}
    results.add(name, entry)
    return entry | {"folder": folder, "recipe": recipe_path, "ran": ran}


@pytest.fixture(scope="module")
def colocate(model, results):
    return train_arm("envkit-colocate", model, results, "enabled: true\n  mode: colocate\n  sleep: false")


def assert_learned(arm: dict) -> None:
    assert arm["exit"] == 0, arm["envkit_lines"]
    assert arm["steps"] == STEPS
    assert arm["gain"] >= LEARNS, arm["rewards"]
    assert any(line.startswith("envkit train: done:") for line in arm["envkit_lines"])


@NEEDS_VLLM
def test_colocate_learns_next_to_plain_trl(colocate, results):
    trl = plain_trl("trl-colocate")
    trl_rewards = rewards(trl.get("metrics") or [])
    results.add("trl-colocate", {"exit": "ok" if trl.get("ok") else trl.get("error"), "rewards": trl_rewards,
                                 "gain": gain(trl_rewards) if trl_rewards else None})
    assert trl.get("ok"), trl.get("log_tail")
    assert_learned(colocate)
    run = colocate["folder"] / "run"
    assert (run / "adapter" / "adapter_config.json").is_file() and (run / "manifest.json").is_file()
    assert colocate["sampler_gap_max"] is not None and colocate["sampler_gap_max"] < 0.1  # the guard's threshold
    assert colocate["gain"] >= 0.5 * gain(trl_rewards), (colocate["rewards"], trl_rewards)


def base_adapter(run: Path) -> Path:
    """The run's adapter with every lora_B zeroed: LoRA's identity, i.e. the base model through the same path."""
    from safetensors.torch import load_file, save_file

    base = run / "base-adapter"
    shutil.rmtree(base, ignore_errors=True)
    shutil.copytree(run / "adapter", base)
    weights = load_file(str(base / "adapter_model.safetensors"))
    zeroed = {k: v.zero_() if "lora_B" in k else v for k, v in weights.items()}
    save_file(zeroed, str(base / "adapter_model.safetensors"))
    return base


def sample_scores(folder: Path, target: str, engine: str, log: str) -> tuple[dict, list[float]]:
    ran = envkit("generate", target, "Write digits: 12 ab 7", "-n", str(SAMPLES), "--json", "--engine", engine,
                 cwd=folder, log=folder / log, timeout=240)
    start = ran.text.find('[\n  {\n    "prompt"')  # envkit's JSON on stdout, among vLLM's log lines
    found = ran.code == 0 and start >= 0
    samples = json.JSONDecoder().raw_decode(ran.text, start)[0][0]["completions"] if found else []
    return ran.summary(), digit_scores(folder, samples)


@NEEDS_VLLM
def test_generate_samples_the_trained_adapter_on_both_engines(colocate, results):
    folder, run = colocate["folder"], colocate["folder"] / "run"
    base_adapter(run)
    outcome = {}
    for name, target, engine in [("vllm", "run", "vllm"), ("transformers", "run", "transformers"),
                                 ("base-vllm", "run/base-adapter", "vllm")]:
        ran, scores = sample_scores(folder, target, engine, f"generate-{name}.log")
        outcome[name] = ran | {"n": len(scores), "mean": round(statistics.mean(scores), 4) if scores else None,
                               "stdev": round(statistics.stdev(scores), 4) if len(scores) > 1 else None}
    results.add("envkit-generate", outcome)
    for engine in outcome.values():
        assert engine["exit"] == 0 and engine["n"] == SAMPLES, engine
        assert engine["tracebacks"] == 0
    vllm, hf, base = (outcome[k]["mean"] for k in ("vllm", "transformers", "base-vllm"))
    noise = 3 * max(outcome["vllm"]["stdev"], outcome["transformers"]["stdev"], 0.02) / SAMPLES ** 0.5
    assert abs(vllm - hf) <= max(noise, 0.1), outcome  # the same adapter through both engines
    assert min(vllm, hf) - base >= LEARNS, outcome  # and not the base model


@NEEDS_VLLM
def test_a_run_that_cannot_learn_is_named_within_three_steps(model, results):
    """Issue #30 item 6 (backend trl): completions that never end (vLLM's ignore_eos) with truncated ones masked
    out of the loss train on nothing; the learning-signal guard says so by step 3 and the manifest records it."""
    arm = train_arm("envkit-truncated", model, results, "enabled: true\n  mode: colocate\n  sleep: false", steps=4,
                    grpo="\n  mask_truncated_completions: true\n  generation_kwargs: {ignore_eos: true}")
    run = arm["folder"] / "run"
    guard = json.loads((run / "manifest.json").read_text())["guard"]["learning_signal"]
    grad_norms = [r.get("grad_norm") for r in metrics(run)]
    results.add("envkit-truncated", results.data["arms"]["envkit-truncated"] | {"learning_signal": guard,
                                                                               "grad_norm": grad_norms})
    assert arm["exit"] == 0, arm["envkit_lines"]  # guard: warn goes on
    assert any("no learning signal" in line for line in arm["ran"].lines), arm["envkit_lines"]
    assert guard["verdict"]["cause"] == "truncated" and guard["verdict"]["step"] <= 3, guard
    assert all(g == 0 for g in grad_norms), grad_norms


@NEEDS_VLLM
def test_report_redraws_the_run(colocate, results):
    ran = envkit("report", "run", cwd=colocate["folder"], log=colocate["folder"] / "report.log")
    results.add("envkit-report", ran.summary())
    assert ran.code == 0, ran.lines[-5:]
    assert (colocate["folder"] / "run" / "run.png").stat().st_size > 10_000
    assert f"{STEPS} steps" in ran.text and "reward" in ran.text


@NEEDS_VLLM
def test_budget_predicts_the_measured_run(colocate, results):
    ran = envkit("budget", "recipe.yaml", "--json", cwd=colocate["folder"], log=colocate["folder"] / "budget.log")
    assert ran.code == 0, ran.lines[-3:]
    budget = json.loads(ran.text[ran.text.index("{"):ran.text.rindex("}") + 1])
    terms = budget["breakdown_gib"]
    # torch's allocator sees everything but the CUDA context, which the budget adds to both peaks
    predicted = round(max(terms["generation_peak"], terms["training_step_peak"]) - terms["cuda_context"], 3)
    measured = colocate["gpu_peak_gib"]
    share = colocate["vllm"].get("vllm_gpu_memory_utilization")
    results.add("envkit-budget", {"exit": ran.code, "predicted_peak_gib": predicted, "run_torch_peak_gib": measured,
                                  "recommended": budget["recommended"], "run_share": share})
    assert budget["fits"]
    assert budget["recommended"]["vllm_gpu_memory_utilization"] == pytest.approx(share, abs=0.011)
    # torch's peak in the run (vLLM's share is allocated through torch in colocate mode) within the budget's band
    assert 0.6 * predicted <= measured <= 1.15 * predicted, (predicted, measured)


def test_the_staged_lock_passes_the_doctor(results):
    """Issue #23 item 4 on the machine itself: envkit's own lock, installed, has no FAIL and no package WARN but
    EK304 (the device bundle leaves vLLM's optional kernels out: dev/device_bundle.py OPTIONAL_HEAVY)."""
    ran = envkit("doctor", "--json", cwd=WORK, log=WORK / "doctor.log", timeout=60)
    report = json.loads(ran.text[ran.text.index("{"):ran.text.rindex("}") + 1])
    keys = ("id", "section", "severity", "title")
    said = [{k: f[k] for k in keys} for f in report["findings"] if f["severity"] != "ok"]
    results.add("envkit-doctor", {"exit": ran.code, "not_ok": said})
    assert not [f for f in said if f["severity"] == "fail"], said
    assert not [f for f in said if f["section"] == "packages" and f["id"] != "EK304"], said


@NEEDS_VLLM
def test_colocate_with_sleep_learns(model, results):
    arm = train_arm("envkit-sleep", model, results, "enabled: true\n  mode: colocate\n  sleep: true")
    assert_learned(arm)
    assert arm["vllm"].get("vllm_enable_sleep_mode") is True
    assert arm["sampler_gap_max"] is not None and arm["sampler_gap_max"] < 0.1


def test_vllm_off_learns_with_model_generate(model, results):
    arm = train_arm("envkit-vllm-off", model, results, "enabled: false")
    assert arm["exit"] == 0, arm["envkit_lines"]
    assert arm["vllm"].get("use_vllm") is False
    assert arm["gain"] >= LEARNS, arm["rewards"]


@NEEDS_VLLM
@pytest.mark.skipif(len(GPUS) < 2, reason="server mode and colocate over two ranks need 2 GPUs; this machine has "
                    f"{len(GPUS)}")
def test_two_gpu_arms(model, results):
    server = train_arm("envkit-server", model, results, "enabled: true\n  mode: server",
                       extra="resources:\n  generation_gpus: [0]\n  training_gpus: [1]\n")
    assert_learned(server)
    ranks = train_arm("envkit-colocate-2gpu", model, results, "enabled: true\n  mode: colocate\n  sleep: false",
                      extra="resources:\n  training_gpus: 2\n")
    assert_learned(ranks)


@NEEDS_VLLM
@pytest.mark.skipif(installed("unsloth") is None, reason="backend unsloth needs its own bundle (dev/"
                    "device_bundle.py --recipe with backend: unsloth); not staged on this machine")
def test_backend_unsloth_learns(model, results):
    arm = train_arm("envkit-unsloth", model, results, "enabled: true\n  mode: colocate\n  sleep: false",
                    extra="backend: unsloth\n")
    assert_learned(arm)
