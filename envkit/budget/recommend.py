"""Choose gpu_memory_utilization and sleep mode; name the fixes when nothing fits."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from envkit.budget.model import Budget, BudgetInputs, budget, min_utilization

# Room left for allocator fragmentation and what the model does not count.
FIT_MARGIN = 0.05
# vLLM refuses a utilization whose memory is not free at start-up; above this
# nothing is left for training anyway.
MAX_UTILIZATION = 0.95


def fits(candidate: Budget) -> bool:
    in_range = candidate.vllm is None or candidate.vllm.utilization <= MAX_UTILIZATION
    return in_range and candidate.headroom >= FIT_MARGIN * candidate.inputs.gpu_bytes


def cheapest_budget(inputs: BudgetInputs, utilization: float | None = None, sleep: bool | None = None) -> Budget:
    """The smallest utilization; sleep mode and gradient checkpointing only when the GPU needs them.

    Both cost time every step (waking vLLM; recomputing each layer's forward in backward), sleep the more:
    the first that fits of awake without checkpointing, awake with it, asleep without, asleep with.
    A recipe may pin any setting (a number, true/false; checkpointing in ``inputs``); None chooses it.
    When nothing fits: the last (asleep where sleep is chosen, checkpointing on where it is).
    """
    sleeps = [sleep] if sleep is not None else [False, True]
    if inputs.server_mode or not inputs.use_vllm:
        utilization, sleeps = 0.0, [False]
    elif utilization is None:
        utilization = min_utilization(inputs)
    options = [False, True] if inputs.grad_checkpointing is None else [inputs.grad_checkpointing]
    candidates = [budget(replace(inputs, grad_checkpointing=gc), utilization, s) for s in sleeps for gc in options]
    return next((c for c in candidates if fits(c)), candidates[-1])


@dataclass(frozen=True)
class Fix:
    name: str
    setting: str
    saving: float  # bytes off the peak
    fits: bool


# The fixes, cheapest in quality and speed first: (name, applies, change, setting).
# Each setting is written as the recipe key to change (envkit recipes), so it can be pasted.
FIXES: tuple[tuple[str, Callable[[BudgetInputs], bool], Callable[[BudgetInputs], BudgetInputs],
                   Callable[[BudgetInputs], str]], ...] = (
    ("4-bit weights", lambda i: not i.load_in_4bit,
     lambda i: replace(i, load_in_4bit=True),
     # with vLLM only on backend unsloth: TRL's merge/unmerge sync re-quantizes NF4 weights every step (EK408)
     lambda i: "model.load_in_4bit: true" + (" with backend: unsloth" if i.use_vllm and not i.server_mode else "")),
    ("smaller micro-batch, same batch", lambda i: i.micro_batch > 1,
     lambda i: replace(i, micro_batch=i.micro_batch // 2),
     lambda i: f"grpo.per_device_train_batch_size: {i.micro_batch // 2} (and twice the gradient_accumulation_steps)"),
    ("shorter completions", lambda i: i.max_completion_length > 64,
     lambda i: replace(i, max_completion_length=i.max_completion_length // 2),
     lambda i: f"grpo.max_completion_length: {i.max_completion_length // 2}"),
    ("FP8 KV cache", lambda i: i.use_vllm and i.kv_cache_dtype != "fp8",
     lambda i: replace(i, kv_cache_dtype="fp8"), lambda i: "vllm.kv_cache_dtype: fp8"),
    ("vLLM server mode on a second GPU", lambda i: i.use_vllm and not i.server_mode,
     lambda i: replace(i, server_mode=True), lambda i: "vllm.mode: server (with resources.generation_gpus)"),
)
# A fix that saves less than this is no fix (halving a micro-batch of 1 token's worth of activations).
MIN_SAVING = 2**20 * 64


@dataclass(frozen=True)
class Recommendation:
    plan: Budget
    fits: bool
    fixes: tuple[Fix, ...] = ()
    combined: tuple[str, ...] = ()  # when no single fix is enough: the fixes in order until it fits
    combined_fits: bool = False


def recommend(inputs: BudgetInputs, utilization: float | None = None, sleep: bool | None = None) -> Recommendation:
    """The cheapest budget (pinned settings kept) and, when it does not fit, the fixes; each fix is budgeted
    from scratch."""
    base = cheapest_budget(inputs, utilization, sleep)
    if fits(base):
        return Recommendation(base, True)
    fixes = []
    if (utilization, sleep) != (None, None) and fits(chosen := cheapest_budget(inputs)):
        fixes.append(Fix("envkit's vLLM settings", "vllm.gpu_memory_utilization: auto, vllm.sleep: auto",
                         base.peak - chosen.peak, True))
    for name, applies, change, setting in FIXES:
        if applies(inputs):
            fixed = cheapest_budget(change(inputs))
            if base.peak - fixed.peak >= MIN_SAVING or fits(fixed):
                fixes.append(Fix(name, setting(inputs), base.peak - fixed.peak, fits(fixed)))
    if any(f.fits for f in fixes):
        return Recommendation(base, False, tuple(fixes))
    combined, current = [], inputs
    for name, applies, change, setting in FIXES:
        if applies(current):
            combined.append(setting(current))
            current = change(current)
            if fits(cheapest_budget(current)):
                return Recommendation(base, False, tuple(fixes), tuple(combined), True)
    return Recommendation(base, False, tuple(fixes), tuple(combined), False)
