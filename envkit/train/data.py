"""The training rows: the recipe's dataset -> ``prompt`` and ``answer``, prompts that fit max_prompt_length only.

datasets is imported in here only, inside the function.
"""

from __future__ import annotations

import os

import click

from envkit.recipe.load import RecipeError, missing_columns
from envkit.recipe.schema import Recipe


def prepare_dataset(recipe: Recipe, tokenizer):
    """Rows -> ``prompt`` (text, or messages with use_chat_template) and ``answer`` for the rewards.

    TRL 1.16 no longer truncates prompts (GRPOConfig lost max_prompt_length) while vLLM's context is
    max_prompt_length + max_completion_length (envkit.recipe.derived.max_model_length): a longer prompt
    would stop the run in vLLM mid-way, so such rows are dropped here, with one warning line.
    """
    from datasets import load_dataset

    d = recipe.dataset
    if d.path:
        data = load_dataset("json", data_files=d.path, split="train")
    else:
        data = load_dataset(d.name, d.config, split=d.split)
    problem = missing_columns(d, data.column_names)
    if problem:
        raise RecipeError(f"{recipe.source}: {problem}")

    def to_prompt(row):
        text = d.prompt_template.format(**row) if d.prompt_template else row[d.prompt_field]
        if d.use_chat_template:
            system = [{"role": "system", "content": d.system_prompt}] if d.system_prompt else []
            return {"prompt": system + [{"role": "user", "content": text}], "answer": str(row[d.answer_field])}
        return {"prompt": f"{d.system_prompt}\n\n{text}" if d.system_prompt else text, "answer": str(row[d.answer_field])}

    data = data.map(to_prompt, remove_columns=data.column_names)
    return _drop_long_prompts(data, tokenizer, recipe)


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
    chat = recipe.dataset.use_chat_template
    kept = data.filter(lambda rows: [n <= limit for n in prompt_lengths(rows["prompt"], tokenizer, chat)], batched=True)
    dropped = len(data) - len(kept)
    if not len(kept):
        raise RecipeError(f"{recipe.source}: grpo.max_prompt_length: every one of the {len(data)} prompts is longer than "
                          f"{limit} tokens: raise it, or shorten dataset.prompt_template / system_prompt")
    if dropped and os.environ.get("RANK", "0") == "0":  # under accelerate launch one rank speaks
        click.echo(f"envkit train: warning: dropped {dropped} of {len(data)} prompts longer than grpo.max_prompt_length "
                   f"({limit} tokens): vLLM's context is prompt + completion length", err=True)
    return kept
