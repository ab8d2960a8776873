"""Knowledge shipped as data: GPU catalog, CUDA/driver tables, curated facts, version matrix.

Every table is a JSON file beside this module with its source and date; code
reads them through these accessors and never spells a version in a branch.
"""

from __future__ import annotations

import difflib
import json
import re
from functools import cache
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from envkit.errors import UsageError

HERE = Path(__file__).parent

# The packages of the RL training stack: probed with their metadata, and the
# ones whose mutual version conflicts break imports.
PROBED_PACKAGES = (
    "torch",
    "vllm",
    "trl",
    "transformers",
    "peft",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "triton",
    "torchao",
    "flashinfer-python",
    "xformers",
    "deepspeed",
    "unsloth",
    "unsloth_zoo",
    "flash-attn",
)


@cache
def load(name: str) -> dict:
    return json.loads((HERE / f"{name}.json").read_text())


def in_window(version: str | Version, window: str) -> bool:
    """Whether an installed version falls inside a knowledge window (a specifier set; '' holds every version).

    The one place windows are matched, on the release alone (``base_version``): a nightly or source build
    (vLLM's ``0.21.1.dev0``), a release candidate (``0.20.0rc1``), a post release and a local build
    (``2.11.0+cu130``) carry the code of the release they lead to or rebuild.  PEP 440 matching keeps
    pre-releases out of every set that names none (packaging 23.2-25: ``0.21.1.dev0`` is not ``>=0.20.0``;
    every release: ``0.20.0rc1`` is not ``>=0.20.0``, ``1.16.0.post1`` is not ``<=1.16.0``), so such builds
    would pass as outside the known-bad windows.
    """
    return Version(Version(str(version)).base_version) in SpecifierSet(window)


def inside_windows(entry: dict, versions: dict) -> bool:
    """Whether ``versions`` (every name an incompatibility's windows name) fall inside one of its windows."""
    return any(all(in_window(versions[name], spec) for name, spec in window.items()) for window in entry["windows"])


def inside_checks(pins: dict[str, str]) -> list[dict]:
    """The incompatibilities (knowledge/incompatibilities.json), failing and warning, that a resolved set
    (name -> version) falls inside: those whose every named package it holds, inside one of their windows.  What
    a lock must leave (issue #23: what envkit installs passes its own doctor); the solver and the lock read it."""
    pinned = {canonicalize_name(name): version for name, version in pins.items()}
    found = []
    for entry in load("incompatibilities")["checks"]:
        names = {name for window in entry["windows"] for name in window}
        if names <= set(pinned) and inside_windows(entry, {name: pinned[name] for name in names}):
            found.append(entry)
    return found


def gpu_catalog() -> dict[str, dict]:
    return load("gpus")["gpus"]


class UnknownGpu(UsageError, ValueError):
    """A GPU name the catalog lacks; the message names the closest one and every known name."""


def catalog_key(name: str, also: tuple[str, ...] = ()) -> str:
    """The catalog key of a GPU named as --target takes it (any case), or one of ``also`` (build's "cpu");
    raises UnknownGpu with a did-you-mean.  The one lookup every --target goes through."""
    key = name.strip().lower()
    known = [*gpu_catalog(), *also]
    if key in known:
        return key
    # A family the catalog splits by memory (a100 -> a100-40gb, a100-80gb) before a look-alike name (v100)
    close = [k for k in known if key and k.startswith(key)] or difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise UnknownGpu(f"unknown GPU {name!r}; {hint}known: {', '.join(known)}")


def catalog_id_for(gpu_name: str) -> str | None:
    """Catalog key of a GPU by its NVML name ("NVIDIA H100 80GB HBM3" -> "h100")."""
    for key, entry in gpu_catalog().items():
        if re.search(entry["match"], gpu_name, re.IGNORECASE):
            return key
    return None


def curated(key: str) -> dict:
    return load("curated")[key]


def late_vllm_gpu(catalog_id: str | None) -> dict | None:
    """The curated vLLM scope of a GPU vLLM supported late (gb10_vllm: DGX Spark's GB10 -- bf16 from one
    release, FP8 checkpoints from a later one, Unsloth's fast_inference off by name), or None."""
    scope = curated("gb10_vllm")
    return scope if catalog_id in scope["gpus"] else None


def cuda_table() -> dict:
    return load("cuda")


def cc_tuple(text: str) -> tuple[int, int]:
    """A compute capability ("9.0", "12.1"), or a CUDA or torch minor ("2.11"), as a comparable (major, minor)."""
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def vllm_cc_floor(vllm: str | None = None) -> str:
    """The compute capability vLLM's published wheels need (curated vllm_min_compute_capability): 7.5 from the
    CUDA 13 builds (0.20.0) on, 7.0 before; without a version the lowest, which some release still runs on."""
    floor = curated("vllm_min_compute_capability")
    return floor["before"] if vllm is None or in_window(vllm, f"<{floor['from_vllm']}") else floor["value"]


def has_bf16(compute_capability: str | None) -> bool:
    """bf16 math on a GPU of this compute capability (curated bf16_min_compute_capability: Ampere, 8.0)."""
    floor = cc_tuple(curated("bf16_min_compute_capability")["value"])
    return compute_capability is not None and cc_tuple(compute_capability) >= floor


def pdl_switch(compute_capability: str | None, vllm: str | None) -> tuple[str, str] | None | bool:
    """vLLM's LoRA PDL on this GPU (curated ``pdl``: SM100/SM103 fail with it on): False where nothing is needed
    (another GPU, no vLLM); the (variable, value) that turns it off (vLLM 0.15.0+); None where no setting can."""
    pdl = curated("pdl")
    if compute_capability is None or vllm is None or cc_tuple(compute_capability)[0] != pdl["compute_capability_major"]:
        return False
    return (pdl["env"], pdl["value"]) if in_window(vllm, f">={pdl['env_from_vllm']}") else None


def arches_cover(arches: list[str], cc: tuple[int, int]) -> bool:
    """Kernels built for one of ``arches`` run on ``cc``: same major, minor no newer (binary compatibility)."""
    return any(a[0] == cc[0] and a[1] <= cc[1] for a in map(cc_tuple, arches))


def torch_arches(torch_version: str, cuda: str | None) -> list[str] | None:
    """The architectures PyTorch's build of this torch release for this CUDA variant ships kernels for, or
    None where envkit knows no such build.  cuda.json keys each variant's lists by the torch minor they hold
    from: torch 2.11 dropped sm_70 from cu128 (pytorch/pytorch PR #172598), 2.8-2.10 had it."""
    minor = Version(torch_version).release[:2]
    lists = cuda_table()["torch_arches"].get(cuda or "", {})
    since = [key for key in lists if cc_tuple(key) <= minor]
    return lists[max(since, key=cc_tuple)] if since else None


def torch_variants(torch_version: str) -> dict[str, list[str]]:
    """The CUDA variants envkit knows a build of this torch release for, oldest CUDA first, with their lists."""
    table = cuda_table()["torch_arches"]
    found = {cuda: torch_arches(torch_version, cuda) for cuda in sorted(table, key=cc_tuple)}
    return {cuda: arches for cuda, arches in found.items() if arches}


def torch_covers(torch_version: str, cuda: str | None, cc: tuple[int, int]) -> bool:
    """PyTorch's build of this release for this CUDA variant ships kernels for ``cc`` (False when unknown)."""
    return arches_cover(torch_arches(torch_version, cuda) or [], cc)
