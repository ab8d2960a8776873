"""Shared by budget_measure.py and grpo_step.py: random-init Llama models, a toy verifiable reward,
and one plain-TRL GRPO run with memory probes (the worker, run as a subprocess so each run has a
fresh CUDA context).

    python benchmarks/grpo_bench.py build llama-205m DIR
    python benchmarks/grpo_bench.py trl --model DIR --result R.json [--vllm colocate|sleep|off] ...

Nothing here imports torch, trl or vllm at module level: envkit recipes import ``digit_reward``
from this module (``grpo_bench:digit_reward``) while they are validated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from envkit.budget.shapes import config_fields, resolve_model
from envkit.recipe.schema import LINEAR_MODULES
from envkit.recipe.tiny_model import TinyLlamaConfig

REPO = Path(__file__).resolve().parents[1]
LINEARS = list(LINEAR_MODULES)

# LlamaConfig fields.  The 1B/3B shapes are the product's (envkit/knowledge/model_shapes.json, from the published
# Llama-3.2 config.json, vocabulary included: the byte tokenizer decodes ids past its 259 to nothing).
# "llama-205m" is 205.2M parameters on the tiny model's byte vocabulary, so every sampled token is text the toy
# reward can see; "test-tiny" is `model.build: tiny` itself, for CPU dry runs of the scripts.
SHAPES = {
    "llama-205m": dict(hidden_size=1024, num_hidden_layers=12, num_attention_heads=16, num_key_value_heads=16,
                       intermediate_size=4192, vocab_size=TinyLlamaConfig.vocab_size),
    "llama-3.2-1b": config_fields(resolve_model("Llama-3.2-1B")),
    "llama-3.2-3b": config_fields(resolve_model("Llama-3.2-3B")),
    "test-tiny": asdict(TinyLlamaConfig()),
}


def digit_reward(completions, **kwargs) -> list[float]:
    """Toy verifiable reward: the share of the completion's characters that are digits (0..1)."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isdigit() for ch in t) / len(t) if t else 0.0 for t in texts]


# 3B shape: the byte tokenizer decodes only 259 of the model's 128256 ids, so a text reward sees almost nothing.
LOW_IDS = 4096


def low_id_reward(completions, completion_ids=None, **kwargs) -> list[float]:
    """Toy reward on token ids for the full-vocabulary shapes: the share of completion ids below LOW_IDS (0..1;
    about 0.03 for a random-init 128256-id model, so a group's rewards differ from the first step)."""
    return [sum(t < LOW_IDS for t in ids) / len(ids) if ids else 0.0 for ids in completion_ids]


REWARDS = {"digit": digit_reward, "low_id": low_id_reward}


def make_prompts(count: int, length: int, seed: int = 0) -> list[str]:
    """Prompts of exactly ``length`` byte tokens (ASCII), all different."""
    rng = random.Random(seed)
    head = "Write digits: "
    alphabet = "abcdefghijklmnopqrstuvwxyz 0123456789"
    return [head + "".join(rng.choice(alphabet) for _ in range(length - len(head))) for _ in range(count)]


def build_model(shape: str, target: Path, seed: int = 0) -> Path:
    """A random-init Llama of SHAPES[shape] + the byte tokenizer, saved in bf16 (built on the GPU when there is one)."""
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return target
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from envkit.train.tiny import byte_tokenizer

    tokenizer = byte_tokenizer()
    config = LlamaConfig(**{"max_position_embeddings": 2048} | SHAPES[shape], tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target


class Probe:
    """GPU memory as torch and NVML see it: marks at named moments, and peaks per phase (generate / train).

    NVML is polled every 20 ms from a thread; torch's peak is reset at each phase change.  A sample
    read while the phase changed is dropped (it belongs to the phase before: vLLM just put to sleep).
    """

    def __init__(self, poll_s: float = 0.02):
        self.marks: list[dict] = []
        self.peaks: dict[str, dict[str, list[int]]] = {}
        self.phase = "setup"
        self._nvml_max = 0
        self._epoch = 0  # counts phase changes
        self._handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.nvml_total = pynvml.nvmlDeviceGetMemoryInfo(self._handle).total
            self.nvml_baseline = self.nvml_used()  # before this process creates a CUDA context
        except Exception:  # no NVIDIA driver: a CPU dry run
            self.nvml_total = self.nvml_baseline = None
        self._stop = threading.Event()
        if self._handle is not None:
            threading.Thread(target=self._poll, args=(poll_s,), daemon=True).start()

    def nvml_used(self) -> int | None:
        return self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used if self._handle is not None else None

    def _poll(self, poll_s: float) -> None:
        while not self._stop.is_set():
            epoch = self._epoch
            used = self.nvml_used()
            if epoch == self._epoch:
                self._nvml_max = max(self._nvml_max, used)
            time.sleep(poll_s)

    def mark(self, label: str, limit: int = 6) -> None:
        """A snapshot (at most ``limit`` per label): torch allocated/reserved and NVML used."""
        if sum(m["label"] == label for m in self.marks) >= limit:
            return
        import torch

        cuda = torch.cuda.is_available()
        self.marks.append({"label": label, "phase": self.phase,
                           "torch_allocated": torch.cuda.memory_allocated() if cuda else None,
                           "torch_reserved": torch.cuda.memory_reserved() if cuda else None,
                           "nvml_used": self.nvml_used()})

    def enter(self, phase: str) -> None:
        """Close the current phase (record its peaks) and start ``phase``."""
        import torch

        peaks = self.peaks.setdefault(self.phase, {"torch": [], "nvml": []})
        if torch.cuda.is_available():
            peaks["torch"].append(torch.cuda.max_memory_allocated())
            torch.cuda.reset_peak_memory_stats()
        if self._handle is not None:
            peaks["nvml"].append(max(self._nvml_max, self.nvml_used()))
            self._epoch += 1
            self._nvml_max = 0
        self.phase = phase

    def close(self) -> None:
        self.enter("done")
        self._stop.set()


def instrument_vllm(probe: Probe) -> dict:
    """Wrap TRL's vLLM constructor and the engine's sleep to mark memory around them; returns vLLM's cache facts."""
    import trl.generation.vllm_generation as generation

    facts: dict = {}
    real = generation.LLM

    def llm(*args, **kwargs):
        probe.mark("before_vllm")
        instance = real(*args, **kwargs)
        probe.mark("after_vllm")
        facts.update(_cache_facts(instance))
        real_sleep, real_wake = instance.sleep, instance.wake_up

        def sleep(*a, **k):
            probe.mark("before_sleep")
            result = real_sleep(*a, **k)
            probe.mark("after_sleep")
            return result

        def wake_up(*a, **k):
            result = real_wake(*a, **k)
            tags = k.get("tags") or (a[0] if a else None) or ["all"]
            probe.mark(f"after_wake_{'_'.join(tags)}")
            return result

        instance.sleep, instance.wake_up = sleep, wake_up
        return instance

    generation.LLM = llm
    return facts


def _cache_facts(llm) -> dict:
    """num_gpu_blocks x block_size from vLLM's cache config (the KV cache it allocated)."""
    try:
        config = llm.llm_engine.vllm_config
        cache = config.cache_config
        return {"num_gpu_blocks": cache.num_gpu_blocks, "block_size": cache.block_size,
                "kv_tokens": cache.num_gpu_blocks * cache.block_size, "max_model_len": config.model_config.max_model_len,
                "max_num_seqs": config.scheduler_config.max_num_seqs,
                "cache_dtype": str(cache.cache_dtype), "gpu_memory_utilization": cache.gpu_memory_utilization}
    except Exception as exc:  # the log lines still say it
        return {"error": f"{type(exc).__name__}: {exc}"}


def run_trl(args) -> dict:
    """One plain-TRL GRPO run: TRL defaults except the batch shape, LoRA and learning rate (same as envkit's recipe),
    and ``--grpo``: GRPOConfig fields one lever changes (benchmarks/grpo_step.py)."""
    started = time.perf_counter()
    probe = Probe() if args.probe else None
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from envkit.train.callbacks import MetricsCallback

    cuda = torch.cuda.is_available()
    if probe:
        torch.zeros(1, device="cuda" if cuda else "cpu")
        probe.mark("cuda_context")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    metrics = output / "metrics.jsonl"
    metrics.unlink(missing_ok=True)
    vllm_kwargs = {}
    if args.vllm != "off":
        vllm_kwargs = {"use_vllm": True, "vllm_mode": "colocate", "vllm_enable_sleep_mode": args.vllm == "sleep"}
        if args.utilization is not None:
            vllm_kwargs["vllm_gpu_memory_utilization"] = args.utilization
        if args.max_model_length:
            vllm_kwargs["vllm_max_model_length"] = args.max_model_length
    config = GRPOConfig(output_dir=str(output), per_device_train_batch_size=args.micro_batch,
                        gradient_accumulation_steps=args.grad_accum, num_generations=args.num_generations,
                        max_completion_length=args.completion_length, learning_rate=args.lr, max_steps=args.steps,
                        logging_steps=1, save_strategy="no", report_to="none", seed=args.seed,
                        bf16=cuda, use_cpu=not cuda, **vllm_kwargs | json.loads(args.grpo))
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16 if cuda else torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if probe:
        probe.mark("policy_loaded")
    vllm_facts = instrument_vllm(probe) if probe and args.vllm != "off" else {}
    prompts = make_prompts(args.prompts, args.prompt_length, args.seed)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[REWARDS[args.reward]], args=config,
                          train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
                          peft_config=LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules=LINEARS,
                                                 task_type="CAUSAL_LM"),
                          callbacks=[MetricsCallback(metrics, run_started=started)])
    if probe:
        probe.mark("trainer_ready")
        generate = trainer._generate_and_score_completions

        def phased(*a, **k):
            probe.enter("generate")
            probe.mark("generate_start")
            out = generate(*a, **k)
            probe.enter("train")
            probe.mark("train_start")
            return out

        trainer._generate_and_score_completions = phased
    setup_s = time.perf_counter() - started
    trainer.train()
    result = {"setup_s": round(setup_s, 1), "wall_s": round(time.perf_counter() - started, 1),
              "metrics": [json.loads(line) for line in metrics.read_text().splitlines()]}
    if probe:
        probe.close()
        result |= {"nvml_total": probe.nvml_total, "nvml_baseline": probe.nvml_baseline,
                   "cuda_total": torch.cuda.mem_get_info()[1] if cuda else None,
                   "marks": probe.marks, "peaks": probe.peaks, "vllm": vllm_facts}
    return result


def worker_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build")
    build.add_argument("shape", choices=sorted(SHAPES))
    build.add_argument("target", type=Path)
    trl = sub.add_parser("trl")
    trl.add_argument("--model", required=True)
    trl.add_argument("--result", required=True, type=Path)
    trl.add_argument("--output", default="/tmp/envkit-bench/trl-run")
    trl.add_argument("--vllm", choices=["colocate", "sleep", "off"], default="colocate")
    trl.add_argument("--utilization", type=float, help="vllm_gpu_memory_utilization (default: TRL's)")
    trl.add_argument("--max-model-length", type=int, help="vllm_max_model_length (default: TRL's: the model's)")
    trl.add_argument("--steps", type=int, default=4)
    trl.add_argument("--micro-batch", type=int, default=8)
    trl.add_argument("--grad-accum", type=int, default=4)
    trl.add_argument("--num-generations", type=int, default=8)
    trl.add_argument("--prompt-length", type=int, default=64)
    trl.add_argument("--completion-length", type=int, default=256)
    trl.add_argument("--prompts", type=int, default=512)
    trl.add_argument("--lora-r", type=int, default=16)
    trl.add_argument("--lr", type=float, default=1e-3)
    trl.add_argument("--seed", type=int, default=0)
    trl.add_argument("--reward", choices=sorted(REWARDS), default="digit")
    trl.add_argument("--grpo", default="{}", help="JSON: more GRPOConfig fields (a lever under test)")
    trl.add_argument("--no-probe", dest="probe", action="store_false", help="no memory probes (timing runs)")
    return parser.parse_args(argv)


def main() -> None:
    args = worker_args()
    if args.command == "build":
        print(build_model(args.shape, args.target))
        return
    try:
        result = {"ok": True} | run_trl(args)
    except Exception as exc:  # the parent reports it and goes on with the next configuration
        import traceback

        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    args.result.write_text(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # vLLM's background threads can hold a clean exit for minutes


def bench_env() -> dict[str, str]:
    """The environment of a benchmark subprocess: this repo and benchmarks/ importable, nothing from the network."""
    path = [str(REPO), str(REPO / "benchmarks")] + [p for p in os.environ.get("PYTHONPATH", "").split(":") if p]
    return os.environ | {"PYTHONPATH": ":".join(path), "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
                         "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
                         "DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false"}


def one_gpu() -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES naming the first GPU this process may use: a single-process trainer on a
    machine with several GPUs must see one (TRL refuses nn.DataParallel), set before CUDA starts."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
    return {"CUDA_VISIBLE_DEVICES": first}


class DevicePeak:
    """The most memory in use on the machine's GPUs while a run lasts, from NVML every 0.1 s (every process:
    vLLM's engine, its sleep-mode pool and the CUDA contexts, which torch's allocator statistics miss; issue #18's
    standby arms need it).  ``peak_gib`` and ``idle_gib`` (before the run) stay None without NVML."""

    def __init__(self, every_s: float = 0.1):
        self.every_s, self.peak_gib, self.idle_gib = every_s, None, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _used_gib(self) -> float:
        import pynvml

        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        return round(sum(pynvml.nvmlDeviceGetMemoryInfo(h).used for h in handles) / 2**30, 2)

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak_gib = max(self.peak_gib or 0.0, self._used_gib())

    def __enter__(self) -> DevicePeak:
        try:
            import pynvml

            pynvml.nvmlInit()
            self.idle_gib = self.peak_gib = self._used_gib()
        except Exception:  # no NVML here (a CPU dry run): nothing to sample
            return self
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            import pynvml

            pynvml.nvmlShutdown()


def run_arm(command: list[str], log: Path, timeout: int, cwd: Path | None = None, stop_s: float = 30,
            env: dict[str, str] | None = None) -> int | str:
    """One benchmark run in a session of its own, and afterwards every process of that session killed.

    The trl worker ends with os._exit (above), which leaves its helper processes behind (a python child
    reparented to init, ~20 % of a core, seen on the H100 after a trl arm); the arm after it then ran
    ~25 % slower (trl-sleep alone: 1.67 s/step first in a call, 2.11 s after another trl arm).  Each arm
    starts on a quiet machine this way.  On timeout the run first gets SIGTERM and ``stop_s`` to stop what
    it started in sessions of its own (`envkit train` tears down its vLLM server and ranks).  The exit code,
    or "timeout".
    """
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=bench_env() | (env or {}), cwd=cwd,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = "timeout"
            proc.terminate()
            try:
                proc.wait(timeout=stop_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return code


if __name__ == "__main__":
    main()
