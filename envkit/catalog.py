"""envkit's check catalog: every registry of checks and patches, listed once.

- DOCTOR_CHECKS (envkit.rules): the machine's checks, one module per report section, and the incompatibilities
  of knowledge/incompatibilities.json (envkit.rules.known); `envkit doctor` runs them, `envkit train`'s plan reads
  their findings;
- RECIPE_CHECKS (envkit.rules.recipe_checks) and LAUNCH_CHECKS (envkit.launch.checks): they need a recipe, or its
  launch layout, so `envkit train` runs them and the doctor only documents them;
- PATCHES (envkit.train.patches, from knowledge/patches.json): the TRL patches `envkit train` applies.

One ID space across them all (envkit.rules.registry refuses a taken ID; tests/test_catalog.py checks this list);
`envkit doctor --explain ID` finds any entry.  What a check's failure means to a run: envkit.train.check_impact.
"""

from __future__ import annotations

from envkit.launch.checks import LAUNCH_CHECKS
from envkit.rules import DOCTOR_CHECKS, Rule
from envkit.rules.recipe_checks import RECIPE_CHECKS
from envkit.train.patches import PATCHES, Patch

CHECKS = (DOCTOR_CHECKS, RECIPE_CHECKS, LAUNCH_CHECKS)
REGISTRIES = (*CHECKS, PATCHES)


def all_checks() -> list[Rule]:
    """Every check of every registry, in ID order (patches are not checks)."""
    return sorted((check for registry in CHECKS for check in registry.values()), key=lambda check: check.id)


def find(key: str) -> Rule | Patch | None:
    """A check or patch by ID (``EK301``, ``EKP001``; any case) or by name (``vllm-torch``), in any registry."""
    return next(filter(None, (registry.find(key) for registry in REGISTRIES)), None)
