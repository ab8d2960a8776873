"""Recipe + the plan's decisions -> GRPOConfig (and Unsloth's) keyword arguments.  Pure: no torch, no trl
(``--dry-run`` prints these)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from envkit.recipe.derived import max_lora_rank, max_model_length, vllm_launch_kwargs
from envkit.recipe.schema import Recipe
from envkit.train.effective import pins

if TYPE_CHECKING:
    from envkit.train.plan import Plan


def grpo_kwargs(recipe: Recipe, output_dir: str, *, dtype: str, on_cpu: bool, use_vllm: bool, sleep: bool,
                vllm_utilization: float | None, gradient_checkpointing: bool,
                micro_batch: int | None) -> dict[str, Any]:
    """GRPOConfig's arguments: the recipe's, with what the plan decided (envkit.train.plan.build_plan calls this
    before it freezes the plan)."""
    g, v = recipe.grpo, recipe.vllm
    micro_batch = micro_batch or g.per_device_train_batch_size  # the same completions a step either way
    kwargs: dict[str, Any] = {
        "output_dir": output_dir,
        "seed": recipe.seed,
        "learning_rate": g.learning_rate,
        "per_device_train_batch_size": micro_batch,
        "gradient_accumulation_steps": g.per_device_train_batch_size * g.gradient_accumulation_steps // micro_batch,
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
        "bf16": dtype == "bf16",
        "fp16": dtype == "fp16",
        "use_cpu": on_cpu,
        "use_vllm": use_vllm,
        "gradient_checkpointing": gradient_checkpointing,
        **g.trl,  # TRL's other fields, as the recipe wrote them; none of the above (the loader refuses those)
    }
    if g.top_k is not None:
        kwargs["top_k"] = g.top_k
    d = recipe.dataset
    if d.eval_path or d.eval_split or d.test_size:  # evaluation rows: every save_steps, unless grpo: says otherwise
        kwargs.setdefault("eval_strategy", "steps")
        kwargs.setdefault("eval_steps", recipe.output.save_steps)
    if g.max_steps is not None:
        kwargs["max_steps"] = g.max_steps
    else:
        kwargs["num_train_epochs"] = g.num_epochs if g.num_epochs is not None else 1.0
    if use_vllm:
        kwargs.update({
            "vllm_mode": v.mode,
            "vllm_enable_sleep_mode": sleep,
            "vllm_max_model_length": max_model_length(recipe),
        })
        kwargs.update(vllm_launch_kwargs(recipe))
        # auto for a server: set where the server starts (trl vllm-serve), not here
        if v.gpu_memory_utilization != "auto" or v.mode == "colocate":
            kwargs["vllm_gpu_memory_utilization"] = vllm_utilization
        if v.max_lora_rank is not None:
            kwargs["vllm_max_lora_rank"] = v.max_lora_rank
        if v.kv_cache_dtype != "auto":
            kwargs["vllm_kv_cache_dtype"] = v.kv_cache_dtype
        written = kwargs.get("generation_kwargs") or {}  # TRL also takes it as a JSON string: then as written
        if v.mode == "colocate" and recipe.backend == "trl" and isinstance(written, dict) and not written.get("stop"):
            # TRL reads back token ids only (it decodes the completions itself), so vLLM's incremental
            # detokenizing of every sequence at every step, in the training process, is work thrown away
            # (stop strings need it: then it stays on).  The recipe's own generation_kwargs win.
            kwargs["generation_kwargs"] = {"detokenize": False} | written
    kwargs.update(pins(recipe.backend, kwargs))  # the backend keeps TRL's values (envkit.train.effective)
    return kwargs


def unsloth_model_kwargs(recipe: Recipe, plan: Plan, model_name: str) -> dict[str, Any]:
    """``FastLanguageModel.from_pretrained`` arguments for ``backend: unsloth`` (the runner adds the torch dtype).

    As in Unsloth's GRPO notebooks (unslothai/notebooks nb/*GRPO*.ipynb): ``fast_inference`` starts Unsloth's
    own vLLM engine in the training process, sized by ``max_lora_rank`` and ``gpu_memory_utilization``; here
    it follows the plan (no vLLM where the plan turned it off) and the same share the TRL path uses.
    """
    m = recipe.model
    return {"model_name": model_name, "max_seq_length": m.max_seq_length, "load_in_4bit": m.load_in_4bit,
            "fast_inference": plan.use_vllm, "max_lora_rank": max_lora_rank(recipe),
            "gpu_memory_utilization": plan.vllm_utilization, "trust_remote_code": m.trust_remote_code}


def unsloth_peft_kwargs(recipe: Recipe) -> dict[str, Any]:
    """``FastLanguageModel.get_peft_model`` arguments: the recipe's LoRA with Unsloth's gradient checkpointing."""
    lora = recipe.lora
    return {"r": lora.r, "target_modules": list(lora.target_modules), "lora_alpha": lora.alpha,
            "lora_dropout": lora.dropout, "use_gradient_checkpointing": "unsloth", "random_state": recipe.seed}


# Passed where the installed TRL has them, dropped silently where not: TRL 1.16 no longer truncates
# prompts (GRPOConfig lost max_prompt_length); envkit still uses the recipe's value for
# vllm_max_model_length and the memory budget.
OPTIONAL = {"max_prompt_length", "generation_kwargs"}


def split_supported(kwargs: Mapping[str, Any], supported: set[str]) -> tuple[dict[str, Any], list[str]]:
    """The kwargs the installed GRPOConfig has, and the names it lacks that matter (reported, not passed)."""
    return {k: v for k, v in kwargs.items() if k in supported}, sorted(set(kwargs) - supported - OPTIONAL)
