"""Installed stack packages from their metadata: versions and Requires-Dist, never an import."""

from __future__ import annotations

import json
import os
import re
import sys
from importlib import metadata

from packaging.utils import canonicalize_name

from envkit.facts import Package
from envkit.knowledge import STACK
from envkit.probe.elf import needed_libraries


def probe_packages(names: tuple[str, ...] = STACK) -> dict[str, Package]:
    found = {}
    for name in names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        package = Package(version=dist.version, requires=list(dist.requires or []))
        if name == "torch":
            package.cuda = _torch_cuda(dist)
        elif name == "vllm":
            package.cudart_needed = _cudart_needed(dist)
        elif name == "xformers":
            package.built_for_torch = _xformers_torch(dist)
        found[name] = package
    return found


def probe_installed(path: list[str] | None = None) -> dict[str, str]:
    """Every distribution on ``sys.path`` by canonical name, from the dist-info folder names.

    Reading folder names instead of each METADATA file keeps this at a few
    milliseconds for environments of hundreds of packages.  The first entry
    on the path wins, as it does for imports.
    """
    found: dict[str, str] = {}
    for entry in sys.path if path is None else path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            stem, dot, suffix = name.rpartition(".")
            if suffix not in ("dist-info", "egg-info") or "-" not in stem:
                continue
            project, _, version = stem.partition("-")
            found.setdefault(canonicalize_name(project), version.partition("-")[0])
    return dict(sorted(found.items()))


def _torch_cuda(dist: metadata.Distribution) -> str | None:
    """torch/version.py records the CUDA of the build (``cuda = '13.0'``, None on CPU builds)."""
    try:
        text = dist.locate_file("torch/version.py").read_text()
    except OSError:
        return None
    match = re.search(r"^cuda\s*(?::\s*[^=]+)?=\s*['\"]([\d.]+)['\"]", text, re.MULTILINE)
    return match.group(1) if match else None


def _xformers_torch(dist: metadata.Distribution) -> str | None:
    """xformers/cpp_lib.json records the torch its extension was built against ({"version": {"torch": "2.10.0+cu128"}});
    its metadata only says ``torch>=2.10``."""
    try:
        return json.loads(dist.locate_file("xformers/cpp_lib.json").read_text())["version"]["torch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cudart_needed(dist: metadata.Distribution) -> list[str]:
    """libcudart.so.N linked by vLLM's top-level extensions (vllm/_C.abi3.so, vllm/_moe_C.abi3.so ...)."""
    libraries = set()
    for file in dist.files or []:
        if len(file.parts) == 2 and file.parts[0] == "vllm" and file.name.endswith(".so"):
            libraries.update(lib for lib in needed_libraries(str(dist.locate_file(file))) if lib.startswith("libcudart.so"))
    return sorted(libraries)
