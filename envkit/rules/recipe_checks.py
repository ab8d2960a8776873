"""Checks of a recipe against the facts (EK407, EK408): `envkit train`'s preflight runs them once it knows whether
the run generates with vLLM; `envkit doctor`, which takes no recipe, only documents them (``--explain EK407``)."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.utils import canonicalize_name
from packaging.version import Version

from envkit.facts import Facts
from envkit.knowledge import curated
from envkit.recipe.schema import Recipe
from envkit.rules.base import Outcome, Rule, fail, ok, rule, skip
from envkit.rules.registry import Registry

RECIPE_CHECKS: Registry[Rule] = Registry("recipe checks")
# What a run falls back to without vLLM: said in the fix of every check that turns vLLM off.
GENERATE_COST = ("generation falls back to model.generate, several times slower per step "
                 "(about 6x on a 205M model, 32x256 tokens)")


@dataclass(frozen=True)
class RecipeInputs:
    """What the recipe checks read besides Facts."""

    recipe: Recipe
    use_vllm: bool  # the run would generate with vLLM (before these checks)


@rule("EK407", "vllm-bnb-plugin", "rl", RECIPE_CHECKS, needs_vllm=True)
def vllm_bnb_plugin(facts: Facts, inputs: RecipeInputs) -> Outcome:
    """A 4-bit model generating with vLLM 0.28+ has vllm-bnb-plugin installed.

    vLLM 0.28 moved bitsandbytes out of tree into a plugin package (curated.json ``vllm_bnb_plugin``);
    without it the colocated vLLM (TRL passes ``quantization="bitsandbytes"`` for a 4-bit model, Unsloth's
    fast_inference too) dies at start-up, after the model has loaded, with ``Unknown quantization method:
    bitsandbytes``.  A refusal, not a silent fallback: whoever asked for 4-bit with vLLM wants the fast path,
    the fix is one small pip install, and falling back to model.generate would make every step of the run
    several times slower.  With ``--force`` the run goes on without vLLM (the preflight turns it off), never
    into the crash.
    """
    vllm = facts.package("vllm")
    if not (inputs.recipe.model.load_in_4bit and inputs.use_vllm and vllm):
        return skip("no 4-bit model generating with vLLM")
    need = curated("vllm_bnb_plugin")
    plugin = need["package"]
    if Version(vllm.version).release < Version(need["vllm_min"]).release:
        return ok(f"vllm {vllm.version} has bitsandbytes in tree")
    if canonicalize_name(plugin) in facts.installed:
        return ok(f"{plugin} installed beside vllm {vllm.version}")
    return fail(f"4-bit generation with vllm {vllm.version} needs {plugin} "
                f"(bitsandbytes left vLLM in {need['vllm_min']})",
                f"model.load_in_4bit: true, vllm {vllm.version}, {plugin} not installed",
                f"pip install {plugin}  (with --force: no vLLM, {GENERATE_COST})", (plugin,))


@rule("EK408", "trl-4bit-merge-sync", "rl", RECIPE_CHECKS, needs_vllm=True)
def trl_4bit_merge_sync(facts: Facts, inputs: RecipeInputs) -> Outcome:
    """A 4-bit (bitsandbytes) policy does not generate with vLLM on backend trl: TRL's weight sync drifts it.

    TRL sends vLLM the LoRA merged into the base weights and unmerges it after (curated.json
    ``trl_4bit_merge_sync``); on NF4 layers every merge and unmerge re-quantizes, so the trained weights drift
    each step and the sampler leaves the trainer (measured on an H200: reward flat, sampler gap 0.38 at step 2,
    0.88 by step 16; bf16 learns on the same seed).  Unsloth's 4-bit path merges into its own engine and learns.
    A refusal: with ``--force`` the run goes on without vLLM, never into the drift.
    """
    recipe = inputs.recipe
    if not (recipe.model.load_in_4bit and inputs.use_vllm and recipe.backend == "trl"):
        return skip("no 4-bit model generating with vLLM on backend trl")
    trl = facts.package("trl")
    checked = ", ".join(curated("trl_4bit_merge_sync")["checked_trl"])
    return fail("TRL's vLLM weight sync re-quantizes a 4-bit policy every step: the run would not learn",
                f"model.load_in_4bit: true, backend trl{f' (trl {trl.version})' if trl else ''}, vLLM generation; "
                f"seen with trl {checked}",
                "model.load_in_4bit: false (`envkit budget` says whether bf16 fits), or backend: unsloth, or "
                f"vllm.enabled: false  (with --force: no vLLM, {GENERATE_COST})")
