"""`envkit budget`: predict the VRAM budget of colocated GRPO and choose vLLM's share."""

from __future__ import annotations

import json
import sys

import click

USAGE = 2


@click.command()
@click.option("--model", "model", required=True, metavar="NAME_OR_CONFIG_JSON",
              help="A known model (Llama-3.2-3B-Instruct, Qwen/Qwen3-4B, ...) or a config.json / model directory.")
@click.option("--target", required=True, metavar="GPU", help="Catalog GPU: t4, l4, a100-80gb, h100, ...")
@click.option("--lora-r", default=64, show_default=True, type=click.IntRange(1))
@click.option("--dtype", default="bf16", show_default=True, type=click.Choice(["bf16", "fp16"]))
@click.option("--load-in-4bit", is_flag=True, help="Train on NF4 weights (QLoRA); vLLM keeps the dtype.")
@click.option("--num-generations", default=8, show_default=True, type=click.IntRange(1))
@click.option("--prompts-per-step", default=4, show_default=True, type=click.IntRange(1))
@click.option("--max-prompt-length", default=512, show_default=True, type=click.IntRange(1))
@click.option("--max-completion-length", default=256, show_default=True, type=click.IntRange(1))
@click.option("--micro-batch", default=4, show_default=True, type=click.IntRange(1),
              help="Sequences per forward/backward (per_device_train_batch_size).")
@click.option("--grad-checkpointing/--no-grad-checkpointing", default=True, show_default=True)
@click.option("--kv-cache-dtype", default="auto", show_default=True, type=click.Choice(["auto", "fp8"]))
@click.option("--json", "as_json", is_flag=True, help="Print the budget as JSON (schema envkit.budget/1).")
def budget(model, target, lora_r, dtype, load_in_4bit, num_generations, prompts_per_step, max_prompt_length,
           max_completion_length, micro_batch, grad_checkpointing, kv_cache_dtype, as_json) -> None:
    """Predict GPU memory of GRPO training with colocated vLLM; recommend gpu_memory_utilization and sleep mode.

    Exit codes: 0 it fits, 1 it does not (the fixes are listed), 2 usage error.
    """
    from envkit.budget.model import BudgetInputs
    from envkit.budget.recommend import recommend
    from envkit.budget.report import render, to_json
    from envkit.budget.shapes import UnknownName, resolve_gpu, resolve_model

    try:
        shape = resolve_model(model)
        gpu, memory = resolve_gpu(target)
    except (UnknownName, KeyError, ValueError) as err:
        message = err.args[0] if isinstance(err, UnknownName) else f"{model}: not a usable config.json ({err!r})"
        click.echo(f"envkit budget: {message}", err=True)
        sys.exit(USAGE)
    inputs = BudgetInputs(shape, memory, dtype, load_in_4bit, lora_r, num_generations=num_generations,
                          prompts_per_step=prompts_per_step, max_prompt_length=max_prompt_length,
                          max_completion_length=max_completion_length, micro_batch=micro_batch,
                          grad_checkpointing=grad_checkpointing, kv_cache_dtype=kv_cache_dtype)
    rec = recommend(inputs)
    click.echo(json.dumps(to_json(rec, gpu), indent=2) if as_json else render(rec, gpu))
    sys.exit(0 if rec.fits else 1)
