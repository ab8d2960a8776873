"""Shared views of the GPU facts for rules."""

from __future__ import annotations

from envkit.facts import Facts, Gpu
from envkit.knowledge import cc_tuple

__all__ = ["cc_tuple", "describe", "weakest_gpu"]


def weakest_gpu(facts: Facts) -> Gpu | None:
    """The visible GPU with the lowest compute capability: what a capability rule must hold for."""
    gpus = [g for g in facts.visible_gpus() if g.cc]
    return min(gpus, key=lambda g: g.cc) if gpus else None


def describe(gpu: Gpu) -> str:
    return f"{gpu.name} (sm_{gpu.compute_capability.replace('.', '')})" if gpu.compute_capability else gpu.name


def cc_major_gpus(facts: Facts, major: int) -> list[Gpu]:
    return [g for g in facts.visible_gpus() if g.cc and g.cc[0] == major]
