"""Load a recipe YAML into envkit.recipe.schema, with one-line errors that name file, line and field.

The YAML is composed (not loaded) so every value keeps its node and thus its line; the walk
follows the dataclass annotations.  Every problem becomes a RecipeError whose message is one
line, ``recipe.yaml:12: grpo.learnig_rate: unknown key (did you mean learning_rate?)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from envkit.recipe.schema import Recipe

BUILTIN_REWARDS = ("format", "exact_answer", "length")
_MISSING = object()


class RecipeError(ValueError):
    """A recipe problem, printed as one line by the CLI (exit 2)."""


class _Where:
    def __init__(self, source: str):
        self.source = source

    def error(self, node: yaml.Node | None, path: str, message: str) -> RecipeError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return RecipeError(f"{self.source}{line}: {path + ': ' if path else ''}{message}")


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read recipe: {getattr(exc, 'strerror', None) or exc}") from None
    recipe = parse_recipe(text, str(path))
    recipe.sha256 = hashlib.sha256(text.encode()).hexdigest()
    return recipe


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Parse and validate; relative dataset paths resolve against the recipe's folder."""
    where = _Where(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise RecipeError(f"{source}{line}: invalid YAML: {exc.problem or exc.context}") from None
    except (yaml.YAMLError, ValueError) as exc:  # reader errors (control characters), odd encodings
        raise RecipeError(f"{source}: invalid YAML: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if root is None:
        raise RecipeError(f"{source}: empty recipe (expected a mapping with version: 1)")
    try:
        recipe = _build(Recipe, root, "", where)
    except RecursionError:
        raise where.error(root, "", "recursive YAML aliases are not allowed") from None
    recipe.source = source
    _check(recipe, root, where, Path(source).parent)
    return recipe


def _build(cls: type, node: yaml.Node, path: str, where: _Where) -> Any:
    if not isinstance(node, yaml.MappingNode):
        raise where.error(node, path, f"expected a mapping, got {_kind(node)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("yaml", True)}
    values: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = _scalar(key_node, path, where)
        if not isinstance(key, str) or key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(fields)})"
            raise where.error(key_node, _join(path, str(key)), f"unknown key{hint}")
        if key in values:
            raise where.error(key_node, _join(path, key), "duplicate key")
        values[key] = _value(hints[key], value_node, _join(path, key), where)
    for name, f in fields.items():
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise where.error(node, _join(path, name), "missing required key")
    return cls(**values)


def _value(kind: Any, node: yaml.Node, path: str, where: _Where) -> Any:
    if dataclasses.is_dataclass(kind):
        return _build(kind, node, path, where)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is list:
        if not isinstance(node, yaml.SequenceNode):
            raise where.error(node, path, f"expected a list, got {_kind(node)}")
        return [_value(args[0], item, f"{path}[{i}]", where) for i, item in enumerate(node.value)]
    value = _scalar(node, path, where)
    if _accepts(kind, value):
        return float(value) if kind is float and isinstance(value, int) else value
    raise where.error(node, path, f"expected {_describe(kind)}, got {_show(value)}")


def _accepts(kind: Any, value: Any) -> bool:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(k, value) for k in typing.get_args(kind))
    if origin is Literal:
        return any(value == v and type(value) is type(v) for v in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _scalar(node: yaml.Node, path: str, where: _Where) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise where.error(node, path, f"expected a single value, got {_kind(node)}")
    try:
        return yaml.SafeLoader("").construct_object(node)
    except yaml.YAMLError as exc:
        raise where.error(node, path, f"cannot read value: {getattr(exc, 'problem', None) or exc}") from None


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(k) for k in typing.get_args(kind))
    if origin is Literal:
        return " or ".join(repr(v) if isinstance(v, str) else str(v) for v in typing.get_args(kind))
    return {type(None): "null", float: "a number", int: "an integer", bool: "true/false", str: "a string"}.get(kind, str(kind))


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, (bool, type(None))) else str(value).lower().replace("none", "null")
    return f"{type(value).__name__} {text[:40]}"


def _kind(node: yaml.Node) -> str:
    return {yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list"}.get(type(node), "a single value")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _node(root: yaml.Node, *keys: str | int) -> yaml.Node:
    """The node at a key path (for the line of a semantic error); the deepest existing one."""
    node = root
    for key in keys:
        if isinstance(node, yaml.MappingNode):
            found = [v for k, v in node.value if k.value == key]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            found = [node.value[key]]
        else:
            found = []
        if not found:
            return node
        node = found[0]
    return node


def _check(recipe: Recipe, root: yaml.Node, where: _Where, base: Path) -> None:
    """Checks across fields and against the disk: dataset file, reward import, exclusive keys."""
    model, data = recipe.model, recipe.dataset
    if (model.name is None) == (model.build is None):
        raise where.error(_node(root, "model"), "model", "give exactly one of name or build")
    if (data.path is None) == (data.name is None):
        raise where.error(_node(root, "dataset"), "dataset", "give exactly one of path (local JSONL) or name (registry)")
    if data.path is not None:
        resolved = (base / data.path).resolve()
        if not resolved.is_file():
            raise where.error(_node(root, "dataset", "path"), "dataset.path", f"no such file: {resolved}")
        data.path = str(resolved)
    if not recipe.rewards:
        raise where.error(_node(root, "rewards"), "rewards", "needs at least one reward")
    for i, reward in enumerate(recipe.rewards):
        try:
            resolve_reward(reward.name)
        except RecipeError as exc:
            raise where.error(_node(root, "rewards", i, "name"), f"rewards[{i}].name", str(exc)) from None
    for name in ("num_generations", "max_prompt_length", "max_completion_length", "per_device_train_batch_size",
                 "gradient_accumulation_steps", "max_steps"):
        value = getattr(recipe.grpo, name)
        if value is not None and value < 1:
            raise where.error(_node(root, "grpo", name), f"grpo.{name}", f"must be at least 1, got {value}")
    if recipe.output.save_steps < 1:
        raise where.error(_node(root, "output", "save_steps"), "output.save_steps", "must be at least 1")


def resolve_reward(name: str):
    """The reward function for a builtin name or ``module:function``; RecipeError if not importable."""
    if name in BUILTIN_REWARDS:
        from envkit.train import rewards

        return getattr(rewards, name)
    module_name, _, function = name.partition(":")
    if not module_name or not function:
        close = difflib.get_close_matches(name, BUILTIN_REWARDS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise RecipeError(f"unknown reward {name!r}: {hint}use a builtin ({', '.join(BUILTIN_REWARDS)}) or module:function")
    import importlib

    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the recipe's problem to report
        raise RecipeError(f"cannot import {module_name!r}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    found = getattr(module, function, None)
    if not callable(found):
        raise RecipeError(f"{module_name!r} has no function {function!r}")
    return found
