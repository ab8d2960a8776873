"""Evaluate a package's Requires-Dist against the facts, as pip would, without pip."""

from __future__ import annotations

from functools import lru_cache

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envkit.facts import Facts, Package

SYS_PLATFORM = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}


def marker_environment(facts: Facts, extra: str = "") -> dict[str, str]:
    """PEP 508 marker variables of the machine the facts describe (not this interpreter)."""
    host = facts.host
    return {
        "python_version": ".".join(host.python.split(".")[:2]),
        "python_full_version": host.python,
        "platform_system": host.os,
        "platform_machine": host.arch,
        "sys_platform": SYS_PLATFORM.get(host.os, host.os.lower()),
        "os_name": "nt" if host.os == "Windows" else "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_release": host.kernel,
        "extra": extra,
    }


@lru_cache(maxsize=4096)
def parsed(line: str) -> Requirement | None:
    """A Requires-Dist line parsed once per process (several rules read the same packages'); None if invalid."""
    try:
        return Requirement(line)
    except InvalidRequirement:
        return None


def requirements(package: Package, facts: Facts, extra: str = "") -> list[Requirement]:
    """The requirements that apply here; with ``extra``, only those of that extra."""
    environment = marker_environment(facts, extra)
    applicable = []
    for line in package.requires:
        # Whether the marker names an extra, read before parsing: most lines of a large package belong to
        # extras (transformers, vLLM), and parsing them was most of the doctor's rule time (issue #16).
        if ("extra" in line.partition(";")[2]) != bool(extra):
            continue
        req = parsed(line)
        if req is None:
            continue
        try:
            if req.marker is None or req.marker.evaluate(environment):
                applicable.append(req)
        except (UndefinedEnvironmentName, InvalidVersion):
            # packaging < 24 raises on `platform_release >= "6"` with a kernel such as 6.8.0-1017-aws: not applicable
            continue
    return applicable


def requirement_on(package: Package, dependency: str, facts: Facts, extra: str = "") -> Requirement | None:
    name = canonicalize_name(dependency)
    return next((r for r in requirements(package, facts, extra) if canonicalize_name(r.name) == name), None)


def satisfied(req: Requirement, version: str) -> bool:
    try:
        return req.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def installed_version(facts: Facts, name: str) -> str | None:
    return facts.installed.get(canonicalize_name(name)) or (facts.packages[name].version if name in facts.packages else None)
