"""The run's plan: every decision `envkit train` makes before anything loads, made once by :func:`build_plan`.

One pure function from the recipe, the machine's facts and the command line's options to a frozen :class:`Plan`:
the decisions (envkit.train.decisions), GRPOConfig's arguments, what the backend changes in them and the launch
layout with its checks, all before the plan is frozen.  What probes the machine (envkit.probe, the launch
probe of envkit.launch.machine, the hub check of envkit.train.readiness) runs outside it; inside, only a local
model folder's config.json is read (the model's shape, as `envkit budget` reads it).  ``--dry-run`` prints the
plan, the runner follows it and manifest.json records it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from envkit.budget.model import MIB
from envkit.errors import OptionError
from envkit.facts import Facts
from envkit.knowledge import curated
from envkit.launch.checks import LaunchInputs, LaunchProbe, run_launch_rules
from envkit.launch.layout import LaunchLayout, launch_layout
from envkit.recipe.schema import Recipe
from envkit.rules import Finding, Severity, run_rules
from envkit.train import decisions as decide
from envkit.train.config import grpo_kwargs
from envkit.train.effective import check_refused, effective_config
from envkit.train.patches import select_patches
from envkit.train.readiness import cpu_size_warning
from envkit.train.tiny import tiny_folder


@dataclass(frozen=True)
class LaunchOptions:
    """What laying the run out on this machine needs beyond the recipe (a rank started by a launcher has none)."""

    recipe_path: str  # what each launched rank re-reads
    forward: tuple[str, ...] = ()  # `envkit train` options every rank gets besides --output (--max-steps N, ...)
    machine: LaunchProbe = LaunchProbe()  # envkit.launch.machine.probe_launch: ports in use, the local model
    dry_run: bool = False  # a model.build model for a server is named, not built


@dataclass(frozen=True)
class PlanOptions:
    """What the command line adds to the recipe."""

    output: str | None = None  # --output (default output.dir, else runs/<recipe name>)
    max_steps: int | None = None  # --max-steps: replaces grpo.max_steps
    machine_rank: int | None = None  # --machine-rank: replaces distributed.machine_rank
    no_patch: tuple[str, ...] = ()  # --no-patch IDs
    launch: LaunchOptions | None = None  # None: no launch layout (a rank: the launcher that started it laid it out)


@dataclass(frozen=True)
class Plan:
    """The run's decisions, made once before anything loads.  Immutable (its lists are tuples, its mappings
    read-only)."""

    recipe: Recipe  # as run: the command line's overrides applied
    output_dir: Path
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
    budget_share: float | None = None  # vLLM's share from envkit.budget (None: no budget here)
    gradient_checkpointing: bool = True  # grpo.gradient_checkpointing, auto resolved by the budget (on without one)
    micro_batch: int | None = None  # grpo.micro_batch: auto resolved by the budget; None: per_device_train_batch_size
    vllm_off: str | None = None  # why generation is model.generate ("no GPU visible", "vllm.enabled: false")
    vllm_utilization: float | None = None  # vllm.gpu_memory_utilization resolved (train.decisions.vllm_utilization)
    grpo_config: Mapping[str, Any] = field(default_factory=dict)  # GRPOConfig's arguments (train.config.grpo_kwargs)
    grpo_effective: dict[str, Any] | None = None  # what the backend changes in them (train.effective; None: trl)
    launch: LaunchLayout | None = None  # the processes this machine starts (None: a rank started by one)

    def __post_init__(self) -> None:
        for name in ("warnings", "blocking", "patches", "patches_off"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("env", "grpo_config"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def to_dict(self) -> dict[str, Any]:
        """The decisions as JSON data (manifest.json's "plan"); the recipe, the findings, GRPOConfig's arguments and
        the launch layout are reported beside it."""
        plain = {"env": dict(self.env), **{n: list(getattr(self, n)) for n in ("warnings", "patches", "patches_off")}}
        return {f.name: plain.get(f.name, getattr(self, f.name)) for f in fields(self) if f.name not in
                ("recipe", "output_dir", "blocking", "vllm_utilization", "grpo_config", "grpo_effective", "launch")}


def with_overrides(recipe: Recipe, options: PlanOptions) -> Recipe:
    """The recipe with --max-steps and --machine-rank applied."""
    if options.max_steps:
        recipe = replace(recipe, grpo=replace(recipe.grpo, max_steps=options.max_steps))
    rank = options.machine_rank
    if rank is not None:
        if rank >= recipe.distributed.num_machines:
            raise OptionError(f"--machine-rank {rank}: the recipe has distributed.num_machines: "
                              f"{recipe.distributed.num_machines}")
        recipe = replace(recipe, distributed=replace(recipe.distributed, machine_rank=rank))
    return recipe


def build_plan(recipe: Recipe, facts: Facts, options: PlanOptions = PlanOptions()) -> Plan:
    """The frozen plan of ``recipe`` on the machine ``facts`` describe.  Raises RecipeError for what refuses the
    recipe outright (a package it names is missing, a setting the backend would overwrite), OptionError for a
    --machine-rank or --no-patch it cannot take, and LaunchError for a layout this machine cannot hold."""
    recipe = with_overrides(recipe, options)
    decide.check_packages(recipe, facts)
    findings = run_rules(facts)
    gpus = facts.visible_gpus()
    reason = decide.vllm_off_reason(recipe, facts, findings)
    warnings = [decide.vllm_off_warning(recipe, facts, reason)]
    refusals = decide.recipe_refusals(recipe, facts, reason is None)
    reason = reason or decide.forced_off(refusals)  # --force runs without vLLM
    use_vllm = reason is None
    env, pdl_warning = decide.pdl_env(facts, findings, use_vllm)
    dtype, dtype_warning = decide.training_dtype(recipe, facts, findings)
    gpu_memory = gpus[0].memory_total_mib * MIB if gpus and gpus[0].memory_total_mib else None
    checks = decide.SleepChecks.of(findings)
    sleep = decide.sleep_before_budget(recipe, checks, use_vllm)
    budget, budget_missing = decide.memory_budget(recipe, gpu_memory, dtype == "bf16", use_vllm, sleep)
    if sleep is None:
        sleep = budget.plan.sleep if budget else checks.works
    warnings += [pdl_warning, dtype_warning, budget_missing, decide.sleep_warning(recipe, checks, use_vllm, budget),
                 decide.budget_warning(recipe, budget, gpu_memory)]
    if sleep and recipe.backend == "unsloth":  # Unsloth's own vLLM sleeps only with its standby variable set,
        env.update(curated("unsloth_vllm_standby")["env"])  # and keeps the budget's share only when told to
    blocking = decide.doctor_refusals(recipe, facts, findings, use_vllm) + refusals + [
        decide.stale_sleep(recipe, checks.stale_sync, use_vllm), decide.pdl_refusal(recipe, facts, findings, use_vllm)]
    patches, patches_off = select_patches(recipe, facts, use_vllm, options.no_patch)
    utilization = decide.vllm_utilization(recipe, budget)
    output_dir = Path(options.output or recipe.output.dir or Path("runs") / Path(recipe.source).stem)
    checkpointing, micro_batch = decide.checkpointing(recipe, budget), decide.micro_batch(recipe, budget)
    config = grpo_kwargs(recipe, str(output_dir), dtype=dtype, on_cpu=not gpus, use_vllm=use_vllm, sleep=sleep,
                         vllm_utilization=utilization, gradient_checkpointing=checkpointing, micro_batch=micro_batch)
    backend = facts.package(recipe.backend)  # trl's rewrites nothing; unsloth's config does (envkit.train.effective)
    effective = effective_config(recipe.backend, config, backend.version if backend else None)
    check_refused(recipe.source, effective)
    launch = None
    if options.launch is not None:
        launch = lay_out_launch(recipe, facts, options.launch, output_dir, dtype, utilization)
        launch_checks = run_launch_rules(facts, LaunchInputs(recipe, launch, use_vllm, options.launch.machine))
        warnings += [f"{f.id} {f.title}" + (f" ({f.fix})" if f.fix else "")
                     for f in launch_checks if f.severity is Severity.WARN]
        blocking += [f for f in launch_checks if f.severity is Severity.FAIL]
        env.update(launch.env if launch.in_process else {})  # the one training GPU an in-process run uses
        warnings.append(cpu_size_warning(recipe, facts, on_cpu=not gpus))
    return Plan(recipe, output_dir, use_vllm, sleep, gpus[0].name if gpus else "cpu", dtype == "bf16", env=env,
                warnings=[w for w in warnings if w], blocking=[f for f in blocking if f], gpu_memory=gpu_memory,
                dtype=dtype, patches=patches, patches_off=patches_off,
                budget_share=budget.plan.vllm.utilization if budget and budget.plan.vllm else None,
                gradient_checkpointing=checkpointing, micro_batch=micro_batch, vllm_off=reason,
                vllm_utilization=utilization, grpo_config=config, grpo_effective=effective, launch=launch)


# accelerate's --mixed_precision for the training dtype
MIXED_PRECISION = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}


def lay_out_launch(recipe: Recipe, facts: Facts, options: LaunchOptions, output_dir: Path, dtype: str,
                   utilization: float) -> LaunchLayout:
    """The processes this machine starts for the run (envkit.launch.layout)."""
    model = recipe.model.name
    if model is None and recipe.vllm.mode == "server":  # model.build: the server loads what the ranks build
        model = (f"<model.build: {recipe.model.build}, built at launch>" if options.dry_run
                 else str(tiny_folder(seed=recipe.seed)))
    trl = facts.package("trl")
    return launch_layout(recipe, options.recipe_path, len(facts.visible_gpus()), trl.version if trl else None,
                         vllm_utilization=utilization, cuda_visible_devices=facts.cuda_visible_devices,
                         model=model, forward=("--output", str(output_dir), *options.forward),
                         mixed_precision=MIXED_PRECISION[dtype])
