"""The learning-signal guard: steps on which nothing carries a gradient.  Pure (no torch, no trl).

A GRPO step learns from completions that scored differently within their group; TRL logs, every step, what
says when none did: ``completions/clipped_ratio`` (the share of completions cut at max_completion_length;
under ``mask_truncated_completions`` every one of them is out of the loss), ``frac_reward_zero_std`` (the
share of groups whose completions all scored alike: their advantages are 0) and ``grad_norm``.  envkit adds
``adapter_update`` (envkit.train.callbacks.AdapterMotion): how far the trainable weights moved in the step,
relative to their size, 0 when the learning rate is too small to change them.  Such a run ends "done" with
a flat reward and nothing to say why (issue #30: 17 of 24 steps with every completion truncated and masked).

Each logged step gets a cause or none; ``consecutive`` dead steps in a row (knowledge/guard.json) give the
verdict, once: a warning, or with ``guard: stop`` a checkpoint and exit 4.  Every run's manifest and summary
count the dead steps by cause.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from envkit.exitcodes import NO_LEARNING
from envkit.knowledge import load
from envkit.train.effective import trained_value

SAMPLES = "`envkit generate RUN \"a prompt\" -n 4`"
# cause -> (what happened on the step, the fix in one line)
CAUSES = {
    "truncated": (("every completion was cut at grpo.max_completion_length and masked out of the loss "
                   "(mask_truncated_completions)"),
                  "raise grpo.max_completion_length, or set grpo.mask_truncated_completions: false"),
    "zero_spread": ("every group's completions got the same reward, so every advantage is 0",
                    f"the reward gives one score per group: look at samples with {SAMPLES}"),
    "no_gradient": ("grad_norm was 0",
                    f"look at the completions and their rewards with {SAMPLES}"),
    "not_moving": ("the adapter did not move (the learning rate is too small to change its weights)",
                   "raise grpo.learning_rate"),
}


@dataclass(frozen=True)
class SignalLimits:
    consecutive: int  # dead steps in a row before the verdict
    still: float  # adapter_update below this: the adapter did not move

    @classmethod
    def shipped(cls) -> SignalLimits:
        data = load("guard")["learning_signal"]
        return cls(int(data["consecutive"]), float(data["still"]))


@dataclass(frozen=True)
class SignalVerdict:
    step: int
    cause: str
    consecutive: int
    label = "no learning signal"
    guard = "learning-signal guard"
    exit_code = NO_LEARNING

    def message(self) -> str:
        return f"{self.consecutive} steps in a row up to step {self.step} trained on nothing: {CAUSES[self.cause][0]}"

    @property
    def hint(self) -> str:
        return f"fix: {CAUSES[self.cause][1]}"

    def to_dict(self) -> dict:
        return {**asdict(self), "fix": CAUSES[self.cause][1]}


def step_cause(logs: dict, masking: bool, limits: SignalLimits) -> str | None:
    """Why a logged step carried no gradient, or None: it did (or it logged nothing to tell)."""
    def number(key: str) -> float | None:
        value = logs.get(key)
        return value if isinstance(value, (int, float)) else None

    clipped, same, grad, moved = (number(k) for k in ("completions/clipped_ratio", "frac_reward_zero_std",
                                                      "grad_norm", "adapter_update"))
    if masking and clipped is not None and clipped >= 1:
        return "truncated"
    if same is not None and same >= 1:
        return "zero_spread"
    if grad == 0:
        return "no_gradient"
    if moved is not None and moved < limits.still:
        return "not_moving"
    return None


class LearningSignalGuard:
    """Feed it each logged training step (TRL's log dict, or a metrics.jsonl row: the same keys); it answers
    a verdict once, at the ``consecutive``-th dead step in a row, and keeps the count for the summary."""

    def __init__(self, masking: bool, limits: SignalLimits | None = None):
        self.masking = masking
        self.limits = limits or SignalLimits.shipped()
        self.verdict: SignalVerdict | None = None
        self.steps = 0
        self.causes: Counter[str] = Counter()
        self._run: list[str] = []

    def observe(self, step: int, logs: dict) -> SignalVerdict | None:
        if "reward" not in logs:  # an evaluation, or the trainer's closing summary: not a step
            return None
        self.steps += 1
        cause = step_cause(logs, self.masking, self.limits)
        self._run = self._run + [cause] if cause else []
        if cause:
            self.causes[cause] += 1
        if self.verdict is None and len(self._run) >= self.limits.consecutive:
            common = Counter(self._run).most_common(1)[0][0]
            self.verdict = SignalVerdict(step, common, len(self._run))
            return self.verdict
        return None

    def report(self) -> dict[str, Any]:
        """manifest.json's guard.learning_signal."""
        return {"steps": self.steps, "dead_steps": sum(self.causes.values()), "causes": dict(self.causes),
                "verdict": self.verdict.to_dict() if self.verdict else None}


def signal_line(report: dict[str, Any] | None) -> str | None:
    """The summary's line: how many steps trained on nothing, the main cause and its fix; None: not watched."""
    if not report or not report["steps"]:
        return None
    dead, steps = report["dead_steps"], report["steps"]
    if not dead:
        return f"every one of {steps} step{'s' * (steps != 1)} carried a learning signal"
    cause = max(report["causes"], key=report["causes"].get)
    return (f"{dead} of {steps} steps trained on nothing, mostly ({report['causes'][cause]}): {CAUSES[cause][0]}; "
            f"fix: {CAUSES[cause][1]}")


def check_signal_rows(rows: Iterable[dict], masking: bool) -> SignalVerdict | None:
    """The guard over a finished run's metrics.jsonl rows (``envkit report``)."""
    guard = LearningSignalGuard(masking)
    for row in rows:
        guard.observe(row["step"], row)
    return guard.verdict


def run_masking(manifest: Path) -> bool:
    """Whether a finished run masked truncated completions, from its manifest.json (False without one)."""
    try:
        record = json.loads(manifest.read_text())
        return bool(trained_value(record["grpo_config"], record.get("effective_config"), "mask_truncated_completions"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
