"""Facts: everything the probe learns about a machine, as plain data.

Facts are the only input of the rules, so a snapshot written with
``envkit doctor --dump-facts`` replays exactly (``--facts FILE``).  The JSON
layout is versioned by ``SCHEMA``; docs/facts-schema.md describes each field.

Dataclasses, not pydantic: the doctor must start in well under 0.3 s and the
schema is small and flat, so stdlib dataclasses with an explicit ``from_dict``
cost nothing at import and need no dependency.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

SCHEMA = "envkit.facts/1"


class FactsError(ValueError):
    """A facts file that cannot be read or does not follow the schema."""


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
        entries = [e.strip() for e in value.split(",") if e.strip()]
        if not all(e.lstrip("-").isdigit() for e in entries):
            return list(self.gpus)
        visible = []
        for entry in entries:
            if int(entry) < 0:
                break  # CUDA stops at the first invalid index
            visible += [g for g in self.gpus if g.index == int(entry)]
        return visible

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Facts:
        from envkit.probe.environ import mask_env  # envkit.probe imports this module

        schema = data.get("schema")
        if schema != SCHEMA:
            raise FactsError(f"schema is {schema!r}, expected {SCHEMA!r}")
        try:
            return cls(
                host=_build(Host, data["host"]),
                driver=_build(Driver, data["driver"]),
                gpus=[_build(Gpu, g) for g in data.get("gpus", [])],
                packages={k: _package(k, v) for k, v in _mapping(data, "packages").items()},
                installed=dict(_mapping(data, "installed")),
                env=mask_env(dict(_mapping(data, "env"))),
                cuda_visible_devices=_optional_str(data, "cuda_visible_devices"),
                target=data.get("target"),
                collected_at=data.get("collected_at", ""),
                envkit_version=data.get("envkit_version", ""),
            )
        except KeyError as exc:
            raise FactsError(f"missing field {exc.args[0]!r}") from None
        except TypeError as exc:
            raise FactsError(str(exc)) from None

    @classmethod
    def load(cls, path: str | Path) -> Facts:
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise FactsError(f"cannot read {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise FactsError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise FactsError(f"{path}: expected a JSON object")
        try:
            return cls.from_dict(data)
        except FactsError as exc:
            raise FactsError(f"{path}: {exc}") from None


def _build(kind: type, data: Any) -> Any:
    """Build a dataclass from a dict, ignoring unknown keys (forward compatible), checking value types."""
    if not isinstance(data, dict):
        raise TypeError(f"{kind.__name__.lower()} must be an object")
    hints = typing.get_type_hints(kind)
    values = {k: v for k, v in data.items() if k in hints}
    for name, value in values.items():
        if not _fits(hints[name], value):
            raise TypeError(f"{kind.__name__.lower()}.{name}: unexpected value {value!r:.60}")
    return kind(**values)


def _fits(kind: Any, value: Any) -> bool:
    """``value`` matches the annotation (scalars, Optional, list/dict of scalars; anything else passes)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(k, value) for k in typing.get_args(kind))
    if origin in (list, dict):
        return isinstance(value, origin)
    if kind is type(None):
        return value is None
    if kind in (int, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or isinstance(value, int))
    if kind in (str, bool):
        return isinstance(value, kind)
    return True


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be a string or null")
    return value


def _mapping(data: dict[str, Any], key: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise TypeError(f"{key} must be an object")
    return value


def _package(name: str, data: Any) -> Package:
    package = _build(Package, data)
    try:
        Version(package.version)
    except InvalidVersion:
        raise TypeError(f"packages.{name}: version {package.version!r} is not a PEP 440 version") from None
    return package
