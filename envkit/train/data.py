"""The training (and evaluation) rows: the recipe's dataset -> ``prompt`` and ``answer``, prompts that fit
max_prompt_length only.

A dataset is a local file (.jsonl, .json, .parquet, .csv) or a registry dataset by name, config and split.
The prompt column holds text (or a row formatted by prompt_template) or chat messages (conversational).
datasets is imported in here only, inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from envkit.errors import RecipeError
from envkit.recipe.dataset import DATA_FORMATS, missing_columns
from envkit.recipe.schema import DatasetSpec, Recipe


def prepare_dataset(recipe: Recipe, tokenizer):
    """(train rows, evaluation rows or None): each row ``prompt`` (text, or messages) and ``answer`` for the rewards.

    TRL 1.16 no longer truncates prompts (GRPOConfig lost max_prompt_length) while vLLM's context is
    max_prompt_length + max_completion_length (envkit.recipe.derived.max_model_length): a longer prompt
    would stop the run in vLLM mid-way, so such rows are dropped here, with one warning line.
    """
    d = recipe.dataset
    train = _prompts(recipe, _load(d, d.path, d.split))
    held_out = None
    if d.eval_path or d.eval_split:
        held_out = _prompts(recipe, _load(d, d.eval_path, d.eval_split))
    elif d.test_size:
        size = d.test_size if d.test_size < 1 else int(d.test_size)
        if isinstance(size, int) and size >= len(train):
            raise RecipeError(f"{recipe.source}: dataset.test_size: {size} rows held out leaves none of the "
                              f"{len(train)} to train on")
        parts = train.train_test_split(test_size=size, seed=recipe.seed)
        train, held_out = parts["train"], parts["test"]
    train = _drop_long_prompts(train, tokenizer, recipe)
    return train, None if held_out is None else _drop_long_prompts(held_out, tokenizer, recipe)


def _load(d: DatasetSpec, path: str | None, split: str):
    from datasets import load_dataset

    if path:
        return load_dataset(DATA_FORMATS[Path(path).suffix.lower()], data_files=path, split="train")
    return load_dataset(d.name, d.config, split=split)


def _prompts(recipe: Recipe, data):
    from datasets import Value

    d = recipe.dataset
    problem = missing_columns(d, data.column_names)
    if problem:
        raise RecipeError(f"{recipe.source}: {problem}")
    system = [{"role": "system", "content": d.system_prompt}] if d.system_prompt else []

    def to_prompt(row):
        answer = str(row[d.answer_field])
        value = row[d.prompt_field] if not d.prompt_template else None
        if isinstance(value, list):  # conversational: the messages up to the last turn that is not the assistant's
            messages = [{"role": m["role"], "content": m["content"]} for m in value]
            while messages and messages[-1]["role"] == "assistant":
                messages.pop()
            first = system if not messages or messages[0]["role"] != "system" else []
            return {"prompt": first + messages, "answer": answer}
        text = d.prompt_template.format(**row) if d.prompt_template else value
        if d.use_chat_template:
            return {"prompt": system + [{"role": "user", "content": text}], "answer": answer}
        return {"prompt": f"{d.system_prompt}\n\n{text}" if d.system_prompt else text, "answer": answer}

    try:
        mapped = data.map(to_prompt, remove_columns=data.column_names)
    except (KeyError, TypeError) as exc:  # a messages column whose items are not {role, content} mappings
        raise RecipeError(f"{recipe.source}: dataset.prompt_field: {d.prompt_field!r} holds neither text nor chat "
                          f"messages ([{{role, content}}, ...]): {type(exc).__name__}: {exc}") from None
    # map keeps a replaced column's type: a CSV's or Parquet's numeric answer column would stay numeric
    return mapped if mapped.features["answer"].dtype == "string" else mapped.cast_column("answer", Value("string"))


def prompt_lengths(prompts: list, tokenizer, chat: bool) -> list[int]:
    """Prompt token counts as TRL 1.16's GRPOTrainer tokenizes them (_tokenize_prompts): chat prompts
    through the chat template with the generation prompt, text prompts through the tokenizer as is."""
    if chat:
        ids = tokenizer.apply_chat_template(prompts, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    else:
        ids = tokenizer(text=prompts)["input_ids"]
    return [len(i) for i in ids]


def _drop_long_prompts(data, tokenizer, recipe: Recipe):
    limit = recipe.grpo.max_prompt_length
    chat = len(data) > 0 and isinstance(data[0]["prompt"], list)
    if chat and not tokenizer.chat_template:
        why = "dataset.use_chat_template: true" if recipe.dataset.use_chat_template else \
            f"dataset.prompt_field: {recipe.dataset.prompt_field!r} holds chat messages"
        raise RecipeError(f"{recipe.source}: {why}, but the model's tokenizer has no chat template: use a model with "
                          "one (an -Instruct model), or text prompts (use_chat_template: false and a text column)")
    kept = data.filter(lambda rows: [n <= limit for n in prompt_lengths(rows["prompt"], tokenizer, chat)], batched=True)
    dropped = len(data) - len(kept)
    if not len(kept):
        raise RecipeError(f"{recipe.source}: grpo.max_prompt_length: every one of the {len(data)} prompts is longer than "
                          f"{limit} tokens: raise it, or shorten dataset.prompt_template / system_prompt")
    if dropped and os.environ.get("RANK", "0") == "0":  # under accelerate launch one rank speaks
        click.echo(f"envkit train: warning: dropped {dropped} of {len(data)} prompts longer than grpo.max_prompt_length "
                   f"({limit} tokens): vLLM's context is prompt + completion length", err=True)
    return kept
