"""Hardware rules: platform, driver reachability, GPUs and what their architecture allows."""

from __future__ import annotations

from dataclasses import replace

from packaging.version import Version

from envkit.facts import Facts
from envkit.knowledge import curated, vllm_cc_floor
from envkit.rules.base import Outcome, fail, ok, rule, skip, warn
from envkit.rules.gpus import cc_tuple, describe, weakest_gpu

NO_GPU = "no GPU to check"


@rule("EK101", "linux", "hardware")
def linux(facts: Facts) -> Outcome:
    """vLLM runs on Linux only.

    vLLM ships Linux wheels only; TRL's `use_vllm` and Unsloth's
    `fast_inference` therefore need Linux (WSL2 works, with less pinned memory).
    Fix: train on Linux, in WSL2, or in the envkit image.
    """
    host = facts.host
    seen = f"{host.os} {host.kernel} {host.arch}".strip()
    if host.os != "Linux":
        return fail("vLLM needs Linux", seen, "run on Linux, WSL2 or inside the envkit image (envkit build)")
    if host.wsl:
        return warn("Linux under WSL2", seen, "WSL2 works; pinned memory is limited there, expect slower weight sync")
    return ok("Linux", seen)


@rule("EK102", "nvidia-driver", "hardware")
def nvidia_driver(facts: Facts) -> Outcome:
    """The NVIDIA driver is loaded and NVML answers.

    envkit reads GPUs through NVML (nvidia-ml-py).  Without NVML it falls back
    to the kernel module's version file, which gives the driver version but no
    GPU list.  Fix: install the NVIDIA driver, or `pip install nvidia-ml-py`.
    """
    driver = facts.driver
    if facts.target:
        return skip("driver not probed for a --target check", f"target {facts.target}")
    if driver.source == "nvml":
        return ok(f"NVIDIA driver {driver.version}", f"driver {driver.version}, supports CUDA {driver.cuda_version}")
    if driver.source == "procfs":
        return warn(
            f"NVIDIA driver {driver.version}, but NVML cannot be read",
            driver.error or "",
            "pip install nvidia-ml-py  (and check that libnvidia-ml.so is on the loader path)",
        )
    return fail(
        "no NVIDIA driver found",
        driver.error or "no /proc/driver/nvidia/version",
        "install the NVIDIA driver (see Driver & CUDA for the minimum), or check another GPU with --target",
    )


@rule("EK103", "gpu-present", "hardware")
def gpu_present(facts: Facts) -> Outcome:
    """At least one GPU is visible to CUDA.

    Counts the GPUs NVML sees and applies CUDA_VISIBLE_DEVICES the way CUDA
    does (it stops at the first invalid index; an empty value hides all).
    MIG slices need the MIG UUID in CUDA_VISIBLE_DEVICES.
    """
    visible = facts.visible_gpus()
    cvd = facts.cuda_visible_devices
    if not facts.gpus:
        return fail("no GPU found", facts.driver.error or "NVML lists no device", "run on a machine with an NVIDIA GPU")
    if not visible:
        return fail(
            "CUDA_VISIBLE_DEVICES hides every GPU",
            f"CUDA_VISIBLE_DEVICES={cvd!r}, {len(facts.gpus)} GPU(s) present",
            "unset CUDA_VISIBLE_DEVICES or list valid indices (e.g. export CUDA_VISIBLE_DEVICES=0)",
        )
    names = ", ".join(f"{g.index}: {g.name} {g.memory_total_mib // 1024 if g.memory_total_mib else '?'} GiB" for g in visible)
    evidence = names + (f"; CUDA_VISIBLE_DEVICES={cvd}" if cvd is not None else "")
    if any(g.mig_mode for g in visible):
        return warn(f"{len(visible)} GPU(s), MIG enabled", evidence, "pass the MIG instance UUID in CUDA_VISIBLE_DEVICES")
    return ok(f"{len(visible)} GPU(s) visible", evidence)


@rule("EK104", "vllm-compute-capability", "hardware", needs_vllm=True)
def vllm_compute_capability(facts: Facts) -> Outcome:
    """The GPU's compute capability is high enough for the vLLM in use (7.5+; 7.0+ before vLLM 0.20.0).

    vLLM's published wheels carry kernels from Volta (sm_70) up to 0.19.1; from
    0.20.0 they are built with CUDA 13, which has no sm_70, and start at Turing
    (sm_75).  A V100 therefore runs vLLM < 0.20.0 only; older GPUs (P100,
    sm_60) none, and must generate with `model.generate` (`vllm.enabled: false`).
    """
    gpu = weakest_gpu(facts)
    if gpu is None:
        return skip(NO_GPU)
    vllm = facts.package("vllm")
    floor = vllm_cc_floor(vllm.version if vllm else None)
    if gpu.cc < cc_tuple(floor):
        oldest = vllm_cc_floor()
        if gpu.cc >= cc_tuple(oldest):
            since = curated("vllm_min_compute_capability")["from_vllm"]
            return fail(f"compute capability {gpu.compute_capability} is below vllm {vllm.version}'s {floor}",
                        describe(gpu), f"pip install 'vllm<{since}' (with a torch and trl that fit it), "
                        "or set vllm.enabled: false in the recipe")
        return fail(
            f"compute capability {gpu.compute_capability} is below vLLM's {oldest}",
            describe(gpu),
            "set vllm.enabled: false in the recipe (generation with model.generate), or use a newer GPU",
        )
    return ok(f"compute capability {gpu.compute_capability} runs vLLM", describe(gpu))


@rule("EK105", "bf16", "hardware")
def bf16(facts: Facts) -> Outcome:
    """bf16 needs compute capability 8.0 (Ampere) or newer.

    On older GPUs (V100, T4) train and generate in fp16; bf16 either fails or
    is emulated slowly.
    """
    return _capability_floor(facts, "bf16_min_compute_capability", ok("bf16 supported", ""),
                             warn("no bf16 on this GPU: use fp16", "", "set model.dtype: fp16 in the recipe"))


@rule("EK106", "fp8", "hardware", needs_vllm=True)
def fp8(facts: Facts) -> Outcome:
    """vLLM's W8A8 FP8 needs compute capability 8.9 (Ada) or newer.

    Below 8.9 vLLM still loads FP8 checkpoints, weight-only (W8A16 through
    Marlin): memory savings without the FP8 matmul speed-up.
    """
    return _capability_floor(facts, "fp8_w8a8_min_compute_capability", ok("FP8 (W8A8) supported", ""),
                             warn("FP8 runs weight-only here (W8A16)", "", "use bf16/fp16 weights, or accept weight-only FP8"))


def _capability_floor(facts: Facts, floor_key: str, above: Outcome, below: Outcome) -> Outcome:
    """``above`` or ``below`` the curated compute-capability floor, for the weakest visible GPU."""
    gpu = weakest_gpu(facts)
    if gpu is None:
        return skip(NO_GPU)
    outcome = below if gpu.cc < cc_tuple(curated(floor_key)["value"]) else above
    return replace(outcome, evidence=describe(gpu))


@rule("EK107", "unsloth-fp8", "hardware")
def unsloth_fp8(facts: Facts) -> Outcome:
    """Unsloth's `load_in_fp8` needs sm_90+, torch 2.9+ and torchao 0.15+.

    Checked only when unsloth is installed.
    """
    if not facts.package("unsloth"):
        return skip("unsloth not installed")
    need = curated("unsloth_fp8")
    gpu = weakest_gpu(facts)
    torch, torchao = facts.package("torch"), facts.package("torchao")
    missing = []
    if gpu is None or gpu.cc < cc_tuple(need["min_compute_capability"]):
        missing.append(f"GPU sm_{need['min_compute_capability'].replace('.', '')}+ (have {describe(gpu) if gpu else 'none'})")
    if not torch or Version(torch.version).release < Version(need["min_torch"]).release:
        missing.append(f"torch >= {need['min_torch']} (have {torch.version if torch else 'none'})")
    if not torchao or Version(torchao.version).release < Version(need["min_torchao"]).release:
        missing.append(f"torchao >= {need['min_torchao']} (have {torchao.version if torchao else 'none'})")
    if missing:
        return warn("Unsloth load_in_fp8 unavailable", "; ".join(missing), "keep load_in_fp8 off, or meet: " + ", ".join(missing))
    return ok("Unsloth load_in_fp8 available")
