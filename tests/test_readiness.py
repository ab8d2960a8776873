"""What envkit train tells about the model before loading it (issue #24): not cached and no hub; a 3B on the CPU."""

from __future__ import annotations

from pathlib import Path

from envkit.recipe.library import find_recipe
from envkit.recipe.load import load_recipe
from envkit.train.readiness import cpu_size_warning, model_problem
from tests.conftest import make_facts

LLAMA = load_recipe(find_recipe("grpo-llama3b"))
TINY = load_recipe(find_recipe("tiny"))


def _facts(tmp_path: Path, **env):
    facts = make_facts(None, env=env)
    facts.host.cache_dir = str(tmp_path)
    return facts


def test_a_hub_model_neither_cached_nor_reachable_is_one_line(tmp_path):
    problem = model_problem(LLAMA, _facts(tmp_path), reachable=lambda: False)
    assert problem.startswith("model.name: meta-llama/Llama-3.2-3B-Instruct is neither a local folder nor in the hub "
                              f"cache ({tmp_path / 'hub'}), and the hub cannot be reached from here")
    assert "HF_TOKEN" in problem and "\n" not in problem
    offline = model_problem(LLAMA, _facts(tmp_path, HF_HUB_OFFLINE="1"), reachable=lambda: True)
    assert "HF_HUB_OFFLINE is set" in offline


def test_a_cached_reachable_local_or_built_model_is_no_problem(tmp_path):
    assert model_problem(LLAMA, _facts(tmp_path), reachable=lambda: True) is None
    (tmp_path / "hub" / "models--meta-llama--Llama-3.2-3B-Instruct").mkdir(parents=True)
    assert model_problem(LLAMA, _facts(tmp_path), reachable=lambda: False) is None
    assert model_problem(TINY, _facts(tmp_path), reachable=lambda: False) is None


def test_a_3b_model_on_the_cpu_is_warned_with_an_estimate(tmp_path):
    warning = cpu_size_warning(LLAMA, _facts(tmp_path), on_cpu=True)
    assert "3.21B parameters would train on the CPU in fp32: 12 GiB of weights" in warning
    assert cpu_size_warning(LLAMA, _facts(tmp_path), on_cpu=False) is None
    assert cpu_size_warning(TINY, _facts(tmp_path), on_cpu=True) is None


def test_prompts_over_max_prompt_length_stop_the_run_before_the_model_loads(tmp_path, monkeypatch):
    """Issue #24: the prompts' lengths surfaced after 14 s of loading; the tokenizer alone answers them."""
    import pytest

    pytest.importorskip("trl")
    from click.testing import CliRunner

    from envkit.cli import main
    from envkit.train import models

    def no_weights(*_):
        raise AssertionError("the model loaded before the prompts were checked")

    monkeypatch.setattr(models, "load_model", no_weights)
    tiny = find_recipe("tiny")
    text = tiny.read_text().replace("path: data/toy.jsonl", f"path: {tiny.parent / 'data' / 'toy.jsonl'}")
    (tmp_path / "long.yaml").write_text(text.replace("max_prompt_length: 32", "max_prompt_length: 2"))
    result = CliRunner().invoke(main, ["train", str(tmp_path / "long.yaml"), "--output", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "grpo.max_prompt_length: every one of the 64 prompts is longer than 2 tokens" in result.stderr
