"""Before a run: the doctor's findings that matter to it, and the fallbacks they call for.

Pure over Facts and findings (no torch), so ``--dry-run`` and the tests see the same plan as a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from envkit.facts import Facts
from envkit.recipe.schema import Recipe
from envkit.rules import Finding, Severity

# Checks that concern vLLM generation only: irrelevant when the run generates with model.generate.
VLLM_CHECKS = {"EK104", "EK106", "EK203", "EK301", "EK302", "EK303", "EK401", "EK402", "EK403", "EK404"}
# Without a GPU the run is a CPU run: only the Python stack matters.
CPU_CHECKS = {"EK300", "EK304"}
GENERATE_COST = "generation falls back to model.generate, several times slower per step (about 6x on a 205M model, 32x256 tokens)"


@dataclass
class Plan:
    use_vllm: bool
    sleep: bool
    gpu: str  # "cpu" or the first visible GPU's name
    bf16: bool
    env: dict[str, str] = field(default_factory=dict)  # set before triton/vllm load
    warnings: list[str] = field(default_factory=list)
    blocking: list[Finding] = field(default_factory=list)  # failures relevant to the run


def plan_run(recipe: Recipe, facts: Facts, findings: list[Finding]) -> Plan:
    by_id = {f.id: f for f in findings}
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
        elif by_id.get("EK401") and by_id["EK401"].severity is Severity.WARN:
            reason = by_id["EK401"].title
        if reason:
            use_vllm = False
            if recipe.vllm.enabled is True or gpus:
                warnings.append(f"vllm off: {reason}; {GENERATE_COST}")
    env = {}
    pdl = by_id.get("EK402")
    if use_vllm and pdl and pdl.severity is Severity.FAIL:
        env["TRITON_DISABLE_PDL"] = "1"
        warnings.append(f"set TRITON_DISABLE_PDL=1: {pdl.title}")
    sleep_check = by_id.get("EK404")
    sleep_ok = sleep_check is not None and sleep_check.severity is Severity.OK
    sleep = use_vllm and recipe.vllm.mode == "colocate" and (recipe.vllm.sleep is True or (recipe.vllm.sleep == "auto" and sleep_ok))
    if recipe.vllm.sleep is True and use_vllm and not sleep_ok and sleep_check is not None:
        warnings.append(f"vllm sleep mode requested although {sleep_check.title}")
    relevant = CPU_CHECKS if not gpus else {f.id for f in findings} - (set() if use_vllm else VLLM_CHECKS) - ({"EK402"} if env else set())
    blocking = [f for f in findings if f.id in relevant and f.severity is Severity.FAIL]
    bf16_check = by_id.get("EK105")
    bf16 = bool(gpus) and recipe.model.dtype != "fp16" and (bf16_check is None or bf16_check.severity is Severity.OK)
    return Plan(use_vllm, sleep, gpus[0].name if gpus else "cpu", bf16, env, warnings, blocking)
