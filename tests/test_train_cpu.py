"""`envkit train` end to end on the CPU: the tiny recipe's outputs, SIGKILL + --resume, Ctrl-C.

Each run is a subprocess (`python -m envkit train ...`), as a user runs it.  The kill tests slow every
step down with a user reward that sleeps, so the run is still going when it is signalled.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from envkit.cli import main

pytestmark = pytest.mark.train  # tests/conftest.py: skipped without torch and trl

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
CANARY = {"HF_TOKEN": "canary-hf-run", "WANDB_API_KEY": "canary-wandb-run"}
SLOW_REWARD = """import time


def slow(prompts, completions, **_):
    time.sleep(0.25)
    return [0.0] * len(completions)
"""


def envkit(*args: str, log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """`python -m envkit train ARGS`, its output into LOG (a pipe nobody reads would fill and stall the run)."""
    env = {**os.environ, **CANARY, "PYTHONPATH": os.pathsep.join(filter(None, [str(cwd or ""), os.environ.get("PYTHONPATH")]))}
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "envkit", "train", *args], cwd=cwd, env=env, stdout=out, stderr=out)


def finish(process: subprocess.Popen, log: Path, timeout: float = 300) -> tuple[int, str]:
    process.wait(timeout=timeout)
    return process.returncode, log.read_text()


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def slow_recipe(tmp_path: Path, max_steps: int, save_steps: int) -> Path:
    """recipes/tiny.yaml with more steps, a sleeping user reward, and the dataset by absolute path."""
    (tmp_path / "slow_reward.py").write_text(SLOW_REWARD)
    text = (RECIPES / "tiny.yaml").read_text()
    for old, new in [("path: data/toy.jsonl", f"path: {RECIPES / 'data' / 'toy.jsonl'}"),
                     ("max_steps: 20", f"max_steps: {max_steps}"), ("save_steps: 10", f"save_steps: {save_steps}"),
                     ("  - {name: length, weight: 0.1}\n", "  - {name: length, weight: 0.1}\n  - {name: slow_reward:slow, weight: 0.0}\n")]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / "slow.yaml"
    path.write_text(text)
    return path


def wait_for(path: Path, process: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before {path.name} appeared:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {path} after {timeout} s")
        time.sleep(0.05)


def checkpoints(run: Path) -> list[int]:
    """Steps of the complete checkpoints (the Trainer writes trainer_state.json last)."""
    return sorted(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*") if (p / "trainer_state.json").exists())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, int, str]:
    run = tmp_path_factory.mktemp("tiny") / "run"
    log = run.with_name("log")
    code, err = finish(envkit("tiny", "--output", str(run), log=log), log)
    return run, code, err


def test_tiny_recipe_writes_metrics_checkpoints_adapter_manifest_and_picture(tiny_run):
    run, code, err = tiny_run
    assert code == 0, err[-3000:]
    rows = metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 21))
    for row in rows:
        assert {"reward", "rewards/exact_answer/mean", "rewards/length/mean", "completion_length", "kl", "step_time"} <= set(row)
        assert 0 < row["completion_length"] <= 16 and row["step_time"] > 0 and 0.0 <= row["rewards/length/mean"] <= 1.0
    assert checkpoints(run) == [10, 20]
    digits = [r["rewards/digits/mean"] for r in rows]  # the run a newcomer starts with learns (issue #24)
    assert sum(digits[-5:]) / 5 > sum(digits[:5]) / 5 + 0.3, digits
    adapter = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and adapter["lora_alpha"] == 16
    assert set(adapter["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert (run / "adapter" / "adapter_model.safetensors").stat().st_size > 1000
    assert (run / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "envkit train: tiny.yaml on cpu (fp32), generation: model.generate (vLLM off: no GPU visible)" in err
    assert "envkit train: done: 20 steps in " in err and f"  adapter     {run / 'adapter'}  (merged model: {run / 'merged'})" in err
    assert f"envkit generate {run} " in err


def test_training_says_one_envkit_line_per_step_and_the_card_names_the_base(tiny_run):
    run, code, err = tiny_run
    assert code == 0, err[-3000:]
    steps = re.findall(r"^envkit train: step (\d+)/20  reward \d\.\d{3}  .* s/step  .*ETA \d+:\d\d$", err, re.M)
    assert steps == [str(n) for n in range(1, 21)], err[-3000:]
    assert "{'loss':" not in err and "FutureWarning" not in err and "it/s]" not in err  # into a file: no bar either
    assert "[####" not in err
    card = (run / "README.md").read_text()
    assert "base_model: envkit tiny model (model.build, seed 0)" in card and "[None]" not in card


def test_verbose_shows_the_libraries_output(tmp_path):
    run, log = tmp_path / "run", tmp_path / "log"
    code, err = finish(envkit("tiny", "--max-steps", "2", "--output", str(run), "-v", log=log), log)
    assert code == 0, err[-3000:]
    assert err.count("{'loss':") == 2 and "FutureWarning" in err
    assert not re.search(r"^envkit train: step \d", err, re.M)


def test_merged_model_is_the_base_plus_the_adapter_where_lora_targets(tiny_run):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from envkit.recipe.load import load_recipe
    from envkit.train.tiny import build_tiny

    run, code, err = tiny_run
    assert code == 0, err[-3000:]
    recipe = load_recipe(RECIPES / "tiny.yaml")
    assert recipe.output.merge is True
    merged = AutoModelForCausalLM.from_pretrained(run / "merged").state_dict()
    base = AutoModelForCausalLM.from_pretrained(build_tiny(seed=recipe.seed)).state_dict()
    assert set(merged) == set(base)  # plain weights: no lora_A/lora_B left, nothing missing
    targets = tuple(f"{name}.weight" for name in recipe.lora.target_modules)
    changed = {name for name in base if not torch.equal(merged[name], base[name])}
    assert changed == {name for name in base if name.endswith(targets)}
    assert AutoTokenizer.from_pretrained(run / "merged")("Answer: 42").input_ids
    assert not (run / "merged.partial").exists()


def test_manifest_records_the_run_and_no_environment_values(tiny_run):
    run, code, err = tiny_run
    assert code == 0, err[-3000:]
    text = (run / "manifest.json").read_text()
    manifest = json.loads(text)
    assert manifest["schema"] == "envkit.run/1"
    assert manifest["steps"] == 20 and manifest["completed"] is True and manifest["resumed_from"] is None
    assert manifest["recipe"] == str(RECIPES / "tiny.yaml") and len(manifest["recipe_sha256"]) == 64
    assert manifest["gpu"] == "cpu" and manifest["wall_s"] > 0
    assert manifest["effective_config"] is None  # backend trl trains envkit's arguments as they are
    signal = manifest["guard"]["learning_signal"]  # a run that learns: the guard is silent
    assert signal["steps"] == 20 and signal["dead_steps"] == 0 and signal["verdict"] is None
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        assert manifest["packages"][name] == metadata.version(name)
    for value in CANARY.values():
        for path in run.rglob("*"):
            if path.is_file() and path.suffix in (".json", ".jsonl", ".md", ".txt"):
                assert value not in path.read_text(errors="replace"), path
        assert value not in err


def test_report_redraws_the_picture(tiny_run):
    run, code, _ = tiny_run
    assert code == 0
    (run / "run.png").unlink()
    result = CliRunner().invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert "20 steps" in result.stdout and (run / "run.png").stat().st_size > 1000


def test_samples_every_10_steps_and_step_1_read_back_by_report(tiny_run):
    """Issue #28: samples.jsonl (output.samples_every: 10 by default) and report.html, written by the run itself."""
    run, code, _ = tiny_run
    assert code == 0
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 10, 20]
    assert all(len(g["completions"]) == 8 and g["answer"] for r in rows for g in r["groups"])
    result = CliRunner().invoke(main, ["report", str(run), "--samples"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("step 20: 2 prompts") and "| worst: reward " in result.stdout
    assert "<th>best</th><th>worst</th>" in (run / "report.html").read_text()


def test_a_used_output_folder_needs_resume(tiny_run):
    run, code, _ = tiny_run
    assert code == 0
    before = (run / "metrics.jsonl").read_text()
    result = CliRunner().invoke(main, ["train", "tiny", "--output", str(run)])
    assert result.exit_code == 2
    expected = f"envkit train: {run} is not empty: pass --resume to continue the run in it, or --output another folder"
    assert result.stderr.splitlines() == [expected]
    assert (run / "metrics.jsonl").read_text() == before


def test_sigkill_then_resume_loses_nothing_before_the_checkpoint(tmp_path):
    recipe, run = slow_recipe(tmp_path, max_steps=8, save_steps=2), tmp_path / "run"
    log = tmp_path / "log"
    process = envkit(str(recipe), "--output", str(run), log=log, cwd=tmp_path)
    wait_for(run / "checkpoint-4" / "trainer_state.json", process, log)
    process.kill()
    process.wait(timeout=30)
    last = checkpoints(run)[-1]
    before = metrics(run)
    assert 4 <= last < 8 and len(before) >= last
    assert not (run / "manifest.json").exists() and not (run / "adapter").exists()

    code, err = finish(envkit(str(recipe), "--output", str(run), "--resume", log=log, cwd=tmp_path), log)
    assert code == 0, err[-3000:]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["resumed_from"] == f"checkpoint-{last}" and manifest["steps"] == 8 and manifest["completed"]
    after = metrics(run)
    assert [r["step"] for r in after] == list(range(1, 9))
    assert after[:last] == before[:last]
    assert all("rewards/slow/mean" in r for r in after)
    assert (run / "adapter" / "adapter_config.json").exists() and (run / "adapter" / "adapter_model.safetensors").exists()
    assert checkpoints(run)[-1] == 8


@pytest.mark.parametrize("sig, code, said", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, r"terminated \(SIGTERM\)")],
                         ids=["ctrl-c", "sigterm"])
def test_a_stop_signal_saves_a_checkpoint_and_exits(tmp_path, sig, code, said):
    """Ctrl-C, and SIGTERM (docker stop, a scheduler, envkit's launcher): finish the step, save, exit."""
    recipe, run = slow_recipe(tmp_path, max_steps=12, save_steps=2), tmp_path / "run"
    log = tmp_path / "log"
    process = envkit(str(recipe), "--output", str(run), log=log, cwd=tmp_path)
    wait_for(run / "checkpoint-2" / "trainer_state.json", process, log)
    process.send_signal(sig)
    exit_code, err = finish(process, log, timeout=120)
    assert exit_code == code, err[-3000:]
    assert "Traceback" not in err
    stopped = int(re.search(said + r" at step (\d+); checkpoint saved", err).group(1))
    assert 2 <= stopped < 12
    assert checkpoints(run)[-1] == stopped
    state = json.loads((run / f"checkpoint-{stopped}" / "trainer_state.json").read_text())
    assert state["global_step"] == stopped
    assert [r["step"] for r in metrics(run)] == list(range(1, stopped + 1))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["completed"] is False and manifest["steps"] == stopped
    assert not (run / "adapter").exists()


def test_generate_samples_from_the_adapter_and_the_merged_model_alike(tiny_run):
    """Greedy completions of base + adapter and of merged/ are the same tokens: the same weights, two ways."""
    run, code, err = tiny_run
    assert code == 0, err[-3000:]
    assert json.loads((run / "manifest.json").read_text())["generate"] == {
        "chat_template": False, "system_prompt": None, "trust_remote_code": False}
    prompts = ["Question: 2+3?\nAnswer:", "Question: 7*6?\nAnswer:"]
    greedy = {}
    for way in ([], ["--merged"]):
        result = CliRunner().invoke(main, ["generate", str(run), *prompts, "--temperature", "0", "--json", *way])
        assert result.exit_code == 0, result.output
        greedy[bool(way)] = json.loads(result.stdout)
        assert [item["prompt"] for item in greedy[bool(way)]] == prompts
    assert greedy[True] == greedy[False]
    sampled = CliRunner().invoke(main, ["generate", str(run / "checkpoint-20"), prompts[0], "-n", "3",
                                        "--max-new-tokens", "5"])
    assert sampled.exit_code == 0, sampled.output
    assert [line for line in sampled.stdout.splitlines() if line.startswith("---")] == [
        f"--- prompt 1, sample {i} ---" for i in (1, 2, 3)]
    assert "\x1b" not in sampled.stdout  # a byte-level model's escapes are printed escaped


# Ten GRPOConfig fields envkit has no key of its own for (the list; transformers 5 dropped warmup_ratio:
# warmup_steps takes the ratio now), each with a value other than TRL's default.
TRL_ONLY = {"warmup_steps": 0.1, "lr_scheduler_type": "cosine", "log_completions": True, "weight_decay": 0.01,
            "max_grad_norm": 0.5, "epsilon": 0.3, "scale_rewards": "batch", "mask_truncated_completions": True,
            "min_p": 0.05, "repetition_penalty": 1.1}


def test_trl_fields_in_grpo_reach_grpoconfig(tmp_path):
    import torch

    text = (RECIPES / "tiny.yaml").read_text().replace("path: data/toy.jsonl", f"path: {RECIPES / 'data/toy.jsonl'}")
    fields = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in TRL_ONLY.items())
    text = re.sub(r"  lr_scheduler_type: .*\n", "", text)  # tiny's own; TRL_ONLY sets another
    text = text.replace("max_steps: 20", "max_steps: 2\n" + fields)
    (tmp_path / "trl.yaml").write_text(text)
    run, log = tmp_path / "run", tmp_path / "log"
    code, err = finish(envkit(str(tmp_path / "trl.yaml"), "--output", str(run), log=log), log)
    assert code == 0, err[-3000:]
    args = torch.load(run / "adapter" / "training_args.bin", weights_only=False)  # the GRPOConfig the trainer ran with
    assert type(args).__name__ == "GRPOConfig"
    for name, value in TRL_ONLY.items():
        assert getattr(args, name) == value, name  # SchedulerType is a str enum: equal to "cosine"
    assert json.loads((run / "manifest.json").read_text())["not_applied"] == []


CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


def test_a_conversational_parquet_with_held_out_rows_logs_evaluations(tmp_path):
    """Chat messages in a Parquet file, 8 rows held out (dataset.test_size): TRL evaluates every save_steps,
    metrics.jsonl gets eval_* rows, the manifest says the prompts were chat, run_name reaches GRPOConfig."""
    import shutil

    import datasets
    import torch
    from transformers import AutoTokenizer

    from envkit.train.tiny import build_tiny

    model = tmp_path / "chat-model"
    shutil.copytree(build_tiny(seed=0), model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(model)
    rows = [{"messages": [{"role": "user", "content": f"What is {i}+{i}?"},
                          {"role": "assistant", "content": str(2 * i)}],
             "answer": str(2 * i)} for i in range(24)]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "chat.parquet"))
    (tmp_path / "chat.yaml").write_text(f"""version: 1
model: {{name: {model}}}
lora: {{r: 4, alpha: 8, target_modules: [q_proj, v_proj]}}
dataset: {{path: chat.parquet, prompt_field: messages, test_size: 8}}
rewards: [{{name: length}}]
grpo: {{num_generations: 4, per_device_train_batch_size: 4, max_prompt_length: 64, max_completion_length: 8,
        max_steps: 2, run_name: chat-try}}
output: {{save_steps: 1}}
""")
    run, log = tmp_path / "run", tmp_path / "log"
    code, err = finish(envkit(str(tmp_path / "chat.yaml"), "--output", str(run), log=log), log)
    assert code == 0, err[-3000:]
    rows = metrics(run)
    assert [r["step"] for r in rows if "eval_reward" in r] == [1, 2]
    assert all("reward" in r for r in rows if "eval_reward" not in r)
    assert json.loads((run / "manifest.json").read_text())["generate"]["chat_template"] is True
    args = torch.load(run / "adapter" / "training_args.bin", weights_only=False)
    assert (args.run_name, args.eval_strategy, args.eval_steps) == ("chat-try", "steps", 1)
