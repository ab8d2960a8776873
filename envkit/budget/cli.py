"""`envkit budget`: predict the VRAM budget of colocated GRPO and choose vLLM's share."""

from __future__ import annotations

import json
import sys

import click

from envkit.errors import OptionError


@click.command()
@click.argument("recipe", required=False)
@click.option("--target", metavar="GPU", help="Catalog GPU: t4, l4, a100-80gb, h100, ...  [default: this machine's GPU]")
@click.option("--model", "model", metavar="NAME_OR_CONFIG_JSON",
              help="A known model (Llama-3.2-3B-Instruct, Qwen/Qwen3-4B, ...) or a config.json / model directory; "
                   "without RECIPE it is required.")
@click.option("--lora-r", type=click.IntRange(1), help="[default: recipe's, else 64]")
@click.option("--dtype", type=click.Choice(["bf16", "fp16"]), help="[default: recipe's, else bf16]")
@click.option("--load-in-4bit", is_flag=True, default=None, help="Train on NF4 weights (QLoRA); vLLM keeps the dtype.")
@click.option("--num-generations", type=click.IntRange(1), help="[default: recipe's, else 8]")
@click.option("--prompts-per-step", type=click.IntRange(1), help="[default: recipe's, else 4]")
@click.option("--max-prompt-length", type=click.IntRange(1), help="[default: recipe's, else 512]")
@click.option("--max-completion-length", type=click.IntRange(1), help="[default: recipe's, else 256]")
@click.option("--micro-batch", type=click.IntRange(1),
              help="Sequences per forward/backward (per_device_train_batch_size).  [default: recipe's, else 4]")
@click.option("--grad-checkpointing/--no-grad-checkpointing", default=None,
              help="[default: recipe's grpo.gradient_checkpointing; auto: off where the activations fit, else on]")
@click.option("--kv-cache-dtype", type=click.Choice(["auto", "fp8"]), help="[default: recipe's, else auto]")
@click.option("--json", "as_json", is_flag=True, help="Print the budget as JSON (schema envkit.budget/1).")
def budget(recipe, target, model, as_json, **options) -> None:
    """Predict GPU memory of GRPO training with colocated vLLM; recommend gpu_memory_utilization and sleep mode.

    RECIPE is a recipe file or a shipped recipe name (grpo-llama3b); the options override its values.
    Exit codes: 0 it fits, 1 it does not (the fixes are listed), 2 usage error.
    """
    from envkit.budget.render import render, to_json

    gpu, memory, bf16 = _gpu(target)
    rec = _recommendation(recipe, model, memory, bf16, options)
    click.echo(json.dumps(to_json(rec, gpu), indent=2) if as_json else render(rec, gpu))
    sys.exit(0 if rec.fits else 1)


def _recommendation(recipe_name, model, memory, bf16, options):
    from envkit.budget.model import BudgetInputs
    from envkit.budget.recipe import budget_inputs, pinned
    from envkit.budget.recommend import recommend
    from envkit.budget.shapes import resolve_model
    from envkit.recipe.library import find_recipe
    from envkit.recipe.load import load_recipe

    overrides = {k: v for k, v in options.items() if v is not None}  # option names are BudgetInputs fields
    shape = resolve_model(model) if model else None
    if shape:
        overrides["shape"] = shape
    if recipe_name is None:
        if shape is None:
            raise OptionError("give a RECIPE (a file or a shipped name like grpo-llama3b) or --model")
        return recommend(BudgetInputs(gpu_bytes=memory, **{"dtype": "bf16" if bf16 else "fp16"} | overrides))
    recipe = load_recipe(find_recipe(recipe_name))
    return recommend(budget_inputs(recipe, memory, bf16, **overrides), *pinned(recipe))


def _gpu(target: str | None) -> tuple[str, int, bool]:
    """(name, memory in bytes, has bf16) of the --target catalog GPU, else of this machine's first visible GPU."""
    from envkit.budget.model import MIB
    from envkit.budget.shapes import resolve_gpu
    from envkit.knowledge import has_bf16

    if target:
        from envkit.knowledge import catalog_key, gpu_catalog

        name, memory = resolve_gpu(target)
        return name, memory, has_bf16(gpu_catalog()[catalog_key(target)]["compute_capability"])
    from envkit.probe import collect

    gpus = [g for g in collect().visible_gpus() if g.memory_total_mib]
    if not gpus:
        raise OptionError("no NVIDIA GPU found on this machine: pass --target GPU (t4, l4, a10g, a100-80gb, h100, ...)")
    return gpus[0].name, gpus[0].memory_total_mib * MIB, has_bf16(gpus[0].compute_capability)


