"""Which packages an image of a recipe needs, for which target: the matrix picks, the recipe decides what's in."""

from __future__ import annotations

from dataclasses import dataclass, field

from envkit.knowledge import (cc_tuple, cuda_table, gpu_catalog, has_bf16, late_vllm_gpu, load, pdl_switch,
                              torch_covers, torch_variants)
from envkit.knowledge.matrix import Matrix
from envkit.knowledge.solve import DEFAULT_PYTHON, Constraints, solve
from envkit.recipe.schema import Recipe

# envkit's own runtime needs and the training stack every recipe uses.
BASE_PACKAGES = ("click", "packaging", "nvidia-ml-py", "pyyaml", "accelerate", "datasets", "matplotlib")
PLATFORMS = {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}


@dataclass
class Stack:
    target: str  # catalog key or "cpu"
    arch: str  # x86_64 / aarch64
    python: str
    pins: list[str]  # requirement lines fed to the resolver
    cuda: str | None  # CUDA of the locked torch (None: CPU)
    dtype: str = "fp32"  # the training dtype the target supports: bf16 from compute capability 8.0, else fp16
    torch_backend: str | None = None  # uv --torch-backend when PyPI's default torch doesn't suit the GPU
    driver_floor: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def platform(self) -> str:
        return PLATFORMS[self.arch]

    @property
    def base(self) -> dict[str, str]:
        """The default base image and the Python version it brings: plain Ubuntu for every CUDA (torch's wheels bring
        the CUDA libraries; the Dockerfile adds what NVIDIA's bases would), Debian's python image for CPU."""
        return load("images")["gpu" if self.cuda else "cpu"]


def uses_vllm(recipe: Recipe, target: str) -> bool:
    """vLLM goes into the image unless the recipe turns it off, the target is a CPU, or the backend would not use
    it there (Unsloth turns fast_inference off on GB10 by name: curated gb10_vllm)."""
    if recipe.vllm.enabled is False or target == "cpu":
        return False
    return not (recipe.backend == "unsloth" and late_vllm_gpu(target))


def torch_variant(torch: str, default_cuda: str | None, compute_capability: str) -> str | None:
    """None when PyPI's default build of this torch has kernels for the GPU, else the newest CUDA variant of
    the same release that has."""
    cc = cc_tuple(compute_capability)
    if default_cuda and torch_covers(torch, default_cuda, cc):
        return None
    fitting = [c for c in torch_variants(torch) if torch_covers(torch, c, cc)]
    return fitting[-1] if fitting else None


def choose(recipe: Recipe, target: str, python: str = DEFAULT_PYTHON, arch: str | None = None,
           matrix: Matrix | None = None, torch: str | None = None) -> Stack:
    """The pinned stack for ``recipe`` on ``target`` (a catalog GPU or "cpu"); ``torch``: a version or
    specifier the stack must keep (a machine's own torch, e.g. to bundle only what it lacks)."""
    if target == "cpu":
        pins = ["torch", "transformers", "trl", "peft", *BASE_PACKAGES]
        # PyPI's Linux torch is the CUDA build (GBs of nvidia-* wheels); the CPU build lives on PyTorch's index.
        return Stack("cpu", arch or "x86_64", python, sorted(pins), None, torch_backend="cpu",
                     notes=["CPU image: generation with model.generate"])
    gpu = gpu_catalog()[target]
    vllm = uses_vllm(recipe, target)
    solution = solve(Constraints(torch=torch, target=target if vllm else None, python=python, backend=recipe.backend), matrix)
    versions = dict(solution.versions)
    if not vllm:
        versions.pop("vllm")
    if not recipe.model.load_in_4bit:
        versions.pop("bitsandbytes", None)
    pins = sorted([f"{name}=={version}" for name, version in versions.items()] + [p for p in BASE_PACKAGES if p not in versions])
    variant = torch_variant(versions["torch"], solution.cuda, gpu["compute_capability"])
    cuda = variant or solution.cuda
    if vllm and cuda:  # FlashInfer's JIT: an nvcc of the CUDA runtime's release (images.json jit_requirements)
        pins = sorted(pins + load("images")["jit_requirements"].get(cuda.split(".")[0], []))
    bf16 = has_bf16(gpu["compute_capability"])
    stack = Stack(target, arch or gpu["arch"], python, pins, cuda, "bf16" if bf16 else "fp16", notes=list(solution.notes))
    if variant:
        stack.torch_backend = "cu" + variant.replace(".", "")
    stack.driver_floor = cuda_table()["min_driver"].get(cuda)
    pdl = pdl_switch(gpu["compute_capability"], versions["vllm"] if vllm else None)
    if pdl:  # EK402: LoRA PDL off
        stack.env[pdl[0]] = pdl[1]
    if not vllm and target != "cpu":
        stack.notes.append(f"no vLLM in this image for {target}: generation with model.generate")
    return stack
