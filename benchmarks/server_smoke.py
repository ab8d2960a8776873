"""vLLM server mode on one GPU: the server `envkit train` starts for the installed TRL, driven by TRL's own client.

Builds the launch plan of a 1 + 1 GPU server-mode recipe (envkit.launch.layout), keeps its server process but
puts it on GPU 0, and runs it with envkit.launch.procs.run_plan followed by a client process that does what
GRPOTrainer's server mode does before its first step, with trl's VLLMClient: health, the development
endpoints (VLLM_SERVER_DEV_MODE), a configured weight-transfer engine, the world size, then a generation batch
(4 prompts x 8 completions x 256 tokens, as grpo_step.py).  Afterwards: no process of the run is left and the
server's port is free.  The weight sync itself needs the trainer on another GPU (NCCL takes one rank per
device), so it is not exercised here; that is the 2-GPU test of issue #7.

    python benchmarks/server_smoke.py --out $OUT        # GPU machine with vllm + trl
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from budget_measure import WORK, build
from grpo_bench import make_prompts

from envkit.launch.machine import port_in_use
from envkit.launch.layout import ProcessSpec, launch_layout
from envkit.launch.procs import run_processes
from envkit.recipe.load import load_recipe
from envkit.train.decisions import vllm_utilization

PORT = 8000
RECIPE = """version: 1
model: {{name: {model}, dtype: bf16}}
lora: {{r: 16, alpha: 32}}
dataset: {{path: {data}, prompt_field: question, answer_field: answer, use_chat_template: false}}
rewards: [{{name: "grpo_bench:digit_reward"}}]
grpo: {{num_generations: 8, per_device_train_batch_size: 8, gradient_accumulation_steps: 4,
       max_prompt_length: 64, max_completion_length: 256, max_steps: 10}}
vllm: {{enabled: true, mode: server, gpu_memory_utilization: 0.3, server: {{port: {port}, timeout_s: 300}}}}
resources: {{generation_gpus: [0], training_gpus: [1]}}
"""


def client(url: str, result: Path) -> None:
    """GRPOTrainer's server-mode calls before training (trl/generation/vllm_client.py), then timed generations."""
    from trl.generation.vllm_client import VLLMClient

    started = time.time()
    c = VLLMClient(base_url=url, connection_timeout=30)
    info = c.get_server_info()
    out = {"client_started": started, "model": c.model, "world_size": c.get_world_size(),
           "weight_transfer_config": info.get("weight_transfer_config"),
           "max_model_len": info.get("model_config", {}).get("max_model_len")}
    prompts, times = make_prompts(4, 64, seed=1), []
    for _ in range(4):
        t = time.perf_counter()
        batch = c.generate(prompts, n=8, max_tokens=256, temperature=1.0)
        times.append(time.perf_counter() - t)
    out |= {"completions": len(batch["completion_ids"]), "tokens": sum(map(len, batch["completion_ids"])),
            "logprobs_per_token": bool(batch["logprobs"]) and len(batch["logprobs"][0]) == len(batch["completion_ids"][0]),
            "generate_s": [round(x, 3) for x in times], "generate_median_s": round(statistics.median(times[1:]), 3),
            "client_ended": time.time()}
    result.write_text(json.dumps(out))


def leftovers(model: str) -> list[str]:
    """Processes of the run still alive: naming the model folder or vLLM (its engine renames itself
    VLLM::EngineCore), but not this script."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = (Path("/proc") / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            comm = (Path("/proc") / pid / "comm").read_text().strip()
        except OSError:
            continue
        if (model in cmd or "vllm" in (cmd + comm).lower()) and "server_smoke.py" not in cmd:
            found.append(f"{pid}: {comm}: {cmd[:200]}")
    return found


def gpu_processes() -> list[int]:
    """PIDs holding a CUDA context on any GPU (NVML)."""
    import pynvml

    pynvml.nvmlInit()
    try:
        return [p.pid for i in range(pynvml.nvmlDeviceGetCount())
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(i))]
    finally:
        pynvml.nvmlShutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--client-url", help=argparse.SUPPRESS)  # the plan's last process
    parser.add_argument("--client-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_url:
        return client(args.client_url, args.client_result)
    import trl

    args.out.mkdir(parents=True, exist_ok=True)
    model = build("llama-205m")
    folder = WORK / "server-smoke"
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "prompts.jsonl"
    data.write_text("".join(json.dumps({"question": p, "answer": "0"}) + "\n" for p in make_prompts(64, 64)))
    recipe_path = folder / "recipe.yaml"
    recipe_path.write_text(RECIPE.format(model=model, data=data, port=PORT))
    recipe = load_recipe(recipe_path)
    share = vllm_utilization(recipe, None)  # server mode: TRL's vllm-serve default, as envkit train resolves it
    plan = launch_layout(recipe, str(recipe_path), 2, trl.__version__, vllm_utilization=share)
    server = replace(plan.processes[0], env={**plan.processes[0].env, "CUDA_VISIBLE_DEVICES": "0"}, gpus=["0"])
    result = folder / "client.json"
    result.unlink(missing_ok=True)
    client_argv = [sys.executable, __file__, "--out", str(args.out), "--client-url", f"http://127.0.0.1:{PORT}",
                   "--client-result", str(result)]
    plan = replace(plan, processes=[server, ProcessSpec("client", client_argv, {}, [])])
    log = (args.out / "server_smoke.log").open("w")

    def echo(line: str) -> None:
        log.write(line + "\n")
        if not line.startswith("[vllm]") or "ERROR" in line or "Error" in line:
            print(line, flush=True)

    port_busy_before = port_in_use(PORT)
    started = time.time()
    code = run_processes(plan, echo=echo)
    ended = time.time()
    log.close()
    report = {"trl": trl.__version__, "server": plan.server, "server_argv": server.argv, "server_env": server.env,
              "exit": code, "port_busy_before": port_busy_before, "port_busy_after": port_in_use(PORT),
              "leftover_processes": leftovers(str(model)), "gpu_processes_after": gpu_processes(), "wall_s": round(ended - started, 1)}
    if result.exists():
        r = json.loads(result.read_text())
        report |= r | {"server_up_s": round(r["client_started"] - started, 1), "teardown_s": round(ended - r["client_ended"], 1)}
    (args.out / "server_smoke.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    ok = code == 0 and not report["port_busy_after"] and not report["leftover_processes"] and not report["gpu_processes_after"] and report.get("weight_transfer_config")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
