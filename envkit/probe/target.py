"""Replace the probed GPUs with one from the catalog: check packages against a GPU you don't have."""

from __future__ import annotations

import difflib
from dataclasses import replace

from envkit.facts import Facts, Gpu
from envkit.knowledge import gpu_catalog


class UnknownTarget(ValueError):
    pass


def resolve_target(name: str) -> str:
    key = name.strip().lower()
    catalog = gpu_catalog()
    if key in catalog:
        return key
    close = difflib.get_close_matches(key, catalog, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise UnknownTarget(f"unknown GPU {name!r}; {hint}known: {', '.join(catalog)}")


def with_target(facts: Facts, name: str, count: int = 1) -> Facts:
    """The same facts with ``count`` catalog GPUs instead of the probed ones."""
    key = resolve_target(name)
    entry = gpu_catalog()[key]
    memory = entry["memory_gib"] * 1024
    gpus = [
        Gpu(index=i, name=entry["name"], compute_capability=entry["compute_capability"], memory_total_mib=memory,
            memory_free_mib=memory, mig_mode=False, catalog_id=key)
        for i in range(count)
    ]
    return replace(facts, gpus=gpus, target=key, cuda_visible_devices=None)
