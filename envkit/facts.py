"""Facts: everything the probe learns about a machine, as plain data.

Facts are the only input of the rules, so a snapshot written with
``envkit doctor --dump-facts`` replays exactly (``--facts FILE``).  The JSON
layout is versioned by ``SCHEMA``; docs/facts-schema.md describes each field.

Dataclasses, not pydantic: the doctor must start in well under 0.3 s and the
schema is small and flat, so stdlib dataclasses with an explicit ``from_dict``
cost nothing at import and need no dependency.
"""

from __future__ import annotations

import errno
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from envkit.binding import Binder
from envkit.errors import UsageError
from envkit.files import read_regular
from envkit.knowledge import cc_tuple
from envkit.masking import mask_env, mask_text

SCHEMA = "envkit.facts/1"
MAX_BYTES = 16 * 1024 * 1024  # a facts file is ~50 KB; the bound keeps /dev/zero or a wrong file from filling memory


class FactsError(UsageError, ValueError):
    """A facts file that cannot be read or does not follow the schema."""


def device_index(entry: str) -> int | None:
    """A CUDA_VISIBLE_DEVICES entry as the GPU index CUDA reads (ASCII digits; a number past any GPU count
    is -1, invalid), None when it is not an index (GPU-<uuid>, MIG-...).  The variable is anyone's text:
    str.isdigit() also accepts "²", which int() refuses."""
    if not re.fullmatch(r"-?[0-9]+", entry):
        return None
    return int(entry) if len(entry) <= 9 else -1


def _is_version(text: str) -> bool:
    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


# The strings rules parse, as field metadata (check, what it must be); checked at load so that no rule meets a bad one.
VERSION = (_is_version, "a PEP 440 version")
CUDA = (_is_version, 'a CUDA version, e.g. "13.0"')


@dataclass
class Gpu:
    index: int
    name: str
    compute_capability: str | None = field(default=None, metadata={"help": '"9.0"', "format": (
        re.compile(r"[0-9]{1,3}\.[0-9]{1,3}").fullmatch, 'a compute capability N.N, e.g. "9.0"')})
    memory_total_mib: int | None = None
    memory_free_mib: int | None = None
    mig_mode: bool | None = None
    catalog_id: str | None = None  # "h100" when the name matches the catalog

    @property
    def cc(self) -> tuple[int, int] | None:
        return cc_tuple(self.compute_capability) if self.compute_capability else None


@dataclass
class Driver:
    source: str  # "nvml", "procfs" or "none"
    version: str | None = field(default=None, metadata={"format": (_is_version, 'a driver version, e.g. "580.95.05"')})
    cuda_version: str | None = field(default=None, metadata={"help": "the newest CUDA the driver supports",
                                                             "format": CUDA})
    error: str | None = None  # why NVML could not be read


@dataclass
class Host:
    os: str  # platform.system(): "Linux", "Darwin", "Windows"
    kernel: str = ""
    arch: str = ""  # "x86_64", "aarch64"
    glibc: str | None = None
    python: str = field(default="", metadata={"format": (lambda text: text == "" or _is_version(text),
                                                          'a Python version, e.g. "3.12.3"')})
    wsl: bool = False
    container: str | None = None  # "docker", "podman", "kubernetes", ... or None
    ram_total_mib: int | None = None
    ram_available_mib: int | None = None
    cache_dir: str | None = None  # where models land (HF_HOME or its default)
    cache_free_mib: int | None = None
    shm_total_mib: int | None = None


@dataclass
class Package:
    version: str = field(metadata={"format": VERSION})
    requires: list[str] = field(default_factory=list)  # Requires-Dist lines, verbatim
    cuda: str | None = field(default=None, metadata={"help": "torch: CUDA of the build; None for CPU builds",
                                                     "format": CUDA})
    cudart_needed: list[str] = field(default_factory=list)  # vllm: libcudart.so.N its .so files link
    built_for_torch: str | None = field(default=None, metadata={  # a compiled torch extension's (xformers)
        "help": "the torch its binary was built against",
        "format": (_is_version, 'a torch version, e.g. "2.10.0+cu128"')})
    glibc_needed: str | None = field(default=None, metadata={  # compiled packages
        "help": "the newest glibc its wheel tag or its extensions' symbol versions ask for",
        "format": (_is_version, 'a glibc version, e.g. "2.34"')})
    # flash-attn: the torch C++ symbols it links that the installed torch lacks
    missing_torch_symbols: list[str] = field(default_factory=list)


@dataclass
class Facts:
    host: Host
    driver: Driver
    gpus: list[Gpu] = field(default_factory=list)
    packages: dict[str, Package] = field(default_factory=dict)
    # every installed distribution, canonical name -> version: what `pip check` needs
    installed: dict[str, str] = field(default_factory=dict)
    # installed distributions outside every Python prefix in a folder with no 'site-packages' in its path (EK605)
    outside_site_packages: list[str] = field(default_factory=list)
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
        binder = Binder(strict=False, mapping="an object")  # unknown keys skipped: a newer envkit's file still loads
        facts = binder.bind(cls, data)
        if binder.problems:
            first = binder.problems[0]
            raise FactsError(f"{first.path or 'the file'}: {first.message}")
        facts.env = mask_env(facts.env)
        if facts.host.cache_dir:
            facts.host.cache_dir = mask_text(facts.host.cache_dir)
        return facts

    @classmethod
    def load(cls, path: str | Path) -> Facts:
        try:
            raw = read_regular(path, MAX_BYTES)  # a FIFO: refused, not waited on
        except OSError as exc:
            more = " (envkit doctor --dump-facts FILE writes one)" if exc.errno == errno.EFBIG else ""
            raise FactsError(f"cannot read {path}: {exc.strerror}{more}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            byte = exc.object[exc.start]
            raise FactsError(f"{path}: not UTF-8 text (byte {byte:#04x} at offset {exc.start})") from None
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
