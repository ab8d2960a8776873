"""The GPU acceptance suite's helpers and fixtures: a user's recipe folder, `envkit` run as a user types it, the
plain-TRL arm beside it, and one results file every test adds its arm to.

Everything here is skipped without an NVIDIA GPU or without vllm and trl installed (CI, a laptop).  On the GPU
machine, after staging envkit's own lock (dev/device_bundle.py), two commands run the whole suite
(README, "GPU acceptance"); the results land in $ENVKIT_ACCEPTANCE_OUT/acceptance.json (default: the work folder).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
WORK = Path(os.environ.get("ENVKIT_ACCEPTANCE_WORK", "/tmp/envkit-acceptance"))
RESULTS = Path(os.environ.get("ENVKIT_ACCEPTANCE_OUT") or WORK) / "acceptance.json"
LOCKED = ("torch", "vllm", "trl", "transformers", "peft", "accelerate", "datasets", "pyarrow", "unsloth")

# The shape every arm shares: grpo_step's 205M random-init Llama on the byte vocabulary, 4 prompts x 8
# completions a step, LoRA r16 on every linear, the digit reward (which this model learns from 0.06 to ~1.0 in
# 6-8 steps at lr 1e-3), completions of 128 tokens to keep the suite inside two 10-minute calls.
SHAPE = {"shape": "llama-205m", "micro_batch": 8, "grad_accum": 4, "num_generations": 8, "prompt_length": 64,
         "completion_length": 128, "lora_r": 16, "lr": 1e-3, "reward": "digit"}
STEPS = 8
# ENVKIT_ACCEPTANCE_DRY=1: the plumbing on a CPU (a tiny model, vLLM off wherever it is missing); outcomes are not
# asserted to hold there, only that every helper and command runs.
DRY = bool(os.environ.get("ENVKIT_ACCEPTANCE_DRY"))
if DRY:
    SHAPE |= {"shape": "test-tiny", "micro_batch": 4, "grad_accum": 1, "num_generations": 4, "prompt_length": 24,
              "completion_length": 16}

REWARD_PY = '''def digit_reward(completions, **kwargs):
    """The share of a completion's characters that are digits (0..1)."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isdigit() for ch in t) / len(t) if t else 0.0 for t in texts]
'''


def _gpus() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    result = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                            text=True, check=False)
    return [line.strip() for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


GPUS = _gpus()
MISSING = [name for name in ("trl", "torch") if find_spec(name) is None]
SKIP = (None if DRY else "no NVIDIA GPU (nvidia-smi finds none)" if not GPUS
        else f"needs {', '.join(MISSING)}" if MISSING else None)
# Each test module's pytestmark: marked gpu, skipped with the reason where the suite cannot run.
MARKS = [pytest.mark.gpu, pytest.mark.skipif(SKIP is not None, reason=SKIP or "")]
# The arms that generate with vLLM; without it (a machine given only trl and datasets) the rest still run.
NEEDS_VLLM = pytest.mark.skipif(not DRY and find_spec("vllm") is None,
                                reason="needs vllm: stage envkit's lock (dev/device_bundle.py)")


def _bench():
    """benchmarks/ (grpo_bench, budget_measure), imported only on the GPU machine."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import budget_measure
    import grpo_bench

    return grpo_bench, budget_measure


def installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


class Results:
    """acceptance.json: the machine and lock once, then one entry per arm, written after each (a call cut short
    keeps what it measured).  A copy stays in the work folder, so a second call adds to the first's arms even
    where the output folder is emptied between calls (the lent machine's $OUT)."""

    def __init__(self, path: Path):
        self.paths = [path, WORK / "acceptance.json"]
        previous = next((p for p in self.paths if p.exists()), None)
        self.data = json.loads(previous.read_text()) if previous else {}
        self.data.update({"date": date.today().isoformat(), "gpus": GPUS,
                          "lock": {name: installed(name) for name in LOCKED},
                          "shape": SHAPE | {"steps": STEPS}})
        self.data.setdefault("arms", {})

    def add(self, arm: str, entry: dict) -> None:
        self.data["arms"][arm] = entry
        for path in dict.fromkeys(self.paths):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.data, indent=1))


@pytest.fixture(scope="session")
def results() -> Results:
    return Results(RESULTS)


@pytest.fixture(scope="session")
def model() -> Path:
    _, budget_measure = _bench()
    return budget_measure.build(SHAPE["shape"])


def user_env() -> dict[str, str]:
    """The environment `envkit` runs in: the user's, offline (no hub here), one GPU, this checkout importable."""
    grpo_bench, _ = _bench()
    return grpo_bench.bench_env() | grpo_bench.one_gpu()


def write_recipe(folder: Path, model: Path, vllm: str = "enabled: true\n  mode: colocate\n  sleep: false",
                 steps: int = STEPS, seed: int = 0, save_steps: int = 100000, extra: str = "", grpo: str = "") -> Path:
    """A user's folder: recipe.yaml, its reward module beside it (digits.py) and its prompts (prompts.jsonl, the
    plain-TRL arm's prompts for the same seed)."""
    grpo_bench, _ = _bench()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "digits.py").write_text(REWARD_PY)
    prompts = grpo_bench.make_prompts(512, SHAPE["prompt_length"], seed)
    (folder / "prompts.jsonl").write_text("".join(json.dumps({"question": p, "answer": "0"}) + "\n" for p in prompts))
    recipe = folder / "recipe.yaml"
    recipe.write_text(f"""version: 1
model:
  name: {model}
  dtype: bf16
lora:
  r: {SHAPE['lora_r']}
  alpha: {2 * SHAPE['lora_r']}
  target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]
dataset:
  path: prompts.jsonl
  prompt_field: question
  answer_field: answer
  use_chat_template: false
rewards:
  - {{name: "digits:digit_reward"}}
grpo:
  num_generations: {SHAPE['num_generations']}
  per_device_train_batch_size: {SHAPE['micro_batch']}
  gradient_accumulation_steps: {SHAPE['grad_accum']}
  max_prompt_length: {SHAPE['prompt_length']}
  max_completion_length: {SHAPE['completion_length']}
  learning_rate: {SHAPE['lr']}
  max_steps: {steps}
  beta: 0.0{grpo}
vllm:
  {vllm}
output:
  save_steps: {save_steps}
  keep: 2
seed: {seed}
{extra}""")
    return recipe


class Ran:
    """One `envkit` command's outcome: exit code, its output (stdout and stderr together), wall time."""

    def __init__(self, code, log: Path, wall_s: float):
        self.code, self.log, self.wall_s = code, log, round(wall_s, 1)
        self.text = log.read_text(errors="replace")
        self.lines = self.text.splitlines()

    def envkit_lines(self) -> list[str]:
        return [line[:300] for line in self.lines if line.startswith("envkit ")]

    def summary(self) -> dict:
        return {"exit": self.code, "wall_s": self.wall_s, "envkit_lines": self.envkit_lines()[-12:],
                "tracebacks": self.text.count("Traceback (most recent call last)")}


def envkit(*args: str, cwd: Path, log: Path, timeout: int = 300) -> Ran:
    """`envkit ARGS` in ``cwd``, as a user types it (python -m envkit: the console script where it is installed)."""
    grpo_bench, _ = _bench()
    started = time.perf_counter()
    code = grpo_bench.run_arm([sys.executable, "-m", "envkit", *args], log, timeout, cwd, env=user_env())
    return Ran(code, log, time.perf_counter() - started)


def metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def rewards(rows: list[dict]) -> list[float]:
    return [round(r["reward"], 4) for r in rows if "reward" in r]


def gain(values: list[float], n: int = 3) -> float:
    """Mean of the last ``n`` rewards minus the mean of the first ``n``."""
    return round(sum(values[-n:]) / n - sum(values[:n]) / n, 4)


def plain_trl(name: str, seed: int = 0, steps: int = STEPS, timeout: int = 300) -> dict:
    """GRPOTrainer with TRL's own defaults on the same shape, prompts and seed (benchmarks/grpo_bench.py trl)."""
    _, budget_measure = _bench()
    config = SHAPE | {"vllm": "colocate", "steps": steps, "seed": seed, "utilization": None}
    return budget_measure.run_worker(name, config, timeout, probe=False)
