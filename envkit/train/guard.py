"""The stale-weight guard: does generation run on the weights being trained?  Pure (no torch, no trl).

With vLLM generating, TRL logs ``sampling/sampling_logp_difference/mean``: the mean gap between vLLM's
log-probability of each sampled token and the trainer's.  On the trained weights it stays near bf16 noise;
when the sampler never receives them (TRL 1.11-1.16 server mode + LoRA without patch EKP001, trl 0.28-1.9
colocate + sleep) it grows with every step the adapter learns.  The threshold is data (knowledge/guard.json, measured
on healthy and stale runs); the same check runs live (envkit.train.callbacks.GuardCallback) and over a
finished run's metrics.jsonl (``envkit report``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

from envkit.exitcodes import STALE_WEIGHTS
from envkit.knowledge import load
from envkit.train.learning import signal_line


# What the guard's warnings point to: the silent stale-sampler failures envkit knows, each with its doc.
KNOWN_CAUSES = ("known causes: server mode + LoRA on trl 1.11-1.16 without patch EKP001, vLLM sleep mode on trl 0.28-1.9 "
                "(EK406); envkit doctor --explain EKP001 / EK406")


@dataclass(frozen=True)
class GuardLimits:
    metric: str
    threshold: float
    consecutive: int  # logged steps in a row above the threshold before it fires (one noisy step does not)

    @classmethod
    def shipped(cls) -> GuardLimits:
        data = load("guard")
        return cls(data["metric"], float(data["threshold"]), int(data["consecutive"]))


@dataclass(frozen=True)
class StaleVerdict:
    step: int
    metric: str
    value: float
    threshold: float
    consecutive: int
    label = "stale weights"
    guard = "stale-weight guard"
    exit_code = STALE_WEIGHTS
    hint = KNOWN_CAUSES

    def message(self) -> str:
        return (f"generation is not running on the weights being trained: {self.metric} {self.value:.3g} > "
                f"{self.threshold:g} for {self.consecutive} steps up to step {self.step} (the vLLM sampler has stale weights)")

    def to_dict(self) -> dict:
        return asdict(self)


class StaleWeightGuard:
    """Feed it each logged step; it answers a verdict once, at the first step that completes a run of
    ``consecutive`` values above the threshold, and None otherwise (also for steps without the metric:
    generation without vLLM logs none)."""

    def __init__(self, limits: GuardLimits | None = None):
        self.limits = limits or GuardLimits.shipped()
        self.verdict: StaleVerdict | None = None
        self.measured = 0  # steps that logged the metric
        self._run = 0

    def observe(self, step: int, logs: dict) -> StaleVerdict | None:
        value = logs.get(self.limits.metric)
        if not isinstance(value, (int, float)):
            return None
        self.measured += 1
        if self.verdict is not None:
            return None
        self._run = self._run + 1 if value > self.limits.threshold else 0
        if self._run >= self.limits.consecutive:
            self.verdict = StaleVerdict(step, self.limits.metric, float(value), self.limits.threshold, self.limits.consecutive)
            return self.verdict
        return None


def check_rows(rows: Iterable[dict], limits: GuardLimits | None = None) -> StaleVerdict | None:
    """The guard over a run's metrics.jsonl rows (each with its ``step``)."""
    guard = StaleWeightGuard(limits)
    for row in rows:
        guard.observe(row["step"], row)
    return guard.verdict


def not_measured(guard: StaleWeightGuard, vllm_off: str | None, backend: str) -> str | None:
    """Why the run has no sampler gap to judge, said plainly in the summary and manifest.json; None: it was
    measured."""
    if guard.measured:
        return None
    if vllm_off:
        return (f"generation is model.generate on the weights being trained (vLLM off: {vllm_off}): "
                "no sampler to go stale")
    if backend == "unsloth":
        return (f"not measured: backend unsloth logged no {guard.limits.metric} (Unsloth computes it only "
                "with vllm_importance_sampling_correction on, which envkit passes as TRL's default true: "
                "see effective_config)")
    return f"not measured: no step logged {guard.limits.metric}"


def guard_record(mode: str, stale: StaleWeightGuard | None, signal, vllm_off: str | None, backend: str) -> dict:
    """manifest.json's "guard": the mode, each guard's verdict, whether the sampler gap was measured (and why
    not), and the learning-signal guard's count of dead steps (envkit.train.learning), over the steps this call
    trained (None for a guard that did not watch: guard: off, or no step left to train)."""
    return {"mode": mode, "stale_weights": stale.verdict.to_dict() if stale and stale.verdict else None,
            "stale_weights_measured_steps": stale.measured if stale else 0,
            "stale_weights_not_measured": not_measured(stale, vllm_off, backend) if stale else None,
            "learning_signal": signal.report() if signal else None}


def guard_lines(record: dict) -> list[str]:
    """The summary's lines from manifest.json's "guard" (guard_record): the learning signal,
    and the sampler gap where it was not measured."""
    lines = []
    learning = signal_line(record.get("learning_signal"))
    if learning:
        lines.append(f"  learning    {learning}")
    if record.get("stale_weights_not_measured") and record["mode"] != "off":
        lines.append(f"  sampler gap {record['stale_weights_not_measured']}")
    return lines
