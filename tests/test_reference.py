"""docs/recipe.md is generated from the schema (python -m envkit.recipe.reference) and kept current."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.recipe.reference import DOC, entries, explain_key, markdown
from envkit.recipe.schema import Recipe


def test_docs_recipe_md_is_current():
    assert DOC.read_text() == markdown(), "docs/recipe.md is stale: python -m envkit.recipe.reference"
    assert "\\\\|" not in DOC.read_text()  # a table cell's | escaped once


def test_every_schema_key_is_in_the_reference_once():
    keys = [e.key for e in entries()]
    assert len(keys) == len(set(keys))
    assert {"model.name", "grpo.learning_rate", "rewards[].weight", "vllm.server.port", "guard"} <= set(keys)
    top = {f.name for f in dataclasses.fields(Recipe) if f.metadata.get("input", True)}
    assert top == {k.split(".")[0].removesuffix("[]") for k in keys}


def test_explain_an_envkit_key_with_type_default_and_bound():
    text = explain_key("grpo.learning_rate")
    assert text.splitlines()[:4] == ["grpo.learning_rate  (envkit)", "  type: float", "  default: 5e-06", "  allowed: greater than 0"]


@pytest.mark.parametrize("key, hint", [("grpo.learnig_rate", "grpo.learning_rate"), ("modle.name", "model.name")])
def test_explain_an_unknown_key_is_exit_2_with_the_closest(key, hint):
    result = CliRunner().invoke(main, ["recipes", "explain", key])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"envkit recipes: {key}: not a recipe key (did you mean {hint}?)"


def test_every_recipe_key_has_help():
    """Issue #24: 57 of 67 keys had an empty "what it does" (their help sat in source comments)."""
    assert [e.key for e in entries() if not e.help.strip()] == []
    assert "hub id" in explain_key("model.name") and "LoRA rank" in explain_key("lora.r")
