"""Replace the probed GPUs with one from the catalog: check packages against a GPU you don't have."""

from __future__ import annotations

from dataclasses import replace

from envkit.facts import Facts, Gpu
from envkit.knowledge import UnknownGpu, catalog_key, gpu_catalog


def with_target(facts: Facts, name: str, count: int = 1) -> Facts:
    """The same facts with ``count`` catalog GPUs instead of the probed ones (UnknownGpu for a name not in it,
    said of --target: the option of doctor and train that names it)."""
    try:
        key = catalog_key(name)
    except UnknownGpu as exc:
        raise UnknownGpu(f"--target: {exc}") from None
    entry = gpu_catalog()[key]
    memory = entry["memory_gib"] * 1024
    gpus = [
        Gpu(index=i, name=entry["name"], compute_capability=entry["compute_capability"], memory_total_mib=memory,
            memory_free_mib=memory, mig_mode=False, catalog_id=key)
        for i in range(count)
    ]
    return replace(facts, gpus=gpus, target=key, cuda_visible_devices=None)
