"""The run's decisions, one small function each: vLLM on or off, sleep mode, the training dtype, the environment,
vLLM's memory share, what refuses the run.  envkit.train.plan calls them in order and freezes the result.

Pure over the recipe, Facts and the doctor's findings (no torch), so ``--dry-run`` and the tests see the same
decisions as a run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from packaging.utils import canonicalize_name

from envkit.budget.recipe import gpu_dtype, recommend_micro_batch, recommend_recipe
from envkit.budget.recommend import Recommendation
from envkit.budget.shapes import UnknownName
from envkit.errors import RecipeError
from envkit.facts import Facts
from envkit.knowledge import curated, late_vllm_gpu, load
from envkit.recipe.schema import Recipe
from envkit.rules import REGISTRY, Finding, Severity
from envkit.rules.rl import pdl_setting
from envkit.rules.run import GENERATE_COST, RUN_REGISTRY, RunInputs, run_run_rules
from envkit.train.effective import trl_defaults


def informing(findings: list[Finding], decision: str) -> Finding | None:
    """The finding of the doctor's check that informs ``decision`` (envkit.rules.base.DECISIONS), if it ran."""
    return next((f for f in findings if f.id in REGISTRY and REGISTRY[f.id].decides == decision), None)


def check_packages(recipe: Recipe, facts: Facts) -> None:
    """What the recipe names that must be installed, from the probed metadata, before anything heavy loads:
    ``backend: unsloth`` needs unsloth; each ``output.report_to`` integration its package (transformers would
    say so only after the model has loaded)."""
    if recipe.backend == "unsloth" and facts.package("unsloth") is None:
        raise RecipeError(f"{recipe.source}: backend: unsloth needs unsloth, which is not installed here: "
                          "pip install unsloth (or use backend: trl)")
    known = curated("report_to_packages")["integrations"]
    for name in recipe.output.report_to:
        if name in ("none", "all"):  # all: whichever integrations are installed (transformers decides)
            continue
        if name not in known:
            raise RecipeError(f"{recipe.source}: output.report_to: unknown integration {name!r} "
                              f"(known: {', '.join(sorted(known))})")
        choices = known[name]  # alternatives; one of them "a+b" needs both
        if choices and not any(all(canonicalize_name(p) in facts.installed for p in c.split("+")) for c in choices):
            raise RecipeError(f"{recipe.source}: output.report_to: {name} needs {' or '.join(choices)}, "
                              "which is not installed: "
                              f"pip install {' '.join(choices[0].split('+'))} (or remove {name} from output.report_to)")


def vllm_off_reason(recipe: Recipe, facts: Facts, findings: list[Finding]) -> str | None:
    """Why generation cannot use vLLM here (then it is model.generate); None where it can."""
    if recipe.vllm.enabled is False:
        return "vllm.enabled: false"
    gpus = facts.visible_gpus()
    if not gpus:
        return "no GPU visible"
    if facts.package("vllm") is None:
        return "vllm is not installed"
    gpu_check = informing(findings, "vllm")
    if gpu_check and gpu_check.severity is Severity.FAIL:
        return gpu_check.title
    if recipe.backend == "unsloth" and late_vllm_gpu(gpus[0].catalog_id):
        return f"Unsloth turns fast_inference off on {gpus[0].catalog_id.upper()} (EK401)"
    return None


def vllm_off_warning(recipe: Recipe, facts: Facts, reason: str | None) -> str | None:
    """Said when vLLM was wanted but is off: always where the recipe asked for it, else only on a GPU."""
    if reason is None or recipe.vllm.enabled is False or not (recipe.vllm.enabled is True or facts.visible_gpus()):
        return None
    return f"vllm off: {reason}; {GENERATE_COST}"


def recipe_refusals(recipe: Recipe, facts: Facts, use_vllm: bool) -> list[Finding]:
    """The failures of the recipe's own checks (envkit.rules.run) for a run with or without vLLM."""
    return [f for f in run_run_rules(facts, RunInputs(recipe, use_vllm)) if f.severity is Severity.FAIL]


def forced_off(refusals: list[Finding]) -> str | None:
    """Why vLLM goes off under ``--force``: a refusal that needs vLLM to matter (the run then goes without it)."""
    refusal = next((f for f in refusals if RUN_REGISTRY[f.id].needs_vllm), None)
    return None if refusal is None else f"{refusal.title} (--force)"


def pdl_env(facts: Facts, findings: list[Finding], use_vllm: bool) -> tuple[dict[str, str], str | None]:
    """(variables, warning): the switch that turns vLLM's LoRA PDL off where the doctor's EK402 fails and one works."""
    pdl, setting = informing(findings, "pdl"), pdl_setting(facts)
    if use_vllm and pdl and pdl.severity is Severity.FAIL and setting:
        return {setting[0]: setting[1]}, f"set {setting[0]}={setting[1]}: {pdl.title}"
    return {}, None


def training_dtype(recipe: Recipe, facts: Facts, findings: list[Finding]) -> tuple[str, str | None]:
    """(dtype, warning or None): fp32 without a GPU; on one, model.dtype as envkit.budget.recipe.gpu_dtype reads it
    (whether the GPU has bf16: the doctor's EK105), with a warning where a written bf16 becomes fp16."""
    if not facts.visible_gpus():
        return "fp32", None
    check = informing(findings, "dtype")
    dtype = gpu_dtype(recipe.model.dtype, has_bf16=check is None or check.severity is Severity.OK)
    if recipe.model.dtype == "bf16" and dtype == "fp16":
        return dtype, f"model.dtype: bf16 trains in fp16 here: {check.title} (set model.dtype: fp16 to silence this)"
    return dtype, None


@dataclass(frozen=True)
class SleepChecks:
    """What the doctor's checks say about vLLM's sleep mode here."""

    speaking: Finding | None  # the first one that is not OK, else vLLM's own (EK404)
    works: bool  # that one is OK
    stale_sync: Finding | None  # EK406's warning: sleep mode would train on stale weights (never turned on)

    @classmethod
    def of(cls, findings: list[Finding]) -> SleepChecks:
        checks = [f for f in (informing(findings, "sleep"), informing(findings, "sleep-sync")) if f]
        speaking = next((f for f in checks if f.severity is not Severity.OK), next(iter(checks), None))
        stale = informing(findings, "sleep-sync")
        return cls(speaking, speaking is not None and speaking.severity is Severity.OK,
                   stale if stale and stale.severity is Severity.WARN else None)


def sleep_before_budget(recipe: Recipe, checks: SleepChecks, use_vllm: bool) -> bool | None:
    """Sleep mode where the recipe or the checks decide it; None for ``sleep: auto`` where it works: the budget
    decides (it sleeps only when memory needs it: waking costs time every step)."""
    can_sleep = use_vllm and recipe.vllm.mode == "colocate" and checks.stale_sync is None
    if recipe.vllm.sleep is True:
        return can_sleep  # asked for: on wherever it can run (EK404 only warns)
    if recipe.vllm.sleep is False or not (can_sleep and checks.works):
        return False
    return None


def stale_sleep(recipe: Recipe, check: Finding | None, use_vllm: bool) -> Finding | None:
    """A refusal when the recipe asks for sleep mode where it trains on stale weights (``check``: EK406's
    warning, TRL before the fix of huggingface/trl#5312).  Sleep is off in the plan either way, so ``--force``
    runs without it."""
    if not (check and use_vllm and recipe.vllm.sleep is True and recipe.vllm.mode == "colocate"):
        return None
    return replace(check, severity=Severity.FAIL, fix=f"{check.fix}  (with --force: sleep off)")


def sleep_warning(recipe: Recipe, checks: SleepChecks, use_vllm: bool, budget: Recommendation | None) -> str | None:
    """Said when sleep mode is asked for (or would help the budget) although the checks say it does not work."""
    wanted = recipe.vllm.sleep
    if (stale_sleep(recipe, checks.stale_sync, use_vllm) is None and use_vllm and recipe.vllm.mode == "colocate"
            and not checks.works and checks.speaking is not None
            and (wanted is True or (wanted == "auto" and budget is not None and not budget.fits))):
        why = "requested" if wanted is True else "would help the memory budget"
        return f"vllm sleep mode {why} although {checks.speaking.title}"
    return None


def memory_budget(recipe: Recipe, gpu_memory: int | None, bf16: bool, use_vllm: bool,
                  sleep: bool | None) -> tuple[Recommendation | None, str | None]:
    """(envkit.budget's recommendation for this recipe on this GPU, warning): None without a GPU or a known
    model shape.  Computed once: sleep, the share, checkpointing and the micro-batch all come from it."""
    if gpu_memory is None:
        return None, None
    try:
        recommend = recommend_micro_batch if recipe.grpo.micro_batch == "auto" else recommend_recipe
        return recommend(recipe, gpu_memory, bf16, sleep, use_vllm=use_vllm), None
    except UnknownName:
        return None, (f"no memory budget: {recipe.model.name} is neither a local model folder nor a known shape; "
                      "vllm.gpu_memory_utilization auto falls back to TRL's default "
                      f"{trl_defaults()['vllm_gpu_memory_utilization']}")


def vllm_utilization(recipe: Recipe, budget: Recommendation | None) -> float:
    """``vllm.gpu_memory_utilization``, resolved once for the trainer, Unsloth and the server alike: the recipe's
    number; for auto, a server on its own GPUs takes TRL's server default (knowledge/launch.json), colocated
    vLLM the budget's share, or TRL's GRPOConfig default without a budget (no GPU memory known, no model shape)."""
    v = recipe.vllm
    if v.gpu_memory_utilization != "auto":
        return v.gpu_memory_utilization
    if v.mode == "server":
        return load("launch")["server_gpu_memory_utilization"]["value"]
    if budget is not None and budget.plan.vllm:
        return budget.plan.vllm.utilization
    return trl_defaults()["vllm_gpu_memory_utilization"]


def budget_warning(recipe: Recipe, budget: Recommendation | None, gpu_memory: int | None) -> str | None:
    if budget is None or budget.fits:
        return None
    from envkit.budget.model import GIB

    return (f"memory budget: about {budget.plan.peak / GIB:.1f} GiB at peak on this {gpu_memory / GIB:.0f} GiB GPU; "
            f"`envkit budget {recipe.source}` lists what fits")


def checkpointing(recipe: Recipe, budget: Recommendation | None) -> bool:
    """grpo.gradient_checkpointing: auto resolved by the budget (on without one)."""
    wanted = recipe.grpo.gradient_checkpointing
    if wanted != "auto":
        return wanted
    return budget.plan.inputs.grad_checkpointing if budget else True


def micro_batch(recipe: Recipe, budget: Recommendation | None) -> int | None:
    """grpo.micro_batch: auto resolved by the budget; None: per_device_train_batch_size."""
    return budget.plan.inputs.micro_batch if budget and recipe.grpo.micro_batch == "auto" else None


def doctor_refusals(recipe: Recipe, facts: Facts, findings: list[Finding], use_vllm: bool) -> list[Finding]:
    """The doctor's failures that refuse this run: each check's metadata says (envkit.rules.base.Rule.blocks)."""
    shape = {"gpu": bool(facts.visible_gpus()), "use_vllm": use_vllm, "backend": recipe.backend}
    return [f for f in findings if f.severity is Severity.FAIL and REGISTRY[f.id].blocks(**shape)]


def pdl_refusal(recipe: Recipe, facts: Facts, findings: list[Finding], use_vllm: bool) -> Finding | None:
    """The PDL check, planned here: the run sets the variable (pdl_env), or Unsloth patches it itself, or nothing
    can: refused."""
    pdl = informing(findings, "pdl")
    if (use_vllm and pdl and pdl.severity in (Severity.FAIL, Severity.WARN) and not pdl_setting(facts)
            and recipe.backend != "unsloth"):
        return replace(pdl, severity=Severity.FAIL)
    return None
