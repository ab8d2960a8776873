"""What `envkit train` can tell about the model before it loads anything (issue #24): a hub model neither cached
nor reachable (the run retried the hub for ~90 s and ended in a traceback), and a model far too large for the CPU
it would train on (a 3B model started "on cpu (fp32)" without a word)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from envkit.facts import Facts
from envkit.recipe.schema import Recipe

# A CPU run of more parameters than this is warned about: fp32 weights, gradients through them, and minutes a step.
CPU_PARAMS = 1_000_000_000


def hub_cache(facts: Facts) -> Path:
    """Where from_pretrained looks for a hub model: HF_HUB_CACHE, else HF_HOME's hub/ (probed)."""
    return Path(os.environ.get("HF_HUB_CACHE") or Path(facts.host.cache_dir or "~/.cache/huggingface") / "hub")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub (HF_ENDPOINT's host, else huggingface.co) answers a TCP connection on its port."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((endpoint.hostname or "huggingface.co", endpoint.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def model_problem(recipe: Recipe, facts: Facts, reachable=hub_reachable) -> str | None:
    """One line when model.name is a hub id that is not cached while the hub cannot be reached; else None."""
    name = recipe.model.name
    if name is None or Path(name).expanduser().is_dir():
        return None
    cached = hub_cache(facts).expanduser() / f"models--{name.replace('/', '--')}"
    if cached.is_dir():
        return None
    offline = facts.env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not offline and reachable():
        return None
    why = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached from here"
    return (f"model.name: {name} is neither a local folder nor in the hub cache ({cached.parent}), and {why}: "
            f"download it where the hub is reachable (hf download {name}), or set model.name to a local folder; "
            "a gated model (meta-llama/...) also needs its licence accepted and HF_TOKEN set")


def cpu_size_warning(recipe: Recipe, facts: Facts, on_cpu: bool) -> str | None:
    """A warning, with an estimate, when a model of more than CPU_PARAMS parameters would train on the CPU."""
    if not on_cpu or recipe.model.build:
        return None
    from envkit.budget.recipe import recipe_shape
    from envkit.budget.shapes import UnknownName

    try:
        params = recipe_shape(recipe).params()
    except (UnknownName, OSError, ValueError, KeyError):
        return None  # a shape envkit does not know: nothing to estimate from
    if params <= CPU_PARAMS:
        return None
    ram = facts.host.ram_total_mib
    weights = params * 4 / 2**30
    memory = f" of this machine's {ram / 1024:.0f} GiB" if ram else ""
    return (f"{recipe.model.name}: {params / 1e9:.2f}B parameters would train on the CPU in fp32: {weights:.0f} GiB "
            f"of weights{memory} before gradients and optimizer states, and minutes per step; it is meant for a GPU "
            f"(envkit budget {recipe.source} --target h100)")
