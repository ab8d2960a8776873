"""Measure GPU memory of colocated GRPO (TRL GRPOTrainer + vLLM colocate) against envkit's budget model.

For each configuration (random-init Llama shapes, with and without vLLM sleep mode) a few GRPO steps run
in a fresh process (benchmarks/grpo_bench.py trl); measured, and set beside envkit.budget's prediction:

* vLLM's reservation: weights + KV cache (vLLM's cache config: num_gpu_blocks x block_size tokens x KV
  bytes per token) vs the model's weights + kv_cache; and NVML's growth over vLLM's start vs the share;
* the training process: torch's peak allocated during the training phase, less what vLLM holds in
  torch's allocator at that time, vs the model's training peak (weights, LoRA + AdamW, activations, LM head);
* the whole GPU: NVML's peak used (less the driver's use before this process) vs the model's peak.

    python benchmarks/budget_measure.py --config 3b-awake --config 3b-sleep --out $OUT      # on the GPU
    python benchmarks/budget_measure.py --dry-run --out /tmp/bm                             # CPU: the plumbing
    python benchmarks/budget_measure.py --recompute $OUT/budget_measure.json --out /tmp/bm  # new constants, old data

Writes OUT/budget_measure.json (raw measurements + comparison) and OUT/budget_measure.md (the table).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grpo_bench import LINEARS, REPO, SHAPES, DevicePeak, bench_env, one_gpu, run_arm

from envkit.budget.model import GIB, BudgetInputs, budget
from envkit.budget.shapes import shape_from_config

WORK = Path("/tmp/envkit-bench")
COMMON = dict(micro_batch=8, grad_accum=4, num_generations=8, completion_length=256, steps=4)
CONFIGS = {
    "205m-awake": dict(shape="llama-205m", vllm="colocate", utilization=0.3, lora_r=16, prompt_length=64),
    "205m-sleep": dict(shape="llama-205m", vllm="sleep", utilization=0.3, lora_r=16, prompt_length=64),
    "1b-awake": dict(shape="llama-3.2-1b", vllm="colocate", utilization=0.25, lora_r=32, prompt_length=128),
    "1b-sleep": dict(shape="llama-3.2-1b", vllm="sleep", utilization=0.25, lora_r=32, prompt_length=128),
    "3b-awake": dict(shape="llama-3.2-3b", vllm="colocate", utilization=0.3, lora_r=64, prompt_length=128),
    "3b-sleep": dict(shape="llama-3.2-3b", vllm="sleep", utilization=0.3, lora_r=64, prompt_length=128),
    # CPU dry run: the whole path except vLLM and the GPU probes.
    "dry-run": dict(shape="test-tiny", vllm="off", utilization=None, lora_r=4, prompt_length=24, micro_batch=4,
                    grad_accum=1, num_generations=4, completion_length=16, steps=2),
}
# vLLM's own account of its memory, kept with the measurements.
LOG_LINES = re.compile(r"(Model loading took|Available KV cache memory|GPU KV cache size|Graph capturing finished|"
                       r"Sleep mode freed|memory profiling|Maximum concurrency|CUDA graph|non-torch|torch peak)", re.I)


def settings(name: str) -> dict:
    return COMMON | CONFIGS[name]


def model_dir(shape: str) -> Path:
    return WORK / "models" / shape


def build(shape: str, timeout: int = 300) -> Path:
    target = model_dir(shape)
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "grpo_bench.py"), "build", shape, str(target)],
                   check=True, timeout=timeout, env=bench_env())
    return target


def worker_command(config: dict, model: Path, result: Path, output: Path, probe: bool = True) -> list[str]:
    command = [sys.executable, str(REPO / "benchmarks" / "grpo_bench.py"), "trl", "--model", str(model),
               "--result", str(result), "--output", str(output), "--vllm", config["vllm"],
               "--steps", str(config["steps"]), "--micro-batch", str(config["micro_batch"]),
               "--grad-accum", str(config["grad_accum"]), "--num-generations", str(config["num_generations"]),
               "--prompt-length", str(config["prompt_length"]), "--completion-length", str(config["completion_length"]),
               "--lora-r", str(config["lora_r"])]
    if config.get("utilization") is not None:
        command += ["--utilization", str(config["utilization"])]
    if config.get("max_model_length"):
        command += ["--max-model-length", str(config["max_model_length"])]
    if config.get("lr") is not None:
        command += ["--lr", str(config["lr"])]
    if config.get("reward"):
        command += ["--reward", config["reward"]]
    if config.get("grpo"):
        command += ["--grpo", json.dumps(config["grpo"])]
    if config.get("seed") is not None:
        command += ["--seed", str(config["seed"])]
    return command + ([] if probe else ["--no-probe"])


def run_worker(name: str, config: dict, timeout: int, probe: bool = True) -> dict:
    """One configuration in a fresh process; the result JSON plus vLLM's memory log lines."""
    model = build(config["shape"])
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    result_path, log_path = WORK / f"{name}.result.json", logs / f"{name}.log"
    result_path.unlink(missing_ok=True)
    started = time.perf_counter()
    with DevicePeak() as device:
        run_arm(worker_command(config, model, result_path, WORK / "runs" / name, probe), log_path, timeout, env=one_gpu())
    text = log_path.read_text(errors="replace")
    result = json.loads(result_path.read_text()) if result_path.exists() else {
        "ok": False, "error": f"no result after {time.perf_counter() - started:.0f} s (timeout {timeout} s)"}
    result["log"] = [line.strip()[-300:] for line in text.splitlines() if LOG_LINES.search(line)][:40]
    if not result["ok"]:
        result["log_tail"] = text.splitlines()[-25:]
    return result | {"device_peak_gib": device.peak_gib, "device_idle_gib": device.idle_gib, "name": name, "config": config, "model_dir": str(model), "elapsed_s": round(time.perf_counter() - started, 1),
                     "model_config": json.loads((model / "config.json").read_text())}


def _mark(result: dict, label: str) -> dict | None:
    return next((m for m in result.get("marks", []) if m["label"] == label), None)


def inputs_for(result: dict) -> BudgetInputs:
    """The BudgetInputs of a measured run: its model's config.json, its batch shape, the GPU's CUDA total."""
    c = result["config"]
    config = result.get("model_config") or SHAPES[c["shape"]] | {"tie_word_embeddings": True}  # older results
    shape = shape_from_config(config, c["shape"])
    return BudgetInputs(shape, result.get("cuda_total") or result.get("nvml_total") or 80 * GIB, "bf16",
                        lora_r=c["lora_r"], lora_targets=tuple(LINEARS), num_generations=c["num_generations"],
                        prompts_per_step=c["micro_batch"] * c["grad_accum"] // c["num_generations"],
                        max_prompt_length=c["prompt_length"], max_completion_length=c["completion_length"],
                        micro_batch=c["micro_batch"], use_vllm=c["vllm"] != "off")


def compare(result: dict) -> list[dict]:
    """Prediction vs measurement, one row per quantity (bytes); empty where the run did not measure it."""
    if not result.get("ok") or not result.get("peaks"):
        return []
    c = result["config"]
    plan = budget(inputs_for(result), c.get("utilization") or 0.3, c["vllm"] == "sleep")
    rows = []

    def row(quantity, predicted, measured, note=""):
        if measured is not None:
            rows.append({"quantity": quantity, "predicted": predicted, "measured": measured,
                         "error_pct": round(100 * (predicted - measured) / measured, 1) if measured else None,
                         "note": note})

    before, after = _mark(result, "before_vllm"), _mark(result, "after_vllm")
    vllm_torch = after["torch_allocated"] - before["torch_allocated"] if before and after else 0
    sleep_before, sleep_after = _mark(result, "before_sleep"), _mark(result, "after_sleep")
    if sleep_before and sleep_after and c["vllm"] == "sleep":
        vllm_torch -= sleep_before["torch_allocated"] - sleep_after["torch_allocated"]
    kv = result.get("vllm", {}).get("kv_tokens")
    if plan.vllm and kv:
        shape = plan.inputs.shape
        row("vLLM weights + KV cache", plan.vllm.weights + plan.vllm.kv_cache,
            plan.vllm.weights + kv * shape.kv_bytes_per_token(plan.inputs.dtype_bytes),
            f"KV {kv} tokens (cache config)")
    if plan.vllm and before and after and before["nvml_used"] is not None:
        row("vLLM start-up, NVML growth", plan.vllm.share, after["nvml_used"] - before["nvml_used"],
            "share = utilization x total")
    train = result["peaks"].get("train", {})
    if train.get("torch"):
        row("training peak (torch, less vLLM)", plan.training.peak, max(train["torch"]) - vllm_torch,
            f"vLLM holds {vllm_torch / GIB:.2f} GiB of torch's allocations then")
    baseline = result.get("nvml_baseline")
    peaks = {phase: list(result["peaks"].get(phase, {}).get("nvml", [])) for phase in ("generate", "train")}
    if c["vllm"] == "sleep":  # runs before the Probe's epoch fix: a poll carried the awake peak into the next phase
        peaks["train"] = [t for t, g in zip(peaks["train"], peaks["generate"]) if t != g] + peaks["train"][len(peaks["generate"]):]
    nvml = {phase: max(values) - baseline for phase, values in peaks.items() if values and baseline is not None}
    if nvml:
        if "generate" in nvml:
            row("GPU peak while generating (NVML)", plan.generation_peak, nvml["generate"])
        if "train" in nvml:
            row("GPU peak while training (NVML)", plan.training_peak, nvml["train"], "vLLM asleep" if plan.sleep else "")
        row("GPU peak (NVML)", plan.peak, max(nvml.values()))
    return rows


def markdown(results: list[dict]) -> str:
    lines = ["| configuration | quantity | predicted GiB | measured GiB | error |", "| --- | --- | ---: | ---: | ---: |"]
    for result in results:
        if not result.get("ok"):
            lines.append(f"| {result['name']} | run failed: {result.get('error', '?')[:120]} | | | |")
            continue
        for r in result.get("comparison", []):
            error = "" if r["error_pct"] is None else f"{r['error_pct']:+.1f}%"
            lines.append(f"| {result['name']} | {r['quantity']} | {r['predicted'] / GIB:.2f} | {r['measured'] / GIB:.2f} "
                         f"| {error} |")
    return "\n".join(lines) + "\n"


def write(results: list[dict], out: Path, stem: str = "budget_measure") -> None:
    for result in results:
        result["comparison"] = compare(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    (out / f"{stem}.md").write_text(markdown(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS), help="repeatable, in order")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timeout", type=int, default=240, help="seconds per configuration")
    parser.add_argument("--dry-run", action="store_true", help="the CPU configuration only (no vLLM)")
    parser.add_argument("--recompute", type=Path, help="re-predict saved measurements with the current model")
    args = parser.parse_args()
    if args.recompute:
        results = json.loads(args.recompute.read_text())
    else:
        results = []
        for name in ["dry-run"] if args.dry_run else args.config or []:
            print(f"budget_measure: {name} ...", flush=True)
            results.append(run_worker(name, settings(name), args.timeout))
            write(results, args.out)  # after each configuration: a timeout later keeps what was measured
    write(results, args.out)
    print(markdown(results))


if __name__ == "__main__":
    main()
