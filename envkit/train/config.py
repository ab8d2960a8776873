"""Recipe + Plan -> GRPOConfig keyword arguments.  Pure: no torch, no trl (``--dry-run`` prints this)."""

from __future__ import annotations

from typing import Any

from envkit.recipe.schema import Recipe
from envkit.train.preflight import Plan

# vllm.gpu_memory_utilization: auto.  Colocated vLLM shares the GPU with training (TRL's default 0.3);
# asleep during the optimizer step it gives its memory back, so it may take more while generating.
AUTO_GPU_MEMORY = {("colocate", False): 0.3, ("colocate", True): 0.5, ("server", False): 0.9, ("server", True): 0.9}


def grpo_kwargs(recipe: Recipe, plan: Plan, output_dir: str) -> dict[str, Any]:
    g, v = recipe.grpo, recipe.vllm
    kwargs: dict[str, Any] = {
        "output_dir": output_dir,
        "seed": recipe.seed,
        "learning_rate": g.learning_rate,
        "per_device_train_batch_size": g.per_device_train_batch_size,
        "gradient_accumulation_steps": g.gradient_accumulation_steps,
        "num_generations": g.num_generations,
        "max_prompt_length": g.max_prompt_length,
        "max_completion_length": g.max_completion_length,
        "beta": g.beta,
        "loss_type": g.loss_type,
        "temperature": g.temperature,
        "top_p": g.top_p,
        "reward_weights": [r.weight for r in recipe.rewards],
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": recipe.output.save_steps,
        "save_total_limit": recipe.output.keep,
        "report_to": list(recipe.output.report_to) or "none",
        "bf16": plan.bf16,
        "fp16": plan.gpu != "cpu" and not plan.bf16 and recipe.model.dtype != "fp32",
        "use_cpu": plan.gpu == "cpu",
        "use_vllm": plan.use_vllm,
    }
    if g.top_k is not None:
        kwargs["top_k"] = g.top_k
    if g.max_steps is not None:
        kwargs["max_steps"] = g.max_steps
    else:
        kwargs["num_train_epochs"] = g.num_epochs if g.num_epochs is not None else 1.0
    if plan.use_vllm:
        utilization = v.gpu_memory_utilization
        kwargs.update({
            "vllm_mode": v.mode,
            "vllm_gpu_memory_utilization": AUTO_GPU_MEMORY[(v.mode, plan.sleep)] if utilization == "auto" else utilization,
            "vllm_enable_sleep_mode": plan.sleep,
            "vllm_max_model_length": g.max_prompt_length + g.max_completion_length,
        })
        if v.max_lora_rank is not None:
            kwargs["vllm_max_lora_rank"] = v.max_lora_rank
        if v.kv_cache_dtype != "auto":
            kwargs["vllm_kv_cache_dtype"] = v.kv_cache_dtype
    return kwargs


def split_supported(kwargs: dict[str, Any], supported: set[str]) -> tuple[dict[str, Any], list[str]]:
    """The kwargs the installed GRPOConfig has, and the names it lacks (reported, not passed)."""
    return {k: v for k, v in kwargs.items() if k in supported}, sorted(set(kwargs) - supported)
