"""Queries over a version matrix (matrix.json): which releases of a package declare what."""

from __future__ import annotations

import re
from functools import cache

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from envkit.knowledge import load


def spec(text: str | None) -> SpecifierSet:
    try:
        return SpecifierSet("" if text in (None, "*") else text)
    except InvalidSpecifier:
        return SpecifierSet()


MANYLINUX_LEGACY = {"manylinux1": "2.5", "manylinux2010": "2.12", "manylinux2014": "2.17"}  # PEP 600's aliases


def manylinux_glibc(platform: str) -> tuple[Version, str] | None:
    """(glibc, machine) of a manylinux platform tag: manylinux_2_28_x86_64 -> (2.28, x86_64),
    manylinux2014_aarch64 -> (2.17, aarch64); None for any other platform."""
    match = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", platform)
    if match:
        return Version(f"{match[1]}.{match[2]}"), match[3]
    legacy, _, arch = platform.partition("_")
    return (Version(MANYLINUX_LEGACY[legacy]), arch) if legacy in MANYLINUX_LEGACY and arch else None


class Matrix:
    """A matrix document: {"packages": {name: {version: record}}} with a few questions on it."""

    def __init__(self, doc: dict):
        self.doc = doc

    @classmethod
    @cache
    def shipped(cls) -> Matrix:
        return cls(load("matrix"))

    def releases(self, package: str) -> list[tuple[Version, dict]]:
        """(version, record) for every known release of ``package``, newest first."""
        table = self.doc["packages"].get(package, {})
        return sorted(((Version(v), r) for v, r in table.items()), key=lambda item: item[0], reverse=True)

    def newest(self, package: str) -> Version | None:
        """The newest release of ``package`` the matrix has seen (None: not a package it tracks)."""
        releases = self.releases(package)
        return releases[0][0] if releases else None

    def refreshed(self, package: str) -> str | None:
        """The day ``package``'s releases were last read from the index (``envkit matrix refresh``)."""
        return self.doc.get("refreshed", {}).get(package, self.doc.get("generated"))

    def record(self, package: str, version: str) -> dict | None:
        return self.doc["packages"].get(package, {}).get(str(version))

    def requirement(self, package: str, version: str, dependency: str) -> SpecifierSet:
        """What a release declares about a dependency (empty: no constraint)."""
        rec = self.record(package, version) or {}
        return spec(rec.get("requires", {}).get(dependency))

    def torch_pinned_by(self, vllm_version: str) -> str | None:
        """The torch a vLLM release pins (``==2.11.0`` -> ``2.11.0``), None when unknown."""
        pin = (self.record("vllm", vllm_version) or {}).get("requires", {}).get("torch", "")
        return pin[2:] if pin.startswith("==") else None
