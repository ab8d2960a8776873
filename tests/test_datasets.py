"""Datasets (#14): local .jsonl/.json/.parquet/.csv, conversational prompts, evaluation rows (eval_path, eval_split,
test_size), checked at load where they can be and prepared into prompt/answer rows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from envkit.recipe.load import RecipeError, parse_recipe

TOY = Path(__file__).resolve().parents[1] / "recipes" / "data" / "toy.jsonl"
ROWS = [json.loads(line) for line in TOY.read_text().splitlines()]
RECIPE = """version: 1
model: {{build: tiny}}
dataset:
  {dataset}
  prompt_template: "Question: {{question}}\\nAnswer:"
  use_chat_template: false
rewards: [{{name: length}}]
grpo: {{num_generations: 4, per_device_train_batch_size: 4, max_prompt_length: 64{grpo}}}
"""


def recipe(tmp_path: Path, dataset: str, grpo: str = ""):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.format(dataset=dataset.replace("\n", "\n  "), grpo=grpo))
    return parse_recipe(path.read_text(), str(path))


@pytest.mark.parametrize("dataset, message", [
    (f"path: {TOY}\neval_path: {TOY}\ntest_size: 0.1",
     "dataset.test_size: give at most one of eval_path, eval_split and test_size"),
    (f"path: {TOY}\neval_split: test", "dataset.eval_split: a split of the registry dataset needs dataset.name"),
    (f"path: {TOY}\ntest_size: 1.5", "dataset.test_size: a fraction below 1 or a whole count of rows, got 1.5"),
    (f"path: {TOY}\ntest_size: 0", "dataset.test_size: must be greater than 0"),
    ("path: rows.txt", "dataset.path: rows.txt: not a dataset file datasets can read; use .jsonl, .json, .parquet"),
    (f"path: {TOY}\neval_path: nowhere.csv", "dataset.eval_path: no such file:"),
])
def test_dataset_mistakes_are_one_line(tmp_path, dataset, message):
    with pytest.raises(RecipeError) as caught:
        recipe(tmp_path, dataset)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_an_eval_strategy_needs_rows_to_evaluate(tmp_path):
    with pytest.raises(RecipeError, match="grpo.eval_strategy: nothing to evaluate: give dataset.eval_path"):
        recipe(tmp_path, f"path: {TOY}", ", eval_strategy: steps")
    assert recipe(tmp_path, f"path: {TOY}\ntest_size: 8", ", eval_strategy: steps").dataset.test_size == 8


def test_a_csv_header_is_checked_like_a_jsonl_row(tmp_path):
    (tmp_path / "rows.csv").write_text("prompt,answer\n1+1,2\n")
    with pytest.raises(RecipeError, match="dataset has no field 'question' .* in the first row of"):
        recipe(tmp_path, "path: rows.csv")


HAVE_DATASETS = all(importlib.util.find_spec(n) for n in ("datasets", "transformers", "torch"))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from envkit.train.tiny import build_tiny

    return AutoTokenizer.from_pretrained(str(build_tiny(seed=0)))


def write(tmp_path: Path, suffix: str, rows: list[dict]) -> str:
    import datasets

    data, path = datasets.Dataset.from_list(rows), tmp_path / f"rows{suffix}"
    {".parquet": data.to_parquet, ".csv": data.to_csv, ".json": data.to_json}[suffix](str(path))
    return path.name


@pytest.mark.skipif(not HAVE_DATASETS, reason="needs datasets, transformers, torch")
@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json"])
def test_local_files_of_each_format_give_the_same_prompts(tmp_path, tokenizer, suffix):
    from envkit.train.data import prepare_dataset

    name = write(tmp_path, suffix, ROWS)
    train, held_out = prepare_dataset(recipe(tmp_path, f"path: {name}"), tokenizer)
    expected, _ = prepare_dataset(recipe(tmp_path, f"path: {TOY}"), tokenizer)
    assert held_out is None and train["prompt"] == expected["prompt"] and train["answer"] == expected["answer"]


@pytest.mark.skipif(not HAVE_DATASETS, reason="needs datasets, transformers, torch")
def test_test_size_holds_rows_out_and_eval_path_reads_its_own(tmp_path, tokenizer):
    from envkit.train.data import prepare_dataset

    train, held_out = prepare_dataset(recipe(tmp_path, f"path: {TOY}\ntest_size: 8"), tokenizer)
    assert (len(train), len(held_out)) == (len(ROWS) - 8, 8)
    assert not set(held_out["prompt"]) & set(train["prompt"]) or len({r["question"] for r in ROWS}) < len(ROWS)
    fraction = prepare_dataset(recipe(tmp_path, f"path: {TOY}\ntest_size: 0.25"), tokenizer)[1]
    assert len(fraction) == len(ROWS) // 4
    name = write(tmp_path, ".parquet", ROWS[:5])
    assert len(prepare_dataset(recipe(tmp_path, f"path: {TOY}\neval_path: {name}"), tokenizer)[1]) == 5
    with pytest.raises(RecipeError, match=f"test_size: {len(ROWS)} rows held out leaves none"):
        prepare_dataset(recipe(tmp_path, f"path: {TOY}\ntest_size: {len(ROWS)}"), tokenizer)


@pytest.mark.skipif(not HAVE_DATASETS, reason="needs datasets, transformers, torch")
def test_a_messages_column_is_a_conversational_prompt(tmp_path, tokenizer):
    """The messages up to the user's turn, with the system prompt first; a tokenizer without a chat template
    is one line naming the column."""
    from envkit.train import data as data_module

    rows = [{"messages": [{"role": "user", "content": f"{i}+{i}?"}, {"role": "assistant", "content": str(2 * i)}],
             "answer": str(2 * i)} for i in range(6)]
    name = write(tmp_path, ".parquet", rows)
    conversational = recipe(tmp_path, f"path: {name}\nprompt_field: messages\nsystem_prompt: Be brief.")
    conversational.dataset.prompt_template = None
    loaded = data_module._load(conversational.dataset, conversational.dataset.path, "train")
    prompts = data_module._prompts(conversational, loaded)
    assert prompts[1]["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"}]
    assert prompts[1]["answer"] == "2"
    no_template = "dataset.prompt_field: 'messages' holds chat messages, but the model's tokenizer has no chat template"
    with pytest.raises(RecipeError, match=no_template):
        data_module.prepare_dataset(conversational, tokenizer)
