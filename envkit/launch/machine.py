"""What the launch checks (EK5xx, envkit.launch.checks) need from this machine, probed before the run is planned:
the recipe's ports found in use, and what the local model folder and accelerate config say.  Planning itself
(envkit.train.plan) then stays pure."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import yaml

from envkit.files import JSON_BYTES, read_regular
from envkit.launch.checks import LaunchProbe, port_roles
from envkit.recipe.schema import Recipe
from envkit.recipe.tiny_model import TinyLlamaConfig


def port_in_use(port: int) -> bool:
    """Something listens on ``port`` here (a bind on all interfaces fails, as the server's would)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed socket in TIME_WAIT does not count
        try:
            probe.bind(("", port))
        except OSError:
            return True
    return False


def local_config(recipe: Recipe) -> dict:
    """The model's config.json when it is on this disk (a local folder); {} for a hub name, whose config vLLM
    reads when it loads the model."""
    try:
        config = json.loads(read_regular(Path(recipe.model.name or "") / "config.json", JSON_BYTES))
    except (OSError, ValueError, RecursionError):
        return {}
    return config if isinstance(config, dict) else {}  # a list, a number: not a config


def model_context(recipe: Recipe, config: dict) -> int | None:
    """The model's max_position_embeddings when its config is known here (tiny, or a local folder)."""
    if recipe.model.build == "tiny":
        return TinyLlamaConfig().max_position_embeddings
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    found = config.get("max_position_embeddings") or text.get("max_position_embeddings")
    return found if type(found) is int else None


def quant_method(config: dict) -> str | None:
    """The checkpoint's own quantization (quantization_config.quant_method: fp8, modelopt, ...), if any."""
    quantization = config.get("quantization_config")
    method = quantization.get("quant_method") if isinstance(quantization, dict) else None
    return method if isinstance(method, str) else None


def fsdp_version(recipe: Recipe) -> int | None:
    """The FSDP version the recipe's own accelerate config runs (accelerate's default 1 where it names none);
    None without such a config, for another distributed_type, or where it cannot be read."""
    if recipe.distributed.accelerate_config is None:
        return None
    try:
        config = yaml.safe_load(Path(recipe.distributed.accelerate_config).read_text())
    except (OSError, yaml.YAMLError):
        return None  # the loader checked it exists; accelerate reports a broken one itself
    if not isinstance(config, dict) or config.get("distributed_type") != "FSDP":
        return None
    version = (config.get("fsdp_config") or {}).get("fsdp_version", 1)
    return version if isinstance(version, int) else None


def probe_launch(recipe: Recipe) -> LaunchProbe:
    config = local_config(recipe)
    return LaunchProbe(tuple(p for p in sorted(port_roles(recipe)) if port_in_use(p)), model_context(recipe, config),
                       fsdp_version(recipe), quant_method(config))
