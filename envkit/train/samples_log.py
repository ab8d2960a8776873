"""Sample completions while a run trains: every ``output.samples_every`` steps (and step 1) the step's prompts, their
completions, each reward function's score and the answer column go to RUN/samples.jsonl (read by `envkit report
--samples`, envkit.runs.samples) and to the tracker's table where it has one (W&B, Trackio; MLflow as a table
artifact).  GRPO is debugged by reading what the model writes: a format reward stuck at 0 is plain in the text.

TRL keeps the last generation batch's prompts, completions, rewards per function and advantages on the trainer
(``GRPOTrainer._logs``, its own completions table's source, TRL 1.x); the answers come from the training rows.
"""

from __future__ import annotations

import json
import math
import os

from transformers import TrainerCallback

from envkit.files import open_owned, write_owned
from envkit.runs.samples import SAMPLES, group_rows, read_samples, samples_text


def prompt_key(prompt) -> str:
    """A prompt (text or chat messages) as a dictionary key."""
    return json.dumps(prompt, sort_keys=True, default=str)


def as_text(value) -> str:
    """A prompt or completion as text: chat messages as ``role: content`` lines."""
    if isinstance(value, list):
        return "\n".join(f"{m.get('role', '?')}: {m.get('content', '')}" if isinstance(m, dict) else str(m)
                         for m in value)
    return str(value)


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


class SamplesCallback(TrainerCallback):
    """Writes a step's completions grouped by prompt to samples.jsonl (rank 0: the one that gets it); ``trainer``
    is set once the GRPOTrainer exists (a callback is given none)."""

    def __init__(self, run_dir, every: int, answers: dict[str, str], weights: dict[str, float]):
        self.path = run_dir / SAMPLES
        self.every = every
        self.answers = answers
        self.weights = weights  # reward function name -> weight: the weighted reward of each completion
        self.trainer = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        step = state.global_step
        if not logs or "reward" not in logs or self.trainer is None or (step % self.every and step != 1):
            return
        logged = getattr(self.trainer, "_logs", None)
        if not logged or not logged.get("prompt"):
            return
        flat = self._completions(logged)
        row = {"step": step, "groups": group_rows(flat)}
        fd = open_owned(self.path)  # appended to, never through a link planted in the run folder
        try:
            os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, samples_text([row]).encode())
        finally:
            os.close(fd)
        self._to_trackers(step, flat, set(args.report_to or ()))  # TrainingArguments resolved "all" already

    def _completions(self, logged) -> list[dict]:
        """One dict per completion: prompt, answer, text, each function's reward, the weighted one, the advantage."""
        functions = {name: list(values) for name, values in logged["rewards"].items()}
        advantages = list(logged.get("advantages") or [])
        flat = []
        for i, (prompt, completion) in enumerate(zip(logged["prompt"], logged["completion"])):
            rewards = {name: _number(values[i]) if i < len(values) else None for name, values in functions.items()}
            weighted = sum(self.weights.get(n, 1.0) * v for n, v in rewards.items() if v is not None)
            flat.append({"prompt": as_text(prompt), "answer": self.answers.get(prompt_key(prompt)),
                         "completion": as_text(completion), "reward": round(weighted, 6), "rewards": rewards,
                         "advantage": _number(advantages[i]) if i < len(advantages) else None})
        return flat

    def _to_trackers(self, step: int, flat: list[dict], report_to: set[str]) -> None:
        """The same rows as a table in W&B and Trackio, and an MLflow table artifact, for the trackers in use."""
        columns = ["step", "prompt", "answer", "completion", "reward", *flat[0]["rewards"], "advantage"]
        data = [[step, c["prompt"], c["answer"], c["completion"], c["reward"], *c["rewards"].values(), c["advantage"]]
                for c in flat]
        if "wandb" in report_to:
            import wandb

            if wandb.run is not None:
                wandb.log({"samples": wandb.Table(columns=columns, data=data), "train/global_step": step})
        if "trackio" in report_to:
            import trackio

            trackio.log({"samples": trackio.Table(columns=columns, data=data)}, step=step)
        if "mlflow" in report_to:
            import mlflow

            if mlflow.active_run() is not None:
                mlflow.log_table({name: [row[i] for row in data] for i, name in enumerate(columns)},
                                 artifact_file=f"samples/step_{step:06d}.json")


def samples_callback(recipe, run_dir, train_rows, trainer) -> SamplesCallback:
    """The run's SamplesCallback, given the trainer whose last generation batch it reads and the training rows'
    answers by prompt; the weights by the reward names TRL logs (each function's __name__)."""
    answers = dict(zip(map(prompt_key, train_rows["prompt"]), train_rows["answer"]))
    weights = dict(zip(trainer.reward_func_names, (r.weight for r in recipe.rewards)))
    callback = SamplesCallback(run_dir, recipe.output.samples_every, answers, weights)
    callback.trainer = trainer
    return callback


def trim_samples(run_dir, last_step: int) -> None:
    """On resume: the steps after the checkpoint run again, and log their samples again (as metrics.jsonl's)."""
    if (run_dir / SAMPLES).exists():
        write_owned(run_dir / SAMPLES, samples_text([r for r in read_samples(run_dir) if r["step"] <= last_step]))
