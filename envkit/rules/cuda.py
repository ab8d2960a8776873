"""Driver & CUDA rules: driver vs torch's CUDA, torch's kernels vs the GPU, vLLM's CUDA vs torch's."""

from __future__ import annotations

from packaging.version import Version

from envkit.facts import Facts
from envkit.knowledge import arches_cover, cuda_table, curated, torch_arches, torch_variants
from envkit.knowledge.matrix import Matrix
from envkit.rules.base import Outcome, fail, ok, rule, skip, warn
from envkit.rules.gpus import describe


def cpu_torch_fix(version: str) -> tuple[str, tuple[str, ...]]:
    """(command, requirements for --fix) that swap a +cpu torch for the CUDA build of the same release.  The
    index names the CUDA variant: ``torch==2.13.0`` alone is also satisfied by ``2.13.0+cpu`` (PEP 440 local
    versions), so a pip set up with the CPU index would install the CPU build again; --fix pins the local
    version (``torch==2.13.0+cu130``), which only PyTorch's index has (envkit.doctor_output.repair_indexes)."""
    public = Version(version).public
    cuda = (Matrix.shipped().record("torch", public) or {}).get("cuda")
    if not cuda:
        return f"pip install --force-reinstall 'torch=={public}' with the CUDA build of your choice (https://pytorch.org/get-started/locally/)", ()
    command, requirement = _cuda_build(public, cuda)
    return f"{command}  (the CUDA {cuda} build; a +cpu build has no GPU support)", (requirement,)


def _cuda_build(public: str, cuda: str) -> tuple[str, str]:
    """(pip command, local-version requirement) installing torch ``public``'s build for CUDA ``cuda``."""
    backend = "cu" + cuda.replace(".", "")
    index = curated("torch_index")["url"].format(backend=backend)
    return f"pip install --force-reinstall 'torch=={public}' --index-url {index}", f"torch=={public}+{backend}"


def _driver_floor(cuda: str) -> str | None:
    return cuda_table()["min_driver"].get(cuda)


@rule("EK201", "driver-cuda", "driver")
def driver_cuda(facts: Facts) -> Outcome:
    """The driver supports the CUDA version torch was built with.

    PyTorch wheels bundle their CUDA runtime, but the kernel driver must be at
    least the one that CUDA release needs (NVIDIA's driver table).  A driver of
    the same CUDA major but older minor works through minor-version
    compatibility, without PTX JIT: a warning.  An older major fails at
    `torch.cuda.is_available()`.  Fix: upgrade the driver, or install a torch
    built for an older CUDA (the PyTorch index's cuXYZ variants).
    """
    torch = facts.package("torch")
    if not torch:
        return skip("torch not installed")
    if not torch.cuda:
        if facts.visible_gpus():
            return fail(f"torch {torch.version} is a CPU build", "torch/version.py: cuda = None", *cpu_torch_fix(torch.version))
        return skip(f"torch {torch.version} is a CPU build and there is no GPU")
    floor = _driver_floor(torch.cuda)
    need = f"CUDA {torch.cuda} needs driver >= {floor}" if floor else f"CUDA {torch.cuda}"
    driver = facts.driver
    if facts.target or not driver.version:
        return skip(f"driver not known; {need}", f"torch {torch.version}")
    have = Version(driver.version)
    evidence = f"torch {torch.version} (CUDA {torch.cuda}); driver {driver.version}" + (
        f" (CUDA {driver.cuda_version})" if driver.cuda_version else ""
    )
    if floor and have >= Version(floor):
        return ok(f"driver {driver.version} runs CUDA {torch.cuda}", evidence)
    if driver.cuda_version and Version(driver.cuda_version) >= Version(torch.cuda):
        return ok(f"driver {driver.version} runs CUDA {torch.cuda}", evidence)
    major = torch.cuda.split(".")[0]
    compat = cuda_table()["minor_compat_driver"].get(major)
    fix = f"upgrade the NVIDIA driver to >= {floor or compat}, or install torch built for CUDA {driver.cuda_version or 'your driver'}"
    if compat and have >= Version(compat):
        return warn(f"driver {driver.version} runs CUDA {torch.cuda} only through minor-version compatibility", evidence, fix)
    return fail(f"driver {driver.version} is too old for CUDA {torch.cuda}", evidence, fix)


@rule("EK202", "torch-arch", "driver")
def torch_arch(facts: Facts) -> Outcome:
    """torch's CUDA build ships kernels for this GPU's architecture.

    Each PyTorch CUDA variant of each torch release is compiled for a list of
    architectures (cu126 stops at sm_90; cu128 adds sm_100/sm_120; CUDA 13
    drops sm_50-sm_72; torch 2.11 drops sm_70 from cu128/cu129 too, pytorch
    PR #172598).  Kernels for sm_X.Y run on sm_X.Z for Z >= Y.  Missing
    kernels mean "no kernel image is available for execution on the device".
    Fix: install the same torch from the variant that covers the GPU.
    """
    torch = facts.package("torch")
    gpus = [g for g in facts.visible_gpus() if g.cc]
    if not torch or not torch.cuda or not gpus:
        return skip("needs a CUDA torch and a GPU")
    arches = torch_arches(torch.version, torch.cuda)
    if arches is None:
        return warn(f"architectures of torch {torch.version}'s CUDA {torch.cuda} build unknown",
                    f"torch {torch.version}", "check torch.cuda.get_arch_list() and refresh envkit's knowledge")
    uncovered = [g for g in gpus if not arches_cover(arches, g.cc)]
    evidence = f"torch {torch.version} ships sm_{', sm_'.join(a.replace('.', '') for a in arches)}"
    if uncovered:
        gpu = describe(uncovered[0])
        return fail(f"torch has no kernels for {gpu}", evidence, *_arch_fix(torch.version, uncovered))
    return ok(f"torch has kernels for {describe(gpus[0])}", evidence)


def _arch_fix(version: str, uncovered: list) -> tuple[str, tuple[str, ...]]:
    """(fix, requirements for --fix): the newest CUDA build of the same torch release that covers every
    uncovered GPU (V100 + torch 2.11.0+cu128 -> 2.11.0+cu126), or words where no build of it does."""
    fitting = [c for c, a in torch_variants(version).items() if all(arches_cover(a, g.cc) for g in uncovered)]
    public = Version(version).public
    if not fitting:
        return f"install a torch release built with kernels for {describe(uncovered[0])} (no build of {public} is)", ()
    command, requirement = _cuda_build(public, fitting[-1])
    return f"{command}  (torch {public}'s CUDA {fitting[-1]} build has them)", (requirement,)


@rule("EK203", "vllm-cuda", "driver", needs_vllm=True)
def vllm_cuda(facts: Facts) -> Outcome:
    """vLLM's compiled extensions and torch use the same CUDA major.

    Read from the `libcudart.so.N` that vLLM's `.so` files link (ELF
    DT_NEEDED), without importing vLLM.  A CUDA-13 vLLM beside a CUDA-12 torch
    fails at import with an undefined symbol or a missing libcudart.  Fix:
    install the vLLM wheel built for torch's CUDA (or the torch vLLM pins).
    """
    vllm, torch = facts.package("vllm"), facts.package("torch")
    if not vllm or not torch or not torch.cuda:
        return skip("needs vllm and a CUDA torch")
    if not vllm.cudart_needed:
        return skip("vLLM's extensions link no libcudart (statically linked or not found)")
    majors = {lib.rsplit(".so.", 1)[-1].split(".")[0] for lib in vllm.cudart_needed}
    torch_major = torch.cuda.split(".")[0]
    evidence = f"vllm {vllm.version} links {', '.join(vllm.cudart_needed)}; torch {torch.version} is CUDA {torch.cuda}"
    if majors != {torch_major}:
        return fail(
            "vLLM and torch are built for different CUDA majors",
            evidence,
            f"install the vllm wheel built for CUDA {torch_major}, or the torch that vllm {vllm.version} pins",
        )
    return ok(f"vLLM and torch both use CUDA {torch_major}", evidence)
