"""Before a run: the doctor's findings that matter to it, and the fallbacks they call for.

Pure over Facts and findings (no torch), so ``--dry-run`` and the tests see the same plan as a run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from packaging.utils import canonicalize_name

from envkit.budget.model import GIB, MIB
from envkit.budget.recipe import recommend_micro_batch, recommend_recipe
from envkit.budget.shapes import UnknownName
from envkit.facts import Facts
from envkit.knowledge import curated, late_vllm_gpu
from envkit.launch.plan import LaunchPlan
from envkit.recipe.load import RecipeError
from envkit.recipe.schema import Recipe
from envkit.rules import DOCTOR_CHECKS, Finding, Severity
from envkit.rules.recipe_checks import GENERATE_COST, RECIPE_CHECKS, RecipeInputs
from envkit.rules.rl import pdl_setting
from envkit.train.check_impact import blocks, informing
from envkit.train.patches import select_patches

@dataclass(frozen=True)
class Plan:
    """The run's decisions, resolved once before anything loads: what ``--dry-run`` prints, the runner follows
    and manifest.json records.  Immutable (its lists are tuples, its mappings read-only): a later stage makes a
    new plan (``dataclasses.replace``, :meth:`laid_out`) instead of changing this one."""

    use_vllm: bool
    sleep: bool
    gpu: str  # "cpu" or the first visible GPU's name
    bf16: bool
    env: Mapping[str, str] = field(default_factory=dict)  # set before triton/vllm load
    warnings: tuple[str, ...] = ()
    blocking: tuple[Finding, ...] = ()  # failures relevant to the run
    gpu_memory: int | None = None  # bytes of the GPU the run uses: sizes vLLM's share (envkit.budget)
    dtype: str = "bf16"  # the one training dtype (fp32, bf16, fp16): the weights' and GRPOConfig's bf16/fp16 flags
    patches: tuple[str, ...] = ()  # envkit's TRL patches this run applies (envkit.train.patches)
    patches_off: tuple[str, ...] = ()  # ones that would apply, turned off by --no-patch
    budget_share: float | None = None  # vLLM's share from envkit.budget (None: no budget here), for vllm...: auto
    gradient_checkpointing: bool = True  # grpo.gradient_checkpointing, auto resolved by the budget (on without one)
    micro_batch: int | None = None  # grpo.micro_batch: auto resolved by the budget; None: per_device_train_batch_size
    vllm_off: str | None = None  # why generation is model.generate ("no GPU visible", "vllm.enabled: false")
    grpo_config: Mapping[str, Any] = field(default_factory=dict)  # GRPOConfig's arguments (train.config.grpo_kwargs)
    grpo_effective: dict[str, Any] | None = None  # what the backend changes in them (train.effective; None: trl)
    launch: LaunchPlan | None = None  # the processes this machine starts (None: a rank started by one)

    def __post_init__(self) -> None:
        for name in ("warnings", "blocking", "patches", "patches_off"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("env", "grpo_config"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def laid_out(self, launch: LaunchPlan | None, findings: Iterable[Finding] = ()) -> Plan:
        """This plan with its launch layout: the launch checks' failures block it, their warnings join its own,
        and an in-process run's variables (the one training GPU it uses) join the ones it sets."""
        findings = list(findings)
        warnings = [f"{f.id} {f.title}" + (f" ({f.fix})" if f.fix else "")
                    for f in findings if f.severity is Severity.WARN]
        env = {**self.env, **launch.env} if launch is not None and launch.in_process else self.env
        return replace(self, launch=launch, env=env, warnings=self.warnings + tuple(warnings),
                       blocking=self.blocking + tuple(f for f in findings if f.severity is Severity.FAIL))

    def to_dict(self) -> dict[str, Any]:
        """The decisions as JSON data (manifest.json's "plan"); the findings, GRPOConfig's arguments and the launch
        layout are reported beside it."""
        plain = {"env": dict(self.env), **{n: list(getattr(self, n)) for n in ("warnings", "patches", "patches_off")}}
        return {f.name: plain.get(f.name, getattr(self, f.name)) for f in fields(self)
                if f.name not in ("blocking", "grpo_config", "grpo_effective", "launch")}


def training_dtype(recipe: Recipe, facts: Facts, findings: list[Finding]) -> tuple[str, str | None]:
    """(dtype, warning or None): fp32 without a GPU; model.dtype, where auto means bf16 if the GPU has it
    (the doctor's EK105), and bf16 on a GPU without it becomes fp16, so weights and mixed precision agree."""
    if not facts.visible_gpus():
        return "fp32", None
    wanted = recipe.model.dtype
    check = informing(findings, "dtype")
    has_bf16 = check is None or check.severity is Severity.OK
    if wanted == "auto":
        return ("bf16" if has_bf16 else "fp16"), None
    if wanted == "bf16" and not has_bf16:
        return "fp16", f"model.dtype: bf16 trains in fp16 here: {check.title} (set model.dtype: fp16 to silence this)"
    return wanted, None


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


def plan_run(recipe: Recipe, facts: Facts, findings: list[Finding], no_patch: tuple[str, ...] = ()) -> Plan:
    """The run's decisions, once: vLLM or not, sleep, dtype, environment, patches, what blocks it."""
    gpus = facts.visible_gpus()
    warnings: list[str] = []
    wanted = recipe.vllm.enabled is not False
    use_vllm = wanted
    if wanted:
        reason = None
        if not gpus:
            reason = "no GPU visible"
        elif facts.package("vllm") is None:
            reason = "vllm is not installed"
        elif (gpu_check := informing(findings, "vllm")) and gpu_check.severity is Severity.FAIL:
            reason = gpu_check.title
        elif recipe.backend == "unsloth" and late_vllm_gpu(gpus[0].catalog_id):
            reason = f"Unsloth turns fast_inference off on {gpus[0].catalog_id.upper()} (EK401)"
        if reason:
            use_vllm = False
            if recipe.vllm.enabled is True or gpus:
                warnings.append(f"vllm off: {reason}; {GENERATE_COST}")
    else:
        reason = "vllm.enabled: false"
    recipe_checks = [f for f in RECIPE_CHECKS.run(facts, RecipeInputs(recipe, use_vllm)) if f.severity is Severity.FAIL]
    vllm_refusal = next((f for f in recipe_checks if RECIPE_CHECKS[f.id].needs_vllm), None)
    if vllm_refusal is not None:  # --force runs without vLLM
        use_vllm, reason = False, f"{vllm_refusal.title} (--force)"
    env = {}
    pdl, setting = informing(findings, "pdl"), pdl_setting(facts)
    if use_vllm and pdl and pdl.severity is Severity.FAIL and setting:
        env[setting[0]] = setting[1]
        warnings.append(f"set {setting[0]}={setting[1]}: {pdl.title}")
    dtype, dtype_warning = training_dtype(recipe, facts, findings)
    warnings += [dtype_warning] if dtype_warning else []
    bf16 = dtype == "bf16"
    gpu_memory = gpus[0].memory_total_mib * MIB if gpus and gpus[0].memory_total_mib else None
    sleep_checks = [f for f in (informing(findings, "sleep"), informing(findings, "sleep-sync")) if f]
    # the check that speaks for sleep mode: the first one that is not OK, else vLLM's own (EK404)
    sleep_check = next((f for f in sleep_checks if f.severity is not Severity.OK), next(iter(sleep_checks), None))
    sleep_ok = sleep_check is not None and sleep_check.severity is Severity.OK
    stale_sync = informing(findings, "sleep-sync")  # a WARN: sleep mode would train on stale weights, never turned on
    stale_sync = stale_sync if stale_sync and stale_sync.severity is Severity.WARN else None
    stale = stale_sleep(recipe, stale_sync, use_vllm)
    # Sleep decided before the budget where the recipe or the checks decide it; sleep: auto, where it works,
    # sleeps only when the budget needs it (waking costs time every step).  The budget is computed once.
    can_sleep = use_vllm and recipe.vllm.mode == "colocate" and stale_sync is None
    wanted_sleep = recipe.vllm.sleep
    if wanted_sleep is True:
        decided = can_sleep  # asked for: on wherever it can run (EK404 only warns)
    elif wanted_sleep is False or not (can_sleep and sleep_ok):
        decided = False
    else:
        decided = None  # auto where sleep works: the budget decides
    budget = _budget(recipe, gpu_memory, bf16, use_vllm, warnings, decided)
    sleep = decided if decided is not None else (budget.plan.sleep if budget else sleep_ok)
    if stale is None and use_vllm and recipe.vllm.mode == "colocate" and not sleep_ok and sleep_check is not None and (
            wanted_sleep is True or (wanted_sleep == "auto" and budget is not None and not budget.fits)):
        why = "requested" if wanted_sleep is True else "would help the memory budget"
        warnings.append(f"vllm sleep mode {why} although {sleep_check.title}")
    if sleep and recipe.backend == "unsloth":  # Unsloth's own vLLM sleeps only with its standby variable set,
        env.update(curated("unsloth_vllm_standby")["env"])  # and keeps the budget's share only when told to
    if budget and not budget.fits:
        warnings.append(f"memory budget: about {budget.plan.peak / GIB:.1f} GiB at peak "
                        f"on this {gpu_memory / GIB:.0f} GiB GPU; "
                        f"`envkit budget {recipe.source}` lists what fits")
    share = budget.plan.vllm.utilization if budget and budget.plan.vllm else None
    # Which failures refuse the run: each check's impact says (envkit.train.check_impact.blocks).  The PDL check is
    # planned here: the run sets the variable, or Unsloth patches it itself, or nothing can: refused.
    shape = {"gpu": bool(gpus), "use_vllm": use_vllm, "backend": recipe.backend}
    no_pdl_switch = (use_vllm and pdl and pdl.severity in (Severity.FAIL, Severity.WARN) and not setting
                     and recipe.backend != "unsloth")
    pdl_refusal = replace(pdl, severity=Severity.FAIL) if no_pdl_switch else None
    blocking = [f for f in findings if f.severity is Severity.FAIL and blocks(DOCTOR_CHECKS[f.id], **shape)]
    blocking += recipe_checks + [f for f in (stale, pdl_refusal) if f]
    patches, patches_off = select_patches(recipe, facts, use_vllm, no_patch)
    checkpointing = recipe.grpo.gradient_checkpointing
    if checkpointing == "auto":
        checkpointing = budget.plan.inputs.grad_checkpointing if budget else True
    micro_batch = budget.plan.inputs.micro_batch if budget and recipe.grpo.micro_batch == "auto" else None
    return Plan(use_vllm, sleep, gpus[0].name if gpus else "cpu", bf16, env, warnings, blocking, gpu_memory, dtype,
                patches, patches_off, share, checkpointing, micro_batch, None if use_vllm else reason)


def stale_sleep(recipe: Recipe, check: Finding | None, use_vllm: bool) -> Finding | None:
    """A refusal when the recipe asks for sleep mode where it trains on stale weights (``check``: EK406's
    warning, TRL before the fix of huggingface/trl#5312).  Sleep is off in the plan either way, so ``--force``
    runs without it."""
    if not (check and use_vllm and recipe.vllm.sleep is True and recipe.vllm.mode == "colocate"):
        return None
    return replace(check, severity=Severity.FAIL, fix=f"{check.fix}  (with --force: sleep off)")


def _budget(recipe: Recipe, gpu_memory: int | None, bf16: bool, use_vllm: bool, warnings: list[str],
            sleep: bool | None = None):
    """envkit.budget's recommendation for this recipe on this GPU; None without a GPU or a known model shape."""
    if gpu_memory is None:
        return None
    try:
        recommend = recommend_micro_batch if recipe.grpo.micro_batch == "auto" else recommend_recipe
        return recommend(recipe, gpu_memory, bf16, sleep, use_vllm=use_vllm)
    except UnknownName:
        warnings.append(f"no memory budget: {recipe.model.name} is neither a local model folder nor a known shape; "
                        "vllm.gpu_memory_utilization auto falls back to TRL's default 0.3")
        return None
