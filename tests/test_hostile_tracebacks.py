"""Class 5 of issue #29: the inputs that ended in a traceback end in one line naming the file or field and the
fix, exit 2; and what passed `--dry-run` only to fail at training start is refused by `--dry-run`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from envkit.cli import main

RECIPES = Path(__file__).parents[1] / "recipes"
TINY = (RECIPES / "tiny.yaml").read_text()
LLAMA = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
         "vocab_size": 10}


def one_line(result, *words) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert all(word in result.stderr for word in words), result.stderr


def gone_base(run: Path) -> None:
    """An adapter whose base model folder is gone (the tiny run's base lives in a cache that was cleaned)."""
    config = {"base_model_name_or_path": str(run / "gone"), "r": 8}
    (run / "adapter" / "adapter_config.json").write_text(json.dumps(config))


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("content, words", [
    (b"not json", ["cannot read config.json: not JSON"]),
    (b"[" * 100_000, ["nested too deeply"]),
    (b"[1, 2]", ["is not a JSON object"]),
    (b"\xe9t\xe9", ["not JSON"]),
    (json.dumps({"text_config": None}).encode(), ["is not a JSON object"]),
    (json.dumps(LLAMA | {"num_attention_heads": 0}).encode(), ["num_attention_heads is 0"]),
    (json.dumps(LLAMA | {"num_attention_heads": "32"}).encode(), ["num_attention_heads is '32'"]),
    (json.dumps(LLAMA).replace("64", "NaN").encode(), ["hidden_size is nan"]),
    (json.dumps({k: v for k, v in LLAMA.items() if k != "vocab_size"}).encode(), ["vocab_size is missing"]),
])
def test_budget_model_with_a_broken_config_is_one_line(tmp_path, content, words):
    (tmp_path / "config.json").write_bytes(content)
    one_line(invoke("budget", "--model", tmp_path, "--target", "h100"), str(tmp_path), *words)


@pytest.fixture
def recipe_dir(tmp_path):
    shutil.copytree(RECIPES / "data", tmp_path / "data")
    return tmp_path


@pytest.mark.parametrize("old, new, words", [
    ("learning_rate: 2.0e-2", "learning_rate: " + "9" * 400, ["grpo.learning_rate", "(400 digits) is beyond"]),
    ("seed: 0", "seed: -1", ["seed: must be in"]),
    ("seed: 0", f"seed: {2**64}", ["seed:", "is beyond"]),
    ("Question: {question}", "{question.nope}", ["an attribute of a field"]),
    ("Question: {question}", "{question!z}", ["unknown conversion"]),
])
def test_what_failed_at_training_start_is_refused_by_dry_run(recipe_dir, old, new, words):
    recipe = recipe_dir / "r.yaml"
    assert old in TINY
    recipe.write_text(TINY.replace(old, new))
    one_line(invoke("train", recipe, "--dry-run"), *words)


def test_a_dataset_that_is_a_symlink_loop_is_one_line(recipe_dir):
    (recipe_dir / "loop.jsonl").symlink_to("loop.jsonl")
    (recipe_dir / "r.yaml").write_text(TINY.replace("data/toy.jsonl", "loop.jsonl"))
    one_line(invoke("train", recipe_dir / "r.yaml", "--dry-run"), "dataset.path")


def test_a_jsonl_line_nested_past_the_parser_is_one_line(recipe_dir):
    (recipe_dir / "deep.jsonl").write_text("[" * 100_000 + "\n")
    (recipe_dir / "r.yaml").write_text(TINY.replace("data/toy.jsonl", "deep.jsonl"))
    one_line(invoke("train", recipe_dir / "r.yaml", "--dry-run"), "dataset.path", "not a JSON object")


def test_a_five_thousand_character_recipe_name_is_one_line():
    one_line(invoke("train", "n" * 5000, "--dry-run"), "cannot look at the recipe: File name too long")


def test_a_recipe_in_another_uids_folder_is_one_line(monkeypatch):
    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "is_file", denied)
    one_line(invoke("train", "/work/recipe.yaml", "--dry-run"), "Permission denied", "docker run --user")


@pytest.mark.parametrize("manifest", [[], "x", {"generate": [], "grpo_config": 3, "plan": None},
                                      {"grpo_config": {"temperature": "hot"}}, {"grpo_config": {"top_p": 7}},
                                      {"grpo_config": {"max_completion_length": 2**40}},
                                      {"generate": {"chat_template": "yes"}}])
def test_generate_on_a_manifest_of_the_wrong_shape_is_one_line(tmp_path, manifest):
    pytest.importorskip("peft")
    (tmp_path / "adapter").mkdir()
    gone_base(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("generate", tmp_path, "hi", "--engine", "transformers")
    assert result.exit_code == 2 and "Traceback" not in result.output
    last = result.stderr.splitlines()[-1]  # the model that is not there, said before anything loads
    assert last.startswith(f"envkit generate: the base model {tmp_path / 'gone'} that ")


def test_generate_with_a_huge_sample_count_is_a_usage_error(tmp_path):
    pytest.importorskip("peft")
    (tmp_path / "adapter").mkdir()
    assert invoke("generate", tmp_path, "hi", "-n", 1099511627776).exit_code == 2


def test_generate_whose_base_model_is_gone_is_one_line(tmp_path):
    pytest.importorskip("peft")
    (tmp_path / "adapter").mkdir()
    gone_base(tmp_path)
    result = invoke("generate", tmp_path, "hi", "--engine", "transformers")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [f"envkit generate: the base model {tmp_path / 'gone'} that "
                                          f"{tmp_path / 'adapter'} was trained on is not on this machine (a run "
                                          "from an image keeps it in the image's /cache); copy it to that path"]


def test_a_trainer_state_with_a_text_max_steps_resumes_from_its_step(tmp_path):
    from envkit.train import checkpoints

    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 2, "max_steps": "x"}))
    found = checkpoints.Checkpoint(checkpoint, 2, 2)
    original = checkpoints.problem
    try:
        checkpoints.problem = lambda path: None  # the weights' checks are test_checkpoints.py's
        assert checkpoints.last_checkpoint(tmp_path) == found
    finally:
        checkpoints.problem = original


@settings(max_examples=200, deadline=None)
@given(config=st.dictionaries(st.sampled_from([*LLAMA, "num_key_value_heads", "head_dim", "text_config"]),
                              st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4),
                                        st.just({}), st.just([])), max_size=8))
def test_any_config_json_is_a_shape_or_one_named_problem(config):
    from envkit.budget.shapes import UnknownName, shape_from_config

    try:
        shape = shape_from_config(config, "m")
    except UnknownName as exc:
        assert str(exc).startswith("m: config.json")
        return
    assert shape.heads > 0 and shape.hidden > 0 and shape.head_dim >= 0


def test_a_lora_target_the_tiny_model_lacks_is_refused_by_dry_run(recipe_dir):
    targets = "[q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]"
    (recipe_dir / "r.yaml").write_text(TINY.replace(targets, "[nonexistent_proj]"))
    one_line(invoke("train", recipe_dir / "r.yaml", "--dry-run"), "lora.target_modules[0]", "'nonexistent_proj'")


def test_a_lora_target_a_loaded_model_lacks_is_one_line_not_peft_s_traceback():
    torch = pytest.importorskip("torch")
    from envkit.recipe.load import RecipeError, parse_recipe
    from envkit.train.models import _check_targets

    layer = torch.nn.Module()
    layer.q_proj, layer.up_proj = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    model = torch.nn.ModuleDict({"layers": torch.nn.ModuleList([layer])})
    recipe = parse_recipe(TINY.replace("build: tiny", "name: org/model"), str(RECIPES / "x.yaml"))
    recipe.lora.target_modules = ["q_proj", "nonexistent_proj"]
    with pytest.raises(RecipeError, match="lora.target_modules: 'nonexistent_proj' names no module of org/model "
                                          r"\(its linear layers: q_proj, up_proj\)"):
        _check_targets(recipe, model, "org/model")
    recipe.lora.target_modules = ["q_proj", "layers.0.up_proj"]
    _check_targets(recipe, model, "org/model")
