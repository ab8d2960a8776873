"""grpo: takes every field of TRL's GRPOConfig (envkit.recipe.trl_fields), checked against the recorded schema
(envkit/knowledge/grpo_config.json) or the installed TRL's own dataclass."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.knowledge.grpo_config import RECORD, grpo_fields, installed_trl, record_of
from envkit.recipe.load import RecipeError, parse_recipe
from envkit.recipe.trl_fields import OWNED

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
