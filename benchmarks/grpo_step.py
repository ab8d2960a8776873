"""GRPO step time and reward: `envkit train` on a generated recipe vs plain TRL, on the same 205M Llama.

Arms: envkit-colocate, envkit-sleep, envkit-generate (`envkit train` with vllm colocate, colocate + sleep,
enabled: false) and trl-colocate, trl-sleep, trl-generate (GRPOTrainer with TRL's defaults but for the
shared batch shape: 4 prompts x 8 generations = 32 completions x 256 tokens a step, LoRA r=16 on every
linear, the toy digit reward, lr 1e-3).  Two-GPU arms (issue #7): envkit-server (a vLLM server on GPU 0, the
trainer on GPU 1) and envkit-colocate-2gpu (two DDP ranks, a vLLM in each: twice the completions a step).
Issue #11: envkit-server-nopatch (server mode + LoRA without patch EKP001: the stale sampler) and
envkit-server-nopatch-stop (the same with guard: stop).  A trl arm sees one GPU (TRL refuses a process that
sees several).  Reported per arm: median step time and tokens/s skipping the first 2 steps, mean reward over
the first and last 5 steps, the sampler's gap to the trainer (the stale-weight guard's metric) and the step at
which the guard fires on the arm's metrics.  The trl vLLM arms also measure memory
(budget_measure.compare), so the 205M rows of the budget table come from them.

    python benchmarks/grpo_step.py --arm trl-colocate --arm envkit-colocate --out $OUT     # on the GPU
    # 2 GPUs, issue #11, two calls into one results file (a cold server starts in 60-150 s):
    python benchmarks/grpo_step.py --no-probe --steps 16 --timeout 280 --arm envkit-server --arm envkit-server-nopatch --out /tmp/r
    python benchmarks/grpo_step.py --no-probe --steps 16 --append --arm envkit-colocate --arm envkit-colocate-2gpu \
        --arm trl-colocate --arm envkit-server-nopatch-stop --out /tmp/r
    # issue #18, with the Unsloth set staged: 4-bit on both backends, with each run's peak memory (gpu_peak_gib)
    python benchmarks/grpo_step.py --no-probe --steps 16 --arm envkit-colocate --arm envkit-colocate-4bit \
        --arm envkit-unsloth-4bit --out /tmp/u
    python benchmarks/grpo_step.py --dry-run --out /tmp/gs                                 # CPU plumbing
    # issue #16, the 3B shape: each speed lever over plain TRL, then envkit (cold and warm caches), one results file
    python benchmarks/grpo_step.py --shape 3b --no-probe --steps 18 --arm trl-colocate --arm trl-colocate-no-gc \
        --arm trl-colocate-no-detok --arm trl-colocate-mb-whole --out /tmp/r
    python benchmarks/grpo_step.py --shape 3b --no-probe --steps 18 --append --arm trl-colocate-levers \
        --arm envkit-colocate-coldcache --arm envkit-colocate-warmcache --arm envkit-colocate-mb-auto --out /tmp/r
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from budget_measure import WORK, build, compare, run_worker
from grpo_bench import LINEARS, REPO, DevicePeak, make_prompts, run_arm

from envkit.budget.model import GIB
from envkit.train.guard import GuardLimits, check_rows

GUARD_METRIC = GuardLimits.shipped().metric

SHAPE = dict(shape="llama-205m", micro_batch=8, grad_accum=4, num_generations=8, prompt_length=64,
             completion_length=256, lora_r=16, lr=1e-3, reward="digit")
# Issue #16: the Llama-3.2-3B dimensions (full vocabulary), LoRA r64, the same 32 completions x 256 tokens a step;
# a reward on token ids (grpo_bench.low_id_reward): the byte tokenizer decodes too few of its ids for text.
SHAPE_3B = dict(shape="llama-3.2-3b", micro_batch=8, grad_accum=4, num_generations=8, prompt_length=128,
                completion_length=256, lora_r=64, lr=5e-4, reward="low_id")
SHAPES = {"205m": SHAPE, "3b": SHAPE_3B}
DRY = dict(shape="test-tiny", micro_batch=4, grad_accum=1, num_generations=4, prompt_length=24, completion_length=16,
           lora_r=4, lr=1e-3, reward="digit")
ARMS = {"envkit-colocate": "colocate", "envkit-sleep": "sleep", "envkit-generate": "off",
        "trl-colocate": "colocate", "trl-sleep": "sleep", "trl-generate": "off",
        "envkit-server": "server", "envkit-server-nopatch": "server", "envkit-server-nopatch-stop": "server",
        "envkit-colocate-2gpu": "colocate", "envkit-unsloth": "colocate", "envkit-unsloth-4bit": "colocate",
        "envkit-unsloth-standby": "sleep",
        "trl-colocate-no-gc": "colocate", "trl-colocate-no-detok": "colocate", "trl-colocate-mb-whole": "colocate",
        "trl-colocate-levers": "colocate", "envkit-colocate-coldcache": "colocate", "envkit-colocate-warmcache": "colocate",
        "envkit-colocate-mb-auto": "colocate", "envkit-colocate-4bit": "colocate",
        "envkit-colocate-truncated": "colocate", "envkit-unsloth-truncated": "colocate"}
# Issue #16: one speed lever each over plain TRL colocate (GRPOConfig fields; "mb-whole": the step's completions in one
# micro-batch instead of per_device_train_batch_size x gradient_accumulation_steps, same 32 a step), and all of them.
NO_GC, NO_DETOK = {"gradient_checkpointing": False}, {"generation_kwargs": {"detokenize": False}}
LEVERS = {"trl-colocate-no-gc": (NO_GC, False), "trl-colocate-no-detok": (NO_DETOK, False),
          "trl-colocate-mb-whole": ({}, True), "trl-colocate-levers": (NO_GC | NO_DETOK, True)}
# envkit with grpo.micro_batch: auto (the budget's micro-batch for the same step) besides its default levers.
# Issue #30: completions that never end (vLLM's ignore_eos) with truncated ones masked out of the loss, on both
# backends, same seed: every step trains on nothing; the learning-signal guard names it at step 3 (warn).
NEVER_END = "\n  mask_truncated_completions: true\n  generation_kwargs: {ignore_eos: true}"
GRPO_LINES = {"envkit-colocate-mb-auto": "\n  micro_batch: auto", "envkit-colocate-truncated": NEVER_END,
              "envkit-unsloth-truncated": NEVER_END}
# Start-up (issue #16): envkit's first start with empty vLLM / inductor / Triton caches, then the second start on them.
CACHE_ARMS = {"envkit-colocate-coldcache": True, "envkit-colocate-warmcache": False}
SERVER_LAYOUT = "resources:\n  generation_gpus: [0]\n  training_gpus: [1]\n"
# Arms on two GPUs (issue #7): the same shape per training rank, laid out by the recipe's resources.
LAYOUTS = {"envkit-server": SERVER_LAYOUT, "envkit-server-nopatch": SERVER_LAYOUT, "envkit-server-nopatch-stop": SERVER_LAYOUT,
           "envkit-colocate-2gpu": "resources:\n  training_gpus: 2\n"}
# Issue #11: server mode + LoRA without envkit's weight-sync patch (the stale sampler), with the guard warning
# (the run goes on: reward flat) or stopping it.
FLAGS = {"envkit-server-nopatch": ["--no-patch", "EKP001"], "envkit-server-nopatch-stop": ["--no-patch", "EKP001"]}
GUARD = {"envkit-server-nopatch-stop": "stop"}
# Issue #18: backend: unsloth (fast_inference: Unsloth's own colocated vLLM; standby = its sleep mode), bf16 and 4-bit.
UNSLOTH = {"envkit-unsloth": "bf16", "envkit-unsloth-4bit": "4bit", "envkit-unsloth-standby": "bf16",
           "envkit-unsloth-truncated": "bf16"}
# 4-bit (bitsandbytes NF4) training weights: Unsloth's 4-bit arm and, next to it, the TRL backend's.
FOUR_BIT = {"envkit-unsloth-4bit", "envkit-colocate-4bit"}
SKIP = 2  # warm-up steps left out of the median


def recipe_text(shape: dict, model: Path, data: Path, mode: str, steps: int, utilization: float | None = None,
                layout: str = "", guard: str = "warn", unsloth: str | None = None, grpo_lines: str = "",
                four_bit: bool = False) -> str:
    """An envkit recipe for this arm: the shared shape, vLLM settings left to envkit (auto) except the mode
    and, when given, the utilization; ``layout``: a resources section (GPUs of the server and the ranks)."""
    vllm = {"colocate": "enabled: true\n  mode: colocate\n  sleep: false",
            "sleep": "enabled: true\n  mode: colocate\n  sleep: true",
            "server": "enabled: true\n  mode: server",
            "off": "enabled: false"}[mode]
    if utilization is not None and mode != "off":
        vllm += f"\n  gpu_memory_utilization: {utilization}"
    backend = "backend: unsloth\n" if unsloth else ""
    quantized = "\n  load_in_4bit: true" if four_bit else ""
    return f"""version: 1
{backend}model:
  name: {model}
  dtype: bf16{quantized}
lora:
  r: {shape['lora_r']}
  alpha: {2 * shape['lora_r']}
  target_modules: [{', '.join(LINEARS)}]
dataset:
  path: {data}
  prompt_field: question
  answer_field: answer
  use_chat_template: false
rewards:
  - {{name: "grpo_bench:{shape['reward']}_reward"}}
grpo:
  num_generations: {shape['num_generations']}
  per_device_train_batch_size: {shape['micro_batch']}
  gradient_accumulation_steps: {shape['grad_accum']}
  max_prompt_length: {shape['prompt_length']}
  max_completion_length: {shape['completion_length']}
  learning_rate: {shape['lr']}
  max_steps: {steps}
  beta: 0.0{grpo_lines}
vllm:
  {vllm}
output:
  save_steps: 100000
  keep: 1
seed: 0
guard: {guard}
{layout}"""


def run_envkit(arm: str, shape: dict, steps: int, timeout: int, utilization: float | None) -> dict:
    model = build(shape["shape"])
    folder = WORK / arm
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "prompts.jsonl"
    data.write_text("".join(json.dumps({"question": p, "answer": "0"}) + "\n" for p in make_prompts(512, shape["prompt_length"])))
    recipe = folder / "recipe.yaml"
    recipe.write_text(recipe_text(shape, model, data, ARMS[arm], steps, utilization, LAYOUTS.get(arm, ""), GUARD.get(arm, "warn"),
                                  UNSLOTH.get(arm), GRPO_LINES.get(arm, ""), arm in FOUR_BIT))
    output = folder / "run"
    shutil.rmtree(output, ignore_errors=True)
    log = WORK / "logs" / f"{arm}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with DevicePeak() as device:
        code = run_arm([sys.executable, "-m", "envkit", "train", str(recipe), "--output", str(output), "--force", *FLAGS.get(arm, [])],
                       log, timeout, REPO, env=cache_env(arm))
    text = log.read_text(errors="replace").splitlines()
    metrics = output / "metrics.jsonl"
    manifest = output / "manifest.json"
    result = {"ok": code == 0, "exit": code, "wall_s": round(time.perf_counter() - started, 1),
              "device_peak_gib": device.peak_gib, "device_idle_gib": device.idle_gib,
              "metrics": [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else [],
              "envkit_lines": [line[:300] for line in text if line.removeprefix("[train] ").startswith("envkit train:")][:20]}
    if manifest.exists():
        m = json.loads(manifest.read_text())
        result["patches"] = m["plan"].get("patches")
        result["guard_live"] = m.get("guard")
        result["effective_config"] = m.get("effective_config")
        result["vllm_settings"] = {k: v for k, v in m["grpo_config"].items() if k.startswith(("use_vllm", "vllm_"))}
        result["plan"] = m.get("plan")
    if code != 0:
        result["log_tail"] = text[-25:]
    return result


def cache_env(arm: str) -> dict[str, str] | None:
    """The cache arms' vLLM, inductor and Triton cache folders (emptied first for the cold one)."""
    if arm not in CACHE_ARMS:
        return None
    root = WORK / "startup-cache"
    if CACHE_ARMS[arm]:
        shutil.rmtree(root, ignore_errors=True)
    return {"VLLM_CACHE_ROOT": str(root / "vllm"), "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"),
            "TRITON_CACHE_DIR": str(root / "triton")}


def run_trl(arm: str, shape: dict, steps: int, timeout: int, probe: bool, utilization: float | None,
            as_envkit: bool) -> dict:
    """Plain TRL; ``as_envkit``: with the vLLM context envkit sets (prompt + completion), not the model's;
    a lever arm with its GRPOConfig fields or batch split."""
    config = shape | {"vllm": ARMS[arm], "steps": steps, "utilization": utilization,
                      "max_model_length": shape["prompt_length"] + shape["completion_length"] if as_envkit else None}
    grpo, whole = LEVERS.get(arm, ({}, False))
    if whole:
        config |= {"micro_batch": shape["micro_batch"] * shape["grad_accum"], "grad_accum": 1}
    return run_worker(arm, config | {"grpo": grpo}, timeout, probe=probe)


def summary(result: dict) -> dict:
    rows = result.get("metrics") or []
    times = [r["step_time"] for r in rows[SKIP:] if "step_time" in r]
    rates = [r["tokens_per_s"] for r in rows[SKIP:] if "tokens_per_s" in r]
    rewards = [r["reward"] for r in rows if "reward" in r]
    gaps = [r[GUARD_METRIC] for r in rows if GUARD_METRIC in r]
    verdict = check_rows(rows)
    learning = (result.get("guard_live") or {}).get("learning_signal") or {}
    phases = sorted({name for r in rows[SKIP:] for name in r.get("phase_s") or {}})
    return {"steps": len(rows), "guard_step": verdict.step if verdict else None,
            "first_step_s": rows[0].get("elapsed_s") if rows else None,
            "gpu_peak_gib": max((r["gpu_peak_gib"] for r in rows if "gpu_peak_gib" in r), default=None),
            "median_phase_s": {p: round(statistics.median(r.get("phase_s", {}).get(p, 0.0) for r in rows[SKIP:]), 3) for p in phases},
            "gap_first3": [round(g, 4) for g in gaps[:3]], "gap_max": round(max(gaps), 4) if gaps else None, "median_step_s": round(statistics.median(times), 3) if times else None,
            "median_tokens_per_s": round(statistics.median(rates)) if rates else None,
            "reward_first5": round(statistics.mean(rewards[:5]), 4) if rewards else None,
            "reward_last5": round(statistics.mean(rewards[-5:]), 4) if rewards else None,
            # issue #30: steps with no gradient, and what the learning-signal guard said (manifest guard.learning_signal)
            "grad_norm_zero_steps": sum(1 for r in rows if r.get("grad_norm") == 0),
            "dead_steps": learning.get("causes"), "learning_guard_step": (learning.get("verdict") or {}).get("step")}


def trl_settings(result: dict) -> dict:
    """The vLLM settings a trl arm ran with: the share vLLM reported (probed runs), else what it was given."""
    reported = {k: v for k, v in (result.get("vllm") or {}).items() if k == "gpu_memory_utilization"}
    config = result.get("config") or {}
    given = {f"vllm_{k}": config[k] for k in ("utilization", "max_model_length") if config.get(k)}
    return reported | given if config.get("vllm", "off") != "off" else {}


def markdown(results: dict) -> str:
    lines = ["| arm | steps | median step (s) | tokens/s | reward first 5 | reward last 5 | sampler gap, steps 1-3 / max | "
             "guard fires at step | patches | vLLM settings | step 1 at (s) | torch peak (GiB) | GPU peak, NVML (GiB) | wall (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | --- | ---: | ---: | ---: | ---: |"]
    for arm, r in results.items():
        s = r["summary"]
        settings = r.get("vllm_settings") or trl_settings(r)
        status = "" if r.get("ok") else f" (failed: {str(r.get('error') or r.get('exit'))[:80]})"
        gap = f"{s.get('gap_first3')} / {s.get('gap_max')}" if s.get("gap_max") is not None else ""
        lines.append(f"| {arm}{status} | {s['steps']} | {s['median_step_s']} | {s.get('median_tokens_per_s')} | {s['reward_first5']} | {s['reward_last5']} "
                     f"| {gap} | {s.get('guard_step') or ''} | {', '.join(r.get('patches') or [])} "
                     f"| {json.dumps(settings) if settings else ''} | {s.get('first_step_s') or ''} | {s.get('gpu_peak_gib') or ''} "
                     f"| {r.get('device_peak_gib') or ''} | {r.get('wall_s')} |")
    phased = [(arm, r["summary"]["median_phase_s"]) for arm, r in results.items() if r["summary"].get("median_phase_s")]
    if phased:
        names = sorted({name for _, p in phased for name in p})
        lines += ["", "Median seconds per step in TRL's timed spans (envkit.train.phases):", "",
                  "| arm | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
        lines += [f"| {arm} | " + " | ".join(str(p.get(n, "")) for n in names) + " |" for arm, p in phased]
    budget_rows = [(arm, c) for arm, r in results.items() for c in r.get("comparison", [])]
    if budget_rows:
        lines += ["", "| configuration | quantity | predicted GiB | measured GiB | error |", "| --- | --- | ---: | ---: | ---: |"]
        lines += [f"| {arm} | {c['quantity']} | {c['predicted'] / GIB:.2f} | {c['measured'] / GIB:.2f} | "
                  f"{'' if c['error_pct'] is None else format(c['error_pct'], '+.1f') + '%'} |" for arm, c in budget_rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", action="append", choices=sorted(ARMS), help="repeatable, in order")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="205m", help="205m (issues #7-#11) or 3b (issue #16)")
    parser.add_argument("--timeout", type=int, default=280, help="seconds per arm")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dry-run", action="store_true", help="CPU: the tiny shape, both generate arms, 3 steps")
    parser.add_argument("--recompute", type=Path, help="re-predict a saved grpo_step.json's memory with the current model")
    parser.add_argument("--utilization", type=float, help="vLLM's share in every arm (default: envkit auto, TRL's 0.3)")
    parser.add_argument("--trl-as-envkit", action="store_true",
                        help="trl arms get envkit's vllm_max_model_length (prompt + completion) instead of the model's")
    parser.add_argument("--no-probe", dest="probe", action="store_false",
                        help="no memory probes in the trl arms (timing only; the probe thread costs CPU time)")
    parser.add_argument("--tag", default="", help="suffix of this invocation's arm names in the results (repeats)")
    parser.add_argument("--append", action="store_true", help="add to OUT/grpo_step.json instead of starting a new one "
                        "(arms of several calls in one results file)")
    args = parser.parse_args()
    if args.recompute:
        results = json.loads(args.recompute.read_text())
        for result in results.values():
            if "comparison" in result:
                result["comparison"] = compare(result)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "grpo_step.json").write_text(json.dumps(results, indent=1))
        (args.out / "grpo_step.md").write_text(markdown(results))
        print(markdown(results))
        return
    shape, arms, steps = (DRY, ["envkit-generate", "trl-generate"], 3) if args.dry_run else (SHAPES[args.shape], args.arm or [], args.steps)
    args.out.mkdir(parents=True, exist_ok=True)
    previous = args.out / "grpo_step.json"
    results = json.loads(previous.read_text()) if args.append and previous.exists() else {}
    for arm in arms:
        print(f"grpo_step: {arm} ...", flush=True)
        if arm.startswith("envkit"):
            result = run_envkit(arm, shape, steps, args.timeout, args.utilization)
        else:
            probe = args.probe and ARMS[arm] != "off"
            result = run_trl(arm, shape, steps, args.timeout, probe, args.utilization, args.trl_as_envkit)
            if probe:
                result["comparison"] = compare(result)
        result["summary"] = summary(result)
        results[arm + args.tag] = result
        (args.out / "grpo_step.json").write_text(json.dumps(results, indent=1))
        (args.out / "grpo_step.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
