"""What the launch checks (EK5xx, envkit.launch.checks) need from this machine, and running them."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from envkit.facts import Facts
from envkit.files import JSON_BYTES, read_regular
from envkit.launch.plan import LaunchPlan
from envkit.recipe.schema import Recipe
from envkit.rules import Finding
from envkit.launch.checks import LaunchInputs, run_launch_rules


def port_in_use(port: int) -> bool:
    """Something listens on ``port`` here (a bind on all interfaces fails, as the server's would)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed socket in TIME_WAIT does not count
        try:
            probe.bind(("", port))
        except OSError:
            return True
    return False


def model_context(recipe: Recipe) -> int | None:
    """The model's max_position_embeddings when its config is on this disk (tiny, or a local folder)."""
    if recipe.model.build == "tiny":
        from envkit.budget.shapes import TinyShape

        return TinyShape().max_position_embeddings
    try:
        config = json.loads(read_regular(Path(recipe.model.name or "") / "config.json", JSON_BYTES))
    except (OSError, ValueError, RecursionError):
        return None  # a hub name: vLLM reads the config when it loads the model
    if not isinstance(config, dict):  # a list, a number: not a config
        return None
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    found = config.get("max_position_embeddings") or text.get("max_position_embeddings")
    return found if type(found) is int else None


def launch_findings(recipe: Recipe, plan: LaunchPlan, facts: Facts, use_vllm: bool) -> list[Finding]:
    ports = sorted({p for proc in plan.processes for p in proc.ports})
    busy = tuple(p for p in ports if port_in_use(p))
    return run_launch_rules(facts, LaunchInputs(recipe, plan, use_vllm, busy, model_context(recipe)))
