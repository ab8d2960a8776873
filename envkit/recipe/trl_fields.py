"""The ``grpo:`` keys beyond envkit's own (envkit.recipe.schema.GrpoSpec): any field of TRL's GRPOConfig
(envkit.knowledge.grpo_config), passed through to it as written, except those envkit sets itself.

A field envkit sets from the plan or from another section is refused, naming that section: two places for
one setting would disagree, and envkit's choice (vLLM off without a GPU, the budget's memory share) would
silently lose.
"""

from __future__ import annotations

import difflib
from typing import Any

from envkit.knowledge.grpo_config import as_type, grpo_fields

# GRPOConfig field -> where a recipe sets it.  The vllm_* fields envkit derives (envkit.train.config.grpo_kwargs,
# envkit.recipe.derived.vllm_launch_kwargs) are listed one by one: TRL's other vllm_* fields pass through.
OWNED = {  # why each is not a grpo: key
    "output_dir": "envkit sets it from output.dir (or --output)",
    "save_steps": "envkit sets it from output.save_steps",
    "save_strategy": "envkit sets it to steps (every output.save_steps)",
    "save_total_limit": "envkit sets it from output.keep",
    "report_to": "envkit sets it from output.report_to",
    "logging_steps": "envkit sets it to 1: metrics.jsonl and the stale-weight guard read every step",
    "seed": "envkit sets it from seed (top level)",
    "bf16": "envkit sets it from model.dtype",
    "fp16": "envkit sets it from model.dtype",
    "use_cpu": "envkit sets it where no GPU is visible",
    "reward_weights": "envkit sets it from rewards[].weight",
    "num_train_epochs": "envkit sets it from grpo.num_epochs",
    "resume_from_checkpoint": "envkit sets it with envkit train --resume",
    "hub_token": "a secret: the token comes from the environment only (HF_TOKEN), never from a recipe",
    "use_vllm": "envkit sets it from vllm.enabled",
    "vllm_mode": "envkit sets it from vllm.mode",
    "vllm_enable_sleep_mode": "envkit sets it from vllm.sleep",
    "vllm_gpu_memory_utilization": "envkit sets it from vllm.gpu_memory_utilization",
    "vllm_max_model_length": "envkit sets it from grpo.max_prompt_length + grpo.max_completion_length",
    "vllm_max_lora_rank": "envkit sets it from vllm.max_lora_rank",
    "vllm_kv_cache_dtype": "envkit sets it from vllm.kv_cache_dtype",
    "vllm_tensor_parallel_size": "envkit sets it from vllm.tensor_parallel_size",
    "vllm_server_host": "envkit sets it from vllm.server.host",
    "vllm_server_port": "envkit sets it from vllm.server.port",
    "vllm_group_port": "envkit sets it from vllm.server.group_port",
    "vllm_server_timeout": "envkit sets it from vllm.server.timeout_s",
    "vllm_server_base_url": "envkit sets it from vllm.server.host and vllm.server.port",
}


def trl_type(key: str) -> Any:
    """The typing object of GRPOConfig field ``key`` for the loader, or None: not a field of it."""
    _, fields = grpo_fields()
    return as_type(fields[key]["type"]) if key in fields else None


def grpo_extra(key: str, own: list[str]) -> tuple[Any, str | None]:
    """A ``grpo:`` key that is not envkit's own (envkit.binding's "extra_keys"): (its GRPOConfig type, None), or
    (None, why it is refused)."""
    kind = None if key in OWNED else trl_type(key)
    return (kind, None) if kind is not None else (None, key_problem(key, own))


def key_problem(key: str, own: list[str]) -> str:
    """Why ``grpo.<key>`` is refused: envkit sets it (and where the recipe does), or no GRPOConfig of the
    TRL in use has it (with the closest name among envkit's keys and TRL's)."""
    version, fields = grpo_fields()
    if key in OWNED:
        return f"{OWNED[key]}; leave it out of grpo:"
    close = difflib.get_close_matches(key, [*own, *(k for k in fields if k not in OWNED)], n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown key: neither envkit's nor a field of trl {version}'s GRPOConfig{hint}"


def explain(key: str) -> str | None:
    """`envkit recipes explain grpo.KEY` for a TRL field: its type, default and help; None if TRL has none."""
    version, fields = grpo_fields()
    if key not in fields:
        return None
    f = fields[key]
    owner = f"\n  not a recipe key: {OWNED[key]}" if key in OWNED else ""
    return (f"grpo.{key}  (TRL {version} GRPOConfig, passed through)\n  type: {_show(f['type'])}\n"
            f"  default: {f['default']!r}\n  {f['help']}{owner}")


def _show(form: Any) -> str:
    if isinstance(form, str):
        return form
    if "choices" in form:
        return " | ".join(map(repr, form["choices"]))
    if "list" in form:
        return f"list of {_show(form['list'])}"
    return " or ".join(_show(f) for f in form["union"])
