"""grpo: takes every field of TRL's GRPOConfig (envkit.recipe.trl_fields), checked against the recorded schema
(envkit/knowledge/grpo_config.json) or the installed TRL's own dataclass."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from dataclasses import fields as dataclass_fields
from pathlib import Path

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.knowledge.grpo_config import RECORD, grpo_fields, installed_trl, record_of
from envkit.recipe.load import RecipeError, parse_recipe
from envkit.recipe.schema import GrpoSpec
from envkit.recipe.trl_fields import OWNED
from envkit.train.config import grpo_kwargs

TOY = Path(__file__).resolve().parents[1] / "recipes" / "data" / "toy.jsonl"
BASE = f"""version: 1
model: {{build: tiny}}
dataset: {{path: {TOY}}}
rewards: [{{name: length}}]
grpo:
  num_generations: 4
"""


def recipe(extra: str):
    return parse_recipe(BASE + extra, "r.yaml")


def test_trl_fields_load_with_their_types_into_grpo_trl():
    r = recipe("  warmup_steps: 1e-1\n  lr_scheduler_type: cosine\n  log_completions: true\n  max_grad_norm: 1\n"
               "  generation_kwargs: {no_repeat_ngram_size: 3, stop_strings: [END]}\n  min_p: null\n  run_name: try-1\n")
    assert r.grpo.trl == {"warmup_steps": 0.1, "lr_scheduler_type": "cosine", "log_completions": True, "max_grad_norm": 1.0,
                          "generation_kwargs": {"no_repeat_ngram_size": 3, "stop_strings": ["END"]}, "min_p": None,
                          "run_name": "try-1"}
    assert isinstance(r.grpo.trl["max_grad_norm"], float)
    assert recipe("").grpo.trl == {}


@pytest.mark.parametrize("line, message", [
    ("use_vllm: true", "r.yaml:7: grpo.use_vllm: envkit sets it from vllm.enabled; leave it out of grpo:"),
    ("vllm_gpu_memory_utilization: 0.5", "grpo.vllm_gpu_memory_utilization: envkit sets it from vllm.gpu_memory_utilization"),
    ("hub_token: hf_x", "grpo.hub_token: a secret: the token comes from the environment only (HF_TOKEN)"),
    ("report_to: [wandb]", "grpo.report_to: envkit sets it from output.report_to"),
    ("warmup_ratio: 0.1", "grpo.warmup_ratio: unknown key: neither envkit's nor a field of trl "),
    ("learnig_rate: 1e-4", "(did you mean learning_rate?)"),
    ("lr_scheduler_type: cosin", "grpo.lr_scheduler_type: expected 'linear' or 'cosine'"),
    ("lr_scheduler_type: cosin", "got str 'cosin' (did you mean cosine?)"),
    ("weight_decay: lots", "grpo.weight_decay: expected a finite number, got str 'lots'"),
    ("log_completions: 3", "grpo.log_completions: expected true/false, got int 3"),
    ("num_generations: 4", "grpo.num_generations: duplicate key"),
])
def test_bad_trl_fields_are_one_line_naming_the_key(line, message):
    with pytest.raises(RecipeError) as caught:
        recipe(f"  {line}\n")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_key_hint_names_the_closest_trl_field():
    with pytest.raises(RecipeError, match=r"did you mean warmup_steps\?"):
        recipe("  warmup_step: 10\n")


def test_every_owned_field_is_a_field_of_the_recorded_trl_or_a_vllm_one_it_lacks():
    _, fields = grpo_fields()
    assert {k for k in OWNED if k not in fields} <= {"vllm_max_lora_rank", "vllm_kv_cache_dtype"}


# GRPOConfig arguments grpo_kwargs only defaults: a grpo: key may set them (the recipe's value wins).
RECIPE_MAY_SET = {"eval_strategy", "eval_steps", "generation_kwargs"}
# Refused under grpo: though grpo_kwargs never passes them: a secret, trainer.train's argument (--resume), and
# the server's URL (envkit passes its host and port).
NEVER_PASSED = {"hub_token", "resume_from_checkpoint", "vllm_server_base_url"}


def test_owned_is_what_grpo_kwargs_sets_beyond_envkits_own_grpo_keys():
    """OWNED (refused under grpo:, each with where a recipe sets it) lists exactly the GRPOConfig arguments
    envkit.train.config.grpo_kwargs sets that are not the recipe's own grpo: keys: a new argument there
    without an OWNED entry would be silently overridden by a grpo: key of that name, a stale entry refuses one
    for nothing.  The two recipes take every branch of grpo_kwargs (colocate and server, epochs and steps)."""
    head = (f"version: 1\nmodel: {{build: tiny}}\ndataset: {{path: {TOY}, test_size: 0.25}}\n"
            "rewards: [{name: length}]\n")
    colocate = parse_recipe(head + "grpo: {num_generations: 4, top_k: 5, num_epochs: 2}\n"
                            "vllm: {gpu_memory_utilization: 0.5, max_lora_rank: 16, kv_cache_dtype: fp8, "
                            "tensor_parallel_size: 2}\nresources: {training_gpus: 2}\n", "r.yaml")
    server = parse_recipe(head + "grpo: {num_generations: 4, max_steps: 3}\nvllm: {mode: server}\n"
                          "resources: {generation_gpus: [0], training_gpus: [1]}\n", "r.yaml")
    decided = {"dtype": "bf16", "on_cpu": False, "use_vllm": True, "sleep": True, "vllm_utilization": 0.5,
               "gradient_checkpointing": True, "micro_batch": None}
    passed = {key for r in (colocate, server) for key in grpo_kwargs(r, "out", **decided)}
    own = {f.name for f in dataclass_fields(GrpoSpec)} - {"trl"}
    assert passed - own - RECIPE_MAY_SET == set(OWNED) - NEVER_PASSED
    assert NEVER_PASSED <= set(OWNED) and not RECIPE_MAY_SET & set(OWNED)


def test_explain_prints_trl_help():
    result = CliRunner().invoke(main, ["recipes", "explain", "grpo.max_grad_norm"])
    assert result.exit_code == 0, result.output
    assert "type: float" in result.stdout and "default: 1.0" in result.stdout and "gradient clipping" in result.stdout
    owned = CliRunner().invoke(main, ["recipes", "explain", "grpo.use_vllm"])
    assert "not a recipe key: envkit sets it from vllm.enabled" in owned.stdout
    unknown = CliRunner().invoke(main, ["recipes", "explain", "grpo.warmup_ratio"])
    assert unknown.exit_code == 2 and "did you mean grpo.warmup_steps?" in unknown.stderr


@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="needs trl")
def test_the_record_is_the_installed_trls_grpoconfig_when_versions_match():
    """python -m envkit.knowledge.grpo_config regenerates it; a stale record fails here."""
    recorded = json.loads(RECORD.read_text())
    if installed_trl() != recorded["trl"]:
        pytest.skip(f"trl {installed_trl()} installed, the record is of {recorded['trl']}")
    transformers = importlib.metadata.version("transformers")
    if transformers != recorded["transformers"]:  # TrainingArguments' fields and help come from transformers
        pytest.skip(f"transformers {transformers} installed, the record is of {recorded['transformers']}")
    from trl import GRPOConfig

    assert record_of(GRPOConfig) == recorded["fields"]
