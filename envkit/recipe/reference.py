"""The recipe reference, from the schema: every key's type, default, bounds and help.

`envkit recipes explain KEY` prints one key; ``python -m envkit.recipe.reference`` writes docs/recipe.md
(tests/test_reference.py keeps it current).  ``grpo:`` also takes TRL's GRPOConfig fields
(envkit.recipe.trl_fields), listed after envkit's own.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from envkit.errors import UsageError
from envkit.recipe.schema import GrpoSpec, Recipe
from envkit.recipe.trl_fields import OWNED
from envkit.recipe.trl_fields import explain as explain_trl


class KeyUnknown(UsageError, ValueError):
    """Not a recipe key."""


@dataclass(frozen=True)
class Entry:
    key: str  # dotted: grpo.learning_rate, rewards[].weight
    type: str
    default: str
    bound: str
    help: str


def entries(cls: type = Recipe, prefix: str = "") -> list[Entry]:
    """Every key of the schema, depth first, in declaration order."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        if not f.metadata.get("input", True):
            continue
        key, kind = prefix + f.name, hints[f.name]
        if dataclasses.is_dataclass(kind):
            found += entries(kind, key + ".")
            continue
        item = typing.get_args(kind)[0] if typing.get_origin(kind) is list else None
        if dataclasses.is_dataclass(item):
            found += entries(item, key + "[].")
            continue
        bound = f.metadata.get("bound")
        found.append(Entry(key, type_text(kind), _default(f), bound.describe() if bound else "", f.metadata.get("help", "")))
    return found


def type_text(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(k) for k in typing.get_args(kind))
    if origin is Literal:
        return " | ".join(repr(v) if isinstance(v, str) else str(v).lower() for v in typing.get_args(kind))
    if origin is list:
        return f"list[{type_text(typing.get_args(kind)[0])}]"
    return {type(None): "null"}.get(kind, getattr(kind, "__name__", str(kind)))


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value) if isinstance(value, str) else str(value)


def explain_key(key: str) -> str:
    """One key's reference; grpo.FIELD may be any of TRL's GRPOConfig fields."""
    own = {e.key: e for e in entries()}
    if key in own:
        e = own[key]
        lines = [f"{e.key}  (envkit)", f"  type: {e.type}", f"  default: {e.default}"]
        lines += [f"  allowed: {e.bound}"] if e.bound else []
        lines += [f"  {e.help}"] if e.help else []
        return "\n".join(lines)
    section, _, field = key.partition(".")
    if section == "grpo" and field not in {f.name for f in dataclasses.fields(GrpoSpec)}:
        text = explain_trl(field)
        if text:
            return text
    from envkit.knowledge.grpo_config import grpo_fields

    names = [*own, *(f"grpo.{k}" for k in grpo_fields()[1] if k not in OWNED)]
    close = difflib.get_close_matches(key, names, n=1)
    raise KeyUnknown(f"{key}: not a recipe key" + (f" (did you mean {close[0]}?)" if close else ""))


def markdown() -> str:
    """docs/recipe.md."""
    from envkit.knowledge.grpo_config import grpo_fields

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["# Recipe reference", "",
             ("Generated from envkit/recipe/schema.py and envkit/knowledge/grpo_config.json by "
              "`python -m envkit.recipe.reference`; do not edit. `envkit recipes explain KEY` prints one key."), "",
             "| key | type | default | allowed | what it does |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| `{e.key}` | {cell(e.type)} | {cell(e.default)} | {cell(e.bound)} | {cell(e.help)} |" for e in entries()]
    version, fields = grpo_fields()
    lines += ["", f"## grpo: TRL's GRPOConfig fields (trl {version})", "",
              ("`grpo:` also takes any field of the installed TRL's GRPOConfig, checked against its type and passed "
               "through as written. The fields envkit sets itself are refused there, naming the key that sets them:"), ""]
    lines += [f"- `{k}`: {v}" for k, v in sorted(OWNED.items()) if k in fields]
    lines += ["", "| field | type | default | what it does (TRL's help) |", "| --- | --- | --- | --- |"]
    own = {f.name for f in dataclasses.fields(GrpoSpec)}
    for name, f in sorted(fields.items()):
        if name in OWNED or name in own:
            continue
        lines.append(f"| `{name}` | {cell(_form(f['type']))} | {cell(repr(f['default']))} | {cell(f['help'])} |")
    return "\n".join(lines) + "\n"


def _form(form: Any) -> str:
    if isinstance(form, str):
        return form
    if "choices" in form:
        return " | ".join(map(repr, form["choices"])) if len(form["choices"]) <= 6 else f"one of {len(form['choices'])} names"
    if "list" in form:
        return f"list[{_form(form['list'])}]"
    return " | ".join(_form(f) for f in form["union"])


DOC = Path(__file__).resolve().parents[2] / "docs" / "recipe.md"

if __name__ == "__main__":
    from envkit.files import write_atomic

    target = sys.argv[1] if len(sys.argv) > 1 else str(DOC)
    write_atomic(target, markdown())
    print(f"{len(entries())} recipe keys -> {target}")
