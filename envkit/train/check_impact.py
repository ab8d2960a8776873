"""What a check's finding means to `envkit train`: which runs its failure refuses, and which plan decision it informs.

The checks (envkit.rules, envkit.launch.checks) say what they find; what a run does about it is the trainer's to
say, so it is kept here, beside the plan that acts on it.  A check that ``needs_vllm`` (envkit.rules.base.Rule)
matters only to a run generating with vLLM; beyond that, a check's failure refuses:

- ``any`` run, CPU-only too (the Python stack, a launch layout);
- a ``gpu`` run (the default: the hardware, driver and most package checks);
- ``planned``: none as is, the plan acts on it itself (sets a variable, or refuses with a finding of its own);

and, with ``backends``, only runs on those recipe backends.
"""

from __future__ import annotations

from dataclasses import dataclass

from envkit.launch.checks import LAUNCH_CHECKS
from envkit.rules.base import Finding, Rule

RELEVANCE = ("any", "gpu", "planned")


@dataclass(frozen=True)
class Impact:
    relevance: str = "gpu"  # RELEVANCE
    backends: tuple[str, ...] = ()  # the recipe backends it matters to (empty: all)

    def __post_init__(self) -> None:
        if self.relevance not in RELEVANCE:
            raise ValueError(f"unknown run relevance {self.relevance!r} (known: {', '.join(RELEVANCE)})")


# The checks whose impact is not the default (a failure refuses a GPU run on every backend); every launch check
# refuses any run it lays out.  tests/test_catalog.py: each ID here is a registered check.
IMPACT: dict[str, Impact] = {
    "EK300": Impact("any"),  # train-stack
    "EK304": Impact("any"),  # requirements
    "EK310": Impact("any"),  # knowledge-age
    "EK402": Impact("planned"),  # sm100-pdl: the plan sets the PDL variable, or refuses itself where none exists
    "EK403": Impact(backends=("unsloth",)),  # sm100-torch
    "EK408": Impact(backends=("trl",)),  # trl-4bit-merge-sync
}

# The plan's decisions and the doctor's check whose finding informs each: the plan reads a check by what it
# decides, not by ID.
DECIDED_BY: dict[str, str] = {"dtype": "EK105", "vllm": "EK401", "pdl": "EK402", "sleep": "EK404",
                              "sleep-sync": "EK406"}


def impact(rule: Rule) -> Impact:
    return Impact("any") if rule.id in LAUNCH_CHECKS else IMPACT.get(rule.id, Impact())


def blocks(rule: Rule, *, gpu: bool, use_vllm: bool, backend: str) -> bool:
    """Whether this check, failing, refuses an `envkit train` run of this shape."""
    said = impact(rule)
    runs_here = said.relevance == "any" or (gpu and said.relevance == "gpu")
    return runs_here and (use_vllm or not rule.needs_vllm) and (not said.backends or backend in said.backends)


def refuses(rule: Rule) -> str:
    """Which `envkit train` runs the check's failure refuses, in words (docs/doctor.md's check tables)."""
    said = impact(rule)
    if said.relevance == "planned":
        return "none: the run acts on it (a setting, or a refusal of its own)"
    runs = "every run" if said.relevance == "any" else "GPU runs"
    return " ".join([runs] + (["generating with vLLM"] if rule.needs_vllm else [])
                    + ([f"on backend {' or '.join(said.backends)}"] if said.backends else []))


def informing(findings: list[Finding], decision: str) -> Finding | None:
    """The finding of the check that informs ``decision`` (DECIDED_BY), if it ran."""
    return next((f for f in findings if f.id == DECIDED_BY[decision]), None)
