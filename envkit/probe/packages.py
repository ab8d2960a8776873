"""Installed stack packages from their metadata: versions and Requires-Dist, never an import."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

from packaging.version import Version

from envkit.facts import Package
from envkit.knowledge import PROBED_PACKAGES
from envkit.knowledge.matrix import manylinux_glibc
from envkit.probe.elf import dynamic_symbols, glibc_needed, needed_libraries


def probe_packages(names: tuple[str, ...] = PROBED_PACKAGES) -> dict[str, Package]:
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
        if name in COMPILED:
            package.glibc_needed = _glibc_needed(dist)
        found[name] = package
    if "flash-attn" in found and "torch" in found:
        found["flash-attn"].missing_torch_symbols = _missing_torch_symbols(metadata.distribution("flash-attn"), metadata.distribution("torch"))
    return found


# Packages whose wheels carry compiled extensions linked against the system's glibc.
COMPILED = ("torch", "vllm", "flash-attn", "xformers", "bitsandbytes", "flashinfer-python", "deepspeed")
# Itanium-mangled names in torch's namespaces (c10::, at::, torch::), const members too.
TORCH_SYMBOL = re.compile(r"_ZN?K?(3c10|2at|5torch)")


def _extensions(dist: metadata.Distribution, depth: int = 3) -> list[str]:
    """The dist's shared objects at most ``depth`` path parts deep (vllm/_C.abi3.so, torch/lib/libtorch_cpu.so,
    flash_attn_2_cuda...so), from RECORD's text: ``dist.files`` parses and stats every entry (4,630 for vLLM
    0.26: 0.2 s of the doctor's 0.26 s on an H200 machine); a listed file that is gone reads as no ELF."""
    paths = (line.partition(",")[0] for line in (dist.read_text("RECORD") or "").splitlines())
    return [str(dist.locate_file(p)) for p in paths if p.count("/") < depth and ".so" in p.rpartition("/")[2]]


def _wheel_glibc(dist: metadata.Distribution) -> str | None:
    """The glibc a wheel's manylinux tag promises to need (WHEEL: 'Tag: cp38-abi3-manylinux_2_31_x86_64')."""
    tags = [line.partition(":")[2].strip().rpartition("-")[2] for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    versions = [found[0] for found in map(manylinux_glibc, tags) if found]
    return str(min(versions)) if versions else None


def _glibc_needed(dist: metadata.Distribution) -> str | None:
    """The newer of what the wheel tag claims and what its extensions' symbol versions ask (vllm#41103: a
    manylinux_2_31 wheel whose _C.abi3.so needs GLIBC_2.34)."""
    found = [v for v in (_wheel_glibc(dist), *map(glibc_needed, _extensions(dist))) if v]
    return str(max(map(Version, found))) if found else None


def _missing_torch_symbols(extension: metadata.Distribution, torch: metadata.Distribution, limit: int = 5) -> list[str]:
    """torch C++ symbols flash-attn's extension links that the installed torch exports nowhere: it was built
    against another torch and fails at import ("undefined symbol: _ZN3c10...")."""
    wanted = {name for path in _extensions(extension) for name in dynamic_symbols(path)[0] if TORCH_SYMBOL.match(name)}
    if not wanted:
        return []
    exported = set().union(*(dynamic_symbols(path)[1] for path in _extensions(torch)))
    return sorted(wanted - exported)[:limit]


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
    top = [path for path in _extensions(dist, depth=2) if path.endswith(".so") and Path(path).parent.name == "vllm"]
    return sorted({lib for path in top for lib in needed_libraries(path) if lib.startswith("libcudart.so")})
