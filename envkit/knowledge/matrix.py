"""Queries over matrix.json: which releases of a package declare what."""

from __future__ import annotations

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from envkit.knowledge import load


def releases(package: str) -> list[tuple[Version, dict]]:
    """(version, record) for every known release of ``package``, newest first."""
    table = load("matrix")["packages"].get(package, {})
    return sorted(((Version(v), r) for v, r in table.items()), key=lambda item: item[0], reverse=True)


def record(package: str, version: str) -> dict | None:
    return load("matrix")["packages"].get(package, {}).get(version)


def spec(text: str | None) -> SpecifierSet:
    try:
        return SpecifierSet("" if text in (None, "*") else text)
    except InvalidSpecifier:
        return SpecifierSet()


def vllm_fitting(torch_version: str, window: SpecifierSet | None = None) -> list[Version]:
    """vLLM releases whose torch pin admits ``torch_version`` and that lie in ``window``, newest first."""
    torch = Version(torch_version).public
    return [
        version
        for version, rec in releases("vllm")
        if spec(rec["requires"].get("torch")).contains(torch, prereleases=True)
        and (window is None or window.contains(version, prereleases=True))
    ]


def torch_pinned_by(vllm_version: str) -> str | None:
    """The torch a vLLM release pins (``==2.11.0`` -> ``2.11.0``), None when unknown."""
    rec = record("vllm", vllm_version)
    pin = rec and rec["requires"].get("torch", "")
    return pin[2:] if pin and pin.startswith("==") else None
