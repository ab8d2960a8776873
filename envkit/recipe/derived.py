"""Values derived from a recipe alone, which several layers need (the launch plan, the launch checks, the
GRPOConfig): computed here once instead of by whichever layer asked first."""

from __future__ import annotations

from typing import Any

from envkit.recipe.schema import Recipe


def max_model_length(recipe: Recipe) -> int:
    """vLLM's context (trainer's vllm_max_model_length, the server's --max-model-len): prompt + completion."""
    return recipe.grpo.max_prompt_length + recipe.grpo.max_completion_length


def max_lora_rank(recipe: Recipe) -> int:
    """The largest LoRA rank vLLM reserves room for: vllm.max_lora_rank, default lora.r (the loader
    rejects a value below lora.r)."""
    return recipe.lora.r if recipe.vllm.max_lora_rank is None else recipe.vllm.max_lora_rank


def vllm_launch_kwargs(recipe: Recipe) -> dict[str, Any]:
    """What several processes need (trl/trainer/grpo_config.py): server mode, where the trainer finds the
    server and its weight-sync port; colocate, the tensor-parallel group of each rank's vLLM."""
    v = recipe.vllm
    if v.mode == "server":
        return {"vllm_mode": "server", "vllm_server_host": v.server.host, "vllm_server_port": v.server.port,
                "vllm_group_port": v.server.group_port, "vllm_server_timeout": v.server.timeout_s}
    return {"vllm_tensor_parallel_size": v.tensor_parallel_size} if v.tensor_parallel_size > 1 else {}
