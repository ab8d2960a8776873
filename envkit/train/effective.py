"""The GRPO settings a backend really trains with, from the arguments envkit passes.  Pure: no torch, no trl.

Unsloth does not hand envkit's GRPOConfig arguments to TRL as they are: its generated UnslothGRPOConfig has
defaults of its own (weight_decay, optim, warmup, ...) and an ``__init__`` that rewrites some settings
(``mask_truncated_completions = True`` and ``epsilon_high = 0.28`` for an explicit ``loss_type: dapo``, TRL's
default: every step whose completions are all truncated then trains on nothing).  What it does is data
(knowledge/backend_config.json, read from Unsloth's code at a version window); here it is replayed on the
arguments, so that

- ``pins``: envkit passes TRL's value explicitly wherever the backend would replace an unset one (it keeps
  what the caller passed): the recipe trains the same on backend trl and unsloth;
- ``effective_config``: what is left is shown before the model loads (``--dry-run``, the run's first
  lines, manifest.json), each difference with the backend that made it and its source, and a rewrite
  envkit cannot keep out refuses the run with its fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from envkit.errors import RecipeError
from envkit.knowledge import load
from envkit.knowledge.grpo_config import grpo_fields

SPLIT_GROUPS = "@split_groups"


def backend_rules(backend: str) -> dict | None:
    """The backend's recorded config rewrites (knowledge/backend_config.json), None for one that has none (trl)."""
    return load("backend_config").get(backend)


def trl_defaults() -> dict[str, Any]:
    """Every GRPOConfig field's default, of the TRL in use (envkit.knowledge.grpo_config)."""
    return {name: field["default"] for name, field in grpo_fields()[1].items()}


def _passed(keep: Any) -> bool:
    """A field envkit keeps by passing TRL's value ("pass", or {"from": FIELD})."""
    return keep == "pass" or isinstance(keep, dict) and "from" in keep


def _fix(keep: Any) -> str | None:
    """The fix of a field envkit refuses to let the backend change ({"refuse": fix}), else None."""
    return keep["refuse"] if isinstance(keep, dict) and "refuse" in keep else None


def pins(backend: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments envkit adds so that the backend keeps TRL's values: for each field it would set when
    unset ("keep": "pass" or {"from": FIELD}), TRL's default, where the arguments lack it."""
    rules = backend_rules(backend)
    if rules is None:
        return {}
    defaults = trl_defaults()
    added = {}
    for name, keep in rules["keep"].items():
        if _passed(keep) and name not in kwargs and name in defaults:
            source = name if keep == "pass" else keep["from"]
            added[name] = kwargs.get(source, defaults.get(source))
    return added


def replay(rules: dict, passed: Mapping[str, Any], world_size: int = 1) -> dict[str, Any]:
    """The backend's config after its ``__init__``: its defaults under what was passed, then its rewrites
    in order.  Only fields of TRL's GRPOConfig (a backend default for a field this TRL lacks is no argument)."""
    defaults = trl_defaults()
    state = {**defaults, **{k: v for k, v in rules["defaults"].items() if k in defaults}, **passed}
    for rewrite in rules["rewrites"]:
        if all(_value(state, name, world_size) in allowed for name, allowed in rewrite["when"].items()):
            to = rewrite["to"]
            state[rewrite["field"]] = state[to["from"]] if isinstance(to, dict) else to
    return state


def _value(state: Mapping[str, Any], name: str, world_size: int) -> Any:
    if name == SPLIT_GROUPS:
        batch = state["per_device_train_batch_size"] * state["gradient_accumulation_steps"] * world_size
        return batch % state["num_generations"] != 0
    return state.get(name)


def effective_config(backend: str, kwargs: Mapping[str, Any], version: str | None) -> dict[str, Any] | None:
    """What the backend changes in ``kwargs`` (envkit's arguments, pins included), as JSON data for --dry-run
    and manifest.json; None for a backend that changes nothing (trl).

    "differences": each field whose trained value is not what TRL would run with the same arguments:
    {field, recipe (TRL's value), effective, by, why}; "kept": each field envkit pinned, with the value the
    backend would have used; "refused": the differences envkit cannot keep, with their fix; "read": whether
    ``version`` is in the window the rewrites were read at (outside it they are shown as read there)."""
    rules = backend_rules(backend)
    if rules is None:
        return None
    by = f"{rules['package']} {version or '?'}"
    trl_view = {**trl_defaults(), **kwargs}
    trained = replay(rules, kwargs)
    differences, refused = [], []
    for name in sorted(trained):
        if trained[name] == trl_view.get(name) or name in rules["equivalent"]:
            continue
        keep = rules["keep"].get(name, f"{rules['package']}'s default where envkit passes none"
                                 if name in rules["defaults"] else "its __init__ rewrites it")
        entry = {"field": name, "recipe": trl_view.get(name), "effective": trained[name], "by": by,
                 "why": _fix(keep) or keep}
        (refused if _fix(keep) else differences).append(entry)
    kept = []
    for name, keep in sorted(rules["keep"].items()):
        if name in kwargs and _passed(keep):
            without = replay(rules, {k: v for k, v in kwargs.items() if k != name})[name]
            if without != kwargs[name]:
                kept.append({"field": name, "value": kwargs[name], "backend_would_set": without, "by": by})
    return {"backend": backend, "version": version, "read": in_window(rules, version), "read_at": rules["versions"],
            "source": rules["source"], "differences": differences, "kept": kept, "refused": refused}


def keep_after(config: Any, kwargs: Mapping[str, Any], backend: str) -> list[dict[str, Any]]:
    """Set back, on the backend's constructed config, each value envkit passed to keep TRL's ("keep": "pass"
    or {"from": ...}) that the backend overwrote anyway (unsloth before 2026.9.12: knowledge's "before"); TRL's
    trainer reads them from the config after its ``__init__``.  What was set back, for the run's lines and
    manifest.json."""
    rules = backend_rules(backend)
    restored = []
    for name, keep in (rules["keep"] if rules else {}).items():
        if _passed(keep) and name in kwargs and hasattr(config, name) and getattr(config, name) != kwargs[name]:
            restored.append({"field": name, "backend_set": getattr(config, name), "value": kwargs[name]})
            setattr(config, name, kwargs[name])
    return restored


def trained_value(kwargs: Mapping[str, Any], effective: dict | None, name: str) -> Any:
    """The value of GRPOConfig field ``name`` the trainer runs with: the backend's where it changed it, else
    the argument, else TRL's default."""
    changed = {d["field"]: d["effective"] for d in (effective or {}).get("differences", [])}
    return changed[name] if name in changed else kwargs.get(name, trl_defaults().get(name))


def in_window(rules: dict, version: str | None) -> bool:
    try:
        return version is not None and Version(version) in SpecifierSet(rules["versions"])
    except InvalidVersion:
        return False


def check_refused(source: str, effective: dict | None) -> None:
    """A rewrite envkit cannot keep out, at a backend version whose rewrites were read: refuse the run in one
    line (a RecipeError: exit 2, before anything loads)."""
    if not effective or not effective["refused"] or not effective["read"]:
        return
    first = effective["refused"][0]
    raise RecipeError(f"{source}: grpo.{first['field']}: {first['by']} would train with {first['effective']!r} "
                      f"instead of {first['recipe']!r} (UnslothGRPOConfig rewrites it); fix: {first['why']}")


def effective_lines(effective: dict | None) -> list[str]:
    """The run's first lines about it: what envkit kept, what the backend changes, and whether it was read."""
    if not effective:
        return []
    by = f"{effective['backend']} {effective['version'] or '?'}"
    lines = []
    if not effective["read"]:
        lines.append(f"warning: backend {by}: envkit read its GRPO config rewrites at {effective['read_at']} only; "
                     "the values below assume they are unchanged (a value it overwrites anyway is set back on its "
                     "config at the start, and said)")
    if effective["kept"]:
        kept = ", ".join(f"{k['field']} {k['value']!r} (unset, it would be {k['backend_would_set']!r})"
                         for k in effective["kept"])
        lines.append(f"backend {by}: kept as the recipe's (passed explicitly): {kept}")
    for d in effective["differences"] + effective["refused"]:
        lines.append(f"backend {by} trains with {d['field']} {d['effective']!r} (recipe/TRL: {d['recipe']!r}): "
                     f"{d['why']}")
    return lines
