"""TRL's GRPOConfig fields as data: each one's type, default and help, for the recipe's ``grpo:`` section.

``grpo_config.json`` records the pinned TRL's dataclass (``python -m envkit.knowledge.grpo_config`` regenerates it
from the installed TRL, with its version and the date), so a recipe is checked without importing trl (seconds:
it imports transformers and torch).  Where a different TRL is installed, its own dataclass is read instead: the
recipe may use every field of the TRL that will run it.

A type is recorded as a small JSON form: "bool", "int", "float", "str", "null", "dict", "any" (a type the
recipe cannot spell, e.g. accelerate's ParallelismConfig), {"choices": [...]} (a Literal, or an Enum such as
transformers' SchedulerType: TrainingArguments turns the string into one), {"list": T}, {"union": [T, ...]}.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import operator
import sys
import types
import typing
from datetime import date
from importlib import metadata
from typing import Any, Literal

from envkit.knowledge import HERE

RECORD = HERE / "grpo_config.json"
SCALARS = {bool: "bool", int: "int", float: "float", str: "str", type(None): "null", dict: "dict"}


def type_form(annotation: Any) -> Any:
    """The JSON form of a field's annotation (module docstring)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in SCALARS:
        return SCALARS[annotation]
    if origin is Literal:
        return {"choices": list(args)}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"choices": [member.value for member in annotation]}
    if origin is list:
        return {"list": type_form(args[0]) if args else "any"}
    if origin is dict:
        return "dict"
    if origin in (typing.Union, types.UnionType):
        forms = [type_form(a) for a in args]
        choices = [f for f in forms if isinstance(f, dict) and "choices" in f]
        if choices and "str" in forms:  # Enum | str: the string must name a member
            forms = [f for f in forms if f != "str"]
        return forms[0] if len(forms) == 1 else {"union": forms}
    return "any"


def record_of(config: type) -> dict[str, dict]:
    """name -> {"type", "default", "help"} of a dataclass (TRL's GRPOConfig)."""
    hints = typing.get_type_hints(config)
    fields = {}
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        if isinstance(default, enum.Enum):
            default = default.value
        try:
            json.dumps(default)
        except (TypeError, ValueError):
            default = repr(default)
        fields[f.name] = {"type": type_form(hints[f.name]), "default": default, "help": " ".join(f.metadata.get("help", "").split())}
    return fields


def installed_trl() -> str | None:
    try:
        return metadata.version("trl")
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def grpo_fields() -> tuple[str, dict[str, dict]]:
    """(TRL version, fields) to check a recipe against: the record, unless another TRL is installed."""
    recorded = json.loads(RECORD.read_text())
    version = installed_trl()
    if version is None or version == recorded["trl"]:
        return recorded["trl"], recorded["fields"]
    from trl import GRPOConfig

    return version, record_of(GRPOConfig)


def as_type(form: Any) -> Any:
    """A JSON form as the typing object the recipe loader walks (envkit.recipe.load)."""
    if isinstance(form, str):
        return {"bool": bool, "int": int, "float": float, "str": str, "null": type(None), "dict": dict}.get(form, Any)
    if "choices" in form:
        return Literal[tuple(form["choices"])]
    if "list" in form:
        return list[as_type(form["list"])]
    return functools.reduce(operator.or_, (as_type(f) for f in form["union"]))


def main() -> None:
    """Record the installed TRL's GRPOConfig into grpo_config.json (or the path given)."""
    from trl import GRPOConfig

    from envkit.files import write_atomic

    # GRPOConfig inherits transformers' TrainingArguments, whose help texts move between releases: both versions
    doc = {"trl": installed_trl(), "transformers": metadata.version("transformers"),
           "recorded": date.today().isoformat(),
           "source": "trl.GRPOConfig of the installed trl, read by `python -m envkit.knowledge.grpo_config`",
           "fields": record_of(GRPOConfig)}
    target = sys.argv[1] if len(sys.argv) > 1 else str(RECORD)
    write_atomic(target, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"{len(doc['fields'])} fields of trl {doc['trl']}'s GRPOConfig -> {target}")


if __name__ == "__main__":
    main()
