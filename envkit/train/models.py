"""The policy model for a run (TRL + PEFT, or Unsloth) and the merged model after it.  torch is imported in here only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envkit.errors import RecipeError
from envkit.files import fresh_dir, replace_dir
from envkit.recipe.schema import Recipe
from envkit.train.config import unsloth_model_kwargs, unsloth_peft_kwargs
from envkit.train.plan import Plan


def model_source(recipe: Recipe) -> str:
    """The hub name or local folder the base model loads from (model.build: tiny builds it once, cached)."""
    if recipe.model.build == "tiny":
        from envkit.train.tiny import build_tiny

        return str(build_tiny(seed=recipe.seed))
    return recipe.model.name


def name_base_in_card(trainer, recipe: Recipe) -> None:
    """TRL's model card (OUTPUT/README.md, written with each checkpoint) with the recipe's base model.

    TRL takes the base from the model's config and writes None for a local folder (the tiny model, a
    downloaded copy): the card then says "a fine-tuned version of [None]".  Its create_model_card runs with
    the config naming the recipe's model: a hub name as it is, a folder or model.build as a label TRL keeps.
    """
    import os

    name = recipe.model.name
    base = (f"envkit {recipe.model.build} model (model.build, seed {recipe.seed})" if name is None
            else f"{name} (a local folder)" if os.path.isdir(name) else name)
    write = trainer.create_model_card

    def create_model_card(*args, **kwargs):
        config = trainer.model.config
        kept, config._name_or_path = config._name_or_path, base
        try:
            write(*args, **kwargs)
        finally:
            config._name_or_path = kept

    trainer.create_model_card = create_model_card


def torch_dtype(plan: Plan):
    """The plan's training dtype (envkit.train.decisions.training_dtype) as a torch dtype."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[plan.dtype]


def import_unsloth():
    """unsloth's FastLanguageModel, imported before trl, transformers and peft: importing it patches them
    (TRL's GRPOTrainer and GRPOConfig become Unsloth's).  A failing import is one line, not a traceback."""
    try:
        from unsloth import FastLanguageModel
    except Exception as exc:
        raise RecipeError(f"backend: unsloth: cannot import unsloth: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    return FastLanguageModel


def load_tokenizer(recipe: Recipe, source: str):
    """The tokenizer alone (seconds, no weights): the runner checks the prompts' lengths with it before the model
    loads (issue #24: a prompt over max_prompt_length surfaced after 14 s of loading)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, trust_remote_code=recipe.model.trust_remote_code)


def load_model(recipe: Recipe, plan: Plan, source: str) -> tuple[Any, Any, Any]:
    """(model, tokenizer, peft_config for GRPOTrainer).  Unsloth wraps the LoRA itself, so its config is None."""
    if recipe.backend == "unsloth":
        model, tokenizer = _load_unsloth(recipe, plan, source)
        return model, tokenizer, None
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    m, lora = recipe.model, recipe.lora
    dtype = torch_dtype(plan)
    extra = {}
    if m.load_in_4bit:
        from transformers import BitsAndBytesConfig

        extra["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, trust_remote_code=m.trust_remote_code, **extra)
    tokenizer = load_tokenizer(recipe, source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    _check_targets(recipe, model, source)
    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=lora.target_modules, task_type="CAUSAL_LM")
    return model, tokenizer, peft_config


def _check_targets(recipe: Recipe, model, source: str) -> None:
    """Each lora.target_modules name matches a module of the loaded model as PEFT matches it (the whole name or
    its last parts); else one line now, not PEFT's traceback from inside GRPOTrainer."""
    names = [name for name, _ in model.named_modules()]
    for target in recipe.lora.target_modules:
        if target != "all-linear" and not any(n == target or n.endswith(f".{target}") for n in names):
            leaves = sorted({n.rpartition(".")[2] for n, m in model.named_modules() if type(m).__name__ == "Linear"})
            raise RecipeError(f"{recipe.source}: lora.target_modules: {target!r} names no module of {source} "
                              f"(its linear layers: {', '.join(leaves[:12]) or 'none found'})")


def _load_unsloth(recipe: Recipe, plan: Plan, source: str):
    """FastLanguageModel.from_pretrained + get_peft_model; training then goes through envkit's GRPOConfig
    arguments, which Unsloth's generated UnslothGRPOConfig changes where they leave a field unset (and older
    Unsloths over explicit values too): envkit.train.effective pins TRL's values, sets back what is overwritten
    anyway, and shows the rest.

    What Unsloth's patched GRPOTrainer does with our GRPOConfig (unsloth/models/rl.py, patch_functions,
    "Set use_vllm if not set"): a model with a ``vllm_engine`` (fast_inference) forces ``use_vllm=True`` and
    ``vllm_mode="colocate"`` and generates with that engine instead of starting TRL's own, so passing
    ``use_vllm`` is not required; envkit passes the plan's value, equal to ``fast_inference``, so the two
    never disagree.  Sleep mode is Unsloth's "standby": the variable the plan puts in plan.env
    (curated.json ``unsloth_vllm_standby``) before unsloth is imported, after which Unsloth sets
    ``vllm_enable_sleep_mode=True`` itself, matching the plan's; the same entry keeps our
    gpu_memory_utilization, which Unsloth replaces in standby by its own 0.88 otherwise.  TRL's other vllm_*
    sizes go unused: Unsloth sized its engine from max_lora_rank and gpu_memory_utilization here.
    """
    fast = import_unsloth()
    model, tokenizer = fast.from_pretrained(**unsloth_model_kwargs(recipe, plan, source), dtype=torch_dtype(plan))
    return fast.get_peft_model(model, **unsloth_peft_kwargs(recipe)), tokenizer


def merge_adapter(recipe: Recipe, plan: Plan, source: str, adapter: Path, target: Path, tokenizer) -> Path:
    """``target``: the base model with the LoRA adapter merged in (PEFT ``merge_and_unload``) and the tokenizer.

    The base is loaded afresh, on the CPU (the GPU still holds the trainer and vLLM), in the training
    dtype and unquantized: a run on a 4-bit base (model.load_in_4bit) merges into bf16/fp16 weights, since
    folding the adapter into 4-bit weights would round most of it away again.  A hub checkpoint that is
    itself stored in 4-bit (``*-bnb-4bit``) loads quantized whatever we ask; its merge is PEFT's lossy one.
    Written to ``target``.partial and renamed, so a ``target`` folder is always complete.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype(plan), trust_remote_code=recipe.model.trust_remote_code)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    partial = target.with_name(target.name + ".partial")
    fresh_dir(partial)  # a leftover, or a link planted there: never written through
    merged.save_pretrained(str(partial))
    tokenizer.save_pretrained(str(partial))
    replace_dir(partial, target)
    return target
