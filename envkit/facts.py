"""Facts: everything the probe learns about a machine, as plain data.

Facts are the only input of the rules, so a snapshot written with
``envkit doctor --dump-facts`` replays exactly (``--facts FILE``).  The JSON
layout is versioned by ``SCHEMA``; docs/facts-schema.md describes each field.

Dataclasses, not pydantic: the doctor must start in well under 0.3 s and the
schema is small and flat, so stdlib dataclasses with an explicit ``from_dict``
cost nothing at import and need no dependency.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from packaging.version import InvalidVersion, Version

from envkit.masking import mask_env

SCHEMA = "envkit.facts/1"
MAX_BYTES = 16 * 1024 * 1024  # a facts file is ~50 KB; the bound keeps /dev/zero or a wrong file from filling memory


class FactsError(ValueError):
    """A facts file that cannot be read or does not follow the schema."""


def device_index(entry: str) -> int | None:
    """A CUDA_VISIBLE_DEVICES entry as the GPU index CUDA reads (ASCII digits; a number past any GPU count
    is -1, invalid), None when it is not an index (GPU-<uuid>, MIG-...).  The variable is anyone's text:
    str.isdigit() also accepts "²", which int() refuses."""
    if not re.fullmatch(r"-?[0-9]+", entry):
        return None
    return int(entry) if len(entry) <= 9 else -1


@dataclass
class Gpu:
    index: int
    name: str
    compute_capability: str | None = None  # "9.0"
    memory_total_mib: int | None = None
    memory_free_mib: int | None = None
    mig_mode: bool | None = None
    catalog_id: str | None = None  # "h100" when the name matches the catalog

    @property
    def cc(self) -> tuple[int, int] | None:
        if not self.compute_capability:
            return None
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor or 0)


@dataclass
class Driver:
    source: str  # "nvml", "procfs" or "none"
    version: str | None = None  # "580.95.05"
    cuda_version: str | None = None  # highest CUDA the driver supports, "13.0"
    error: str | None = None  # why NVML could not be read


@dataclass
class Host:
    os: str  # platform.system(): "Linux", "Darwin", "Windows"
    kernel: str = ""
    arch: str = ""  # "x86_64", "aarch64"
    glibc: str | None = None
    python: str = ""
    wsl: bool = False
    container: str | None = None  # "docker", "podman", "kubernetes", ... or None
    ram_total_mib: int | None = None
    ram_available_mib: int | None = None
    cache_dir: str | None = None  # where models land (HF_HOME or its default)
    cache_free_mib: int | None = None
    shm_total_mib: int | None = None


@dataclass
class Package:
    version: str
    requires: list[str] = field(default_factory=list)  # Requires-Dist lines, verbatim
    cuda: str | None = None  # torch: CUDA of the build ("13.0"); None for CPU builds
    cudart_needed: list[str] = field(default_factory=list)  # vllm: libcudart.so.N its .so files link
    built_for_torch: str | None = None  # a compiled torch extension (xformers): the torch its binary was built against
    glibc_needed: str | None = None  # compiled packages: the newest glibc its wheel tag or its extensions' symbol versions ask for
    missing_torch_symbols: list[str] = field(default_factory=list)  # flash-attn: torch C++ symbols it links that torch lacks


@dataclass
class Facts:
    host: Host
    driver: Driver
    gpus: list[Gpu] = field(default_factory=list)
    packages: dict[str, Package] = field(default_factory=dict)
    # every installed distribution, canonical name -> version: what `pip check` needs
    installed: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # secrets appear as "<set>"
    cuda_visible_devices: str | None = None
    target: str | None = None  # set when the GPUs come from the catalog (--target)
    collected_at: str = ""
    envkit_version: str = ""

    def package(self, name: str) -> Package | None:
        return self.packages.get(name)

    def visible_gpus(self) -> list[Gpu]:
        """GPUs that CUDA_VISIBLE_DEVICES leaves visible (all when unset or given as UUIDs)."""
        value = self.cuda_visible_devices
        if value is None:
            return list(self.gpus)
        indices = [device_index(e.strip()) for e in value.split(",") if e.strip()]
        if None in indices:
            return list(self.gpus)
        visible = []
        for index in indices:
            if index < 0:
                break  # CUDA stops at the first invalid index
            visible += [g for g in self.gpus if g.index == index]
        return visible

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Facts:
        """Facts from a parsed facts file; FactsError names the first field that is wrong, and how.

        Everything a rule reads is checked here (types, and the strings rules parse: versions, compute
        capability), so a file that loads never makes a rule fail."""
        schema = data.get("schema")
        if schema != SCHEMA:
            raise FactsError(f"schema is {schema!r:.60}, expected {SCHEMA!r}")
        facts = _build(cls, data, "")
        facts.env = mask_env(facts.env)
        return facts

    @classmethod
    def load(cls, path: str | Path) -> Facts:
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_BYTES + 1)
        except OSError as exc:
            raise FactsError(f"cannot read {path}: {exc.strerror}") from None
        if len(raw) > MAX_BYTES:
            raise FactsError(f"{path}: larger than {MAX_BYTES // 2**20} MiB, not a facts file (envkit doctor --dump-facts FILE writes one)")
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise FactsError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise FactsError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:
            raise FactsError(f"{path}: not a facts file (JSON nested too deeply)") from None
        except ValueError:  # an integer beyond Python's digit limit
            raise FactsError(f"{path}: not a facts file (a number too long to read)") from None
        if not isinstance(data, dict):
            raise FactsError(f"{path}: expected a JSON object")
        try:
            return cls.from_dict(data)
        except FactsError as exc:
            raise FactsError(f"{path}: {exc}") from None


def _is_version(text: str) -> bool:
    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


# The strings rules parse, as (check, what it must be); checked at load so that no rule meets a bad one.
FORMATS: dict[tuple[type, str], tuple[Callable[[str], Any], str]] = {
    (Gpu, "compute_capability"): (re.compile(r"[0-9]{1,3}\.[0-9]{1,3}").fullmatch, 'a compute capability N.N, e.g. "9.0"'),
    (Driver, "version"): (_is_version, 'a driver version, e.g. "580.95.05"'),
    (Driver, "cuda_version"): (_is_version, 'a CUDA version, e.g. "13.0"'),
    (Host, "python"): (lambda text: text == "" or _is_version(text), 'a Python version, e.g. "3.12.3"'),
    (Package, "version"): (_is_version, "a PEP 440 version"),
    (Package, "cuda"): (_is_version, 'a CUDA version, e.g. "13.0"'),
    (Package, "built_for_torch"): (_is_version, 'a torch version, e.g. "2.10.0+cu128"'),
    (Package, "glibc_needed"): (_is_version, 'a glibc version, e.g. "2.34"'),
}
PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def _build(kind: type, data: Any, where: str) -> Any:
    """A dataclass from a JSON object: unknown keys ignored (forward compatible), each value checked."""
    if not isinstance(data, dict):
        raise FactsError(f"{where or 'the file'}: expected an object")
    hints = _hints(kind)
    values = {}
    for item in dataclasses.fields(kind):
        at = f"{where}.{item.name}" if where else item.name
        if item.name not in data:
            if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
                raise FactsError(f"missing field {at!r}")
            continue
        value = _convert(hints[item.name], data[item.name], at)
        check, what = FORMATS.get((kind, item.name), (None, ""))
        if check is not None and value is not None and not check(value):
            raise FactsError(f"{at}: {value!r:.40} is not {what}")
        values[item.name] = value
    return kind(**values)


@functools.cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def _convert(kind: Any, value: Any, where: str) -> Any:
    """``value`` checked against ``kind``: a facts dataclass, list[X], dict[str, X] or a scalar (Optional)."""
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, where)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is list and isinstance(value, list):
        return [_convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict and isinstance(value, dict):
        return {key: _convert(args[1], item, _key(where, key)) for key, item in value.items()}
    if isinstance(value, str) and not _is_text(value):
        raise FactsError(f"{where}: not valid Unicode text (an unpaired surrogate escape)")
    if not _fits(kind, value):
        raise FactsError(f"{where}: expected {_describe(kind)}")
    return value


def _key(where: str, key: str) -> str:
    """``where.key``; a key that is not a plain name is quoted (its control characters escaped)."""
    if not _is_text(key):
        raise FactsError(f"{where}: a key is not valid Unicode text (an unpaired surrogate escape)")
    return f"{where}.{key}" if PLAIN_KEY.fullmatch(key) else f"{where}[{key!r:.40}]"


def _is_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fits(kind: Any, value: Any) -> bool:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(k, value) for k in typing.get_args(kind))
    if origin in (list, dict):
        return False  # containers are walked in _convert
    if kind is type(None):
        return value is None
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(k) for k in typing.get_args(kind))
    names = {str: "a string", int: "an integer", bool: "true or false", type(None): "null", list: "a list", dict: "an object"}
    return names.get(origin or kind, "an object")
