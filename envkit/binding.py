"""One binder from a parsed document (a recipe's YAML, a facts file's JSON) to typed dataclasses.

The dataclasses are the schema: a field's annotation is its type check (``Literal`` lists the values,
``X | None`` makes it optional, ``list[X]`` / ``dict[str, X]`` containers), and its metadata carries the rest,
TRL-style: ``field(default=..., metadata={"help": ..., "bound": Bound(...), "format": (check, "what")})``; a field
with ``"extra_keys": resolve`` collects the keys its dataclass does not name (``resolve(key, known)`` gives a key's
type, or why it is refused: grpo's pass-through of TRL's GRPOConfig fields).
Bounds and formats are checked at any depth.  Every problem of a document is collected in one pass, as
(path, message, where) so that the caller can add the file and the line.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,100}")
LARGEST_INT = 2**63  # no number a recipe or facts file holds is beyond (a float field given 400 digits overflowed)
FAILED = object()  # a value that could not be bound (its problems are collected)


@dataclass(frozen=True)
class Bound:
    """An allowed interval for a number (None: unbounded on that side); ``why`` joins the error when given."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself excluded
    high_open: bool = False
    why: str = ""

    def admits(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self) -> str:
        if self.high is None:
            return f"greater than {self.low:g}" if self.low_open else f"at least {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


class PlainFloat(str):
    """A plain (unquoted) YAML scalar that YAML 1.2 reads as a float (1e-4) and PyYAML's YAML 1.1 as a string:
    a number where the field takes one, the text elsewhere."""


@dataclass(frozen=True)
class Problem:
    path: str  # the field, dotted (grpo.learning_rate, gpus[0].name)
    message: str
    at: Literal["value", "key", "parent"] = "value"  # where in the document: the value, its key, the enclosing mapping


class Binder:
    """Binds plain data (dicts, lists, scalars) to a dataclass.  ``strict``: an unknown key is a problem (a recipe)
    rather than skipped (a facts file, forward compatible); ``mapping``: what a mapping is called in messages."""

    def __init__(self, *, strict: bool, mapping: str):
        self.strict, self.mapping = strict, mapping
        self.problems: list[Problem] = []

    def bind(self, cls: type, data: Any, path: str = "") -> Any:
        """The dataclass, or FAILED with ``self.problems`` saying why."""
        if not isinstance(data, dict):
            return self._problem(path, f"expected {self.mapping}, got {kind_of(data, self.mapping)}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("input", True)}
        extra = next((f for f in dataclasses.fields(cls) if "extra_keys" in f.metadata), None)
        hints, values, extras, before = _hints(cls), {}, {}, len(self.problems)
        for key in data:
            if key in fields:
                continue
            if extra is not None and isinstance(key, str):
                kind, refused = extra.metadata["extra_keys"](key, list(fields))
                if refused:
                    self._problem(join(path, key), refused, "key")
                else:
                    extras[key] = self.value(kind, data[key], join(path, key))
            elif self.strict:
                close = difflib.get_close_matches(str(key), fields, n=1)
                hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(fields)})"
                self._problem(join(path, str(key)), f"unknown key{hint}", "key")
        if extras:
            values[extra.name] = extras if not any(v is FAILED for v in extras.values()) else FAILED
        for name, item in fields.items():
            at = join(path, name)
            if name not in data:
                if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
                    self._problem(at, "missing required key", "parent")
                continue
            value = self.value(hints[name], data[name], at)
            if value is not FAILED:
                self._check(item, value, at)
            values[name] = value
        failed = len(self.problems) > before or any(value is FAILED for value in values.values())
        return FAILED if failed else cls(**values)

    def value(self, kind: Any, value: Any, path: str) -> Any:
        if value is FAILED:  # the document's own reader said why (a YAML value that cannot be read)
            return FAILED
        if dataclasses.is_dataclass(kind):
            return self.bind(kind, value, path)
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        if origin in (typing.Union, types.UnionType) and isinstance(value, list):
            kind = next((k for k in args if typing.get_origin(k) is list), kind)  # `[0, 1]` for `list[int] | int`
            origin, args = typing.get_origin(kind), typing.get_args(kind)
        if origin is list:
            if not isinstance(value, list):
                return self._problem(path, f"expected a list, got {kind_of(value, self.mapping)}")
            items = [self.value(args[0], item, f"{path}[{i}]") for i, item in enumerate(value)]
            return FAILED if any(item is FAILED for item in items) else items
        if origin is dict:
            if not isinstance(value, dict):
                return self._problem(path, f"expected {self.mapping}, got {kind_of(value, self.mapping)}")
            if not all(is_text(str(key)) for key in value):
                return self._problem(path, "a key is not valid Unicode text (an unpaired surrogate escape)")
            items = {key: self.value(args[1], item, dict_key(path, key)) for key, item in value.items()}
            return FAILED if any(item is FAILED for item in items.values()) else items
        if isinstance(value, (dict, list)):
            if accepts(kind, value):  # a free-form value (a TRL field typed dict or Any: generation_kwargs)
                return plain(value)
            return self._problem(path, f"expected {describe(kind, self.mapping)}, got {kind_of(value, self.mapping)}")
        if isinstance(value, PlainFloat):
            value = float(value) if accepts(kind, 0.5) else str(value)
        if isinstance(value, str) and not is_text(value):
            return self._problem(path, "not valid Unicode text (an unpaired surrogate escape)")
        if accepts(kind, value):
            return float(value) if kind is float and isinstance(value, int) else value
        if isinstance(value, int) and abs(value) > LARGEST_INT and accepts(kind, 1):
            return self._problem(path, f"{show(value)}... ({len(str(abs(value)))} digits) is beyond ±2**63")
        close = difflib.get_close_matches(value, choices(kind), n=1) if isinstance(value, str) else []
        hint = f" (did you mean {close[0]}?)" if close else ""
        return self._problem(path, f"expected {describe(kind, self.mapping)}, got {show(value)}{hint}")

    def _check(self, item: dataclasses.Field, value: Any, path: str) -> None:
        """The field's metadata: a bound for a number (not null, not auto), a format for a string."""
        bound, form = item.metadata.get("bound"), item.metadata.get("format")
        if bound and isinstance(value, (int, float)) and not isinstance(value, bool) and not bound.admits(value):
            self._problem(path, f"must be {bound.describe()}, got {value}" + (f": {bound.why}" if bound.why else ""))
        if form and isinstance(value, str) and not form[0](value):
            self._problem(path, f"{value!r:.40} is not {form[1]}")

    def _problem(self, path: str, message: str, at: str = "value") -> Any:
        self.problems.append(Problem(path, message, at))
        return FAILED


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def accepts(kind: Any, value: Any) -> bool:
    if kind is Any:
        return True
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(accepts(k, value) for k in typing.get_args(kind))
    if origin is Literal:
        return any(value == v and type(value) is type(v) for v in typing.get_args(kind))
    if origin in (list, dict):  # a single value never fills a container (containers are walked in Binder.value)
        return False
    if kind is type(None):
        return value is None
    if kind is float:  # .inf and .nan are YAML floats (Infinity, NaN in JSON); no number here means them
        return (isinstance(value, float) and math.isfinite(value)) or (accepts(int, value))
    if kind is int:  # within ±2**63: beyond, every consumer (torch, numpy, a C library) overflows or hangs
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= LARGEST_INT
    return isinstance(value, kind)


def plain(value: Any) -> Any:
    """A free-form value as the document wrote it (YAML 1.1's reading: 1e-4 stays text), or FAILED."""
    if isinstance(value, dict):
        items = {key: plain(item) for key, item in value.items()}
        return FAILED if any(item is FAILED for item in items.values()) else items
    if isinstance(value, list):
        items = [plain(item) for item in value]
        return FAILED if any(item is FAILED for item in items) else items
    return str(value) if isinstance(value, PlainFloat) else value


def choices(kind: Any) -> list[str]:
    """The string values a Literal (or a union holding Literals) allows: a wrong one gets a did-you-mean."""
    if typing.get_origin(kind) is Literal:
        return [v for v in typing.get_args(kind) if isinstance(v, str)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return [v for k in typing.get_args(kind) for v in choices(k)]
    return []


def describe(kind: Any, mapping: str = "a mapping") -> str:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(k, mapping) for k in typing.get_args(kind))
    if origin is Literal:
        return " or ".join(repr(v) if isinstance(v, str) else str(v) for v in typing.get_args(kind))
    if origin is list:
        return "a list"
    names = {type(None): "null", float: "a finite number", int: "an integer", bool: "true/false", str: "a string"}
    return names.get(kind, mapping)


def show(value: Any) -> str:
    text = repr(value) if not isinstance(value, (bool, type(None))) else str(value).lower().replace("none", "null")
    return f"{type(value).__name__} {text[:40]}"


def kind_of(value: Any, mapping: str = "a mapping") -> str:
    return mapping if isinstance(value, dict) else "a list" if isinstance(value, list) else "a single value"


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def dict_key(path: str, key: Any) -> str:
    """``path.key``; a key that is not a plain name is quoted (its control characters escaped)."""
    key = str(key)
    return f"{path}.{key}" if PLAIN_KEY.fullmatch(key) else f"{path}[{key!r:.40}]"


def is_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
