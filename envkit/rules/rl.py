"""vLLM / RL readiness: known breakages of vLLM generation inside RL training."""

from __future__ import annotations

from packaging.version import Version

from envkit.facts import Facts
from envkit.knowledge import curated, in_window, late_vllm_gpu, pdl_switch
from envkit.rules.base import Outcome, fail, ok, rule, skip, warn
from envkit.rules.gpus import cc_major_gpus, describe


def _vllm_version(facts: Facts) -> Version | None:
    vllm = facts.package("vllm")
    return Version(vllm.version) if vllm else None


@rule("EK401", "gb10-vllm", "rl", needs_vllm=True)
def gb10_vllm(facts: Facts) -> Outcome:
    """vLLM generates on DGX Spark (GB10) for the backend in use: bf16 from vLLM 0.13.0, FP8 from 0.22.0.

    vLLM runs on GB10 (sm_121): vllm-project/vllm#28129 was closed on
    2026-01-29 as stable for the past few releases.  Its published wheels
    carry sm_120-family kernels, not sm_121 ones (PR #38484, open), which
    GB10 runs.  FP8 checkpoints trap in the per-tensor CUTLASS GEMM on
    SM12.1 ('cutlass_gemm_caller Error Internal', vllm#40758) before 0.22.0
    (PR #41215); block-scaled FP8 may still trap (vllm#43367, closed, yet
    the 0.34.0 wheels still ship no sm_121 kernels; workaround
    VLLM_DISABLED_KERNELS=CutlassFp8BlockScaledMMKernel).  bf16 training,
    envkit's default, is unaffected.  Unsloth turns fast_inference off on
    any GB10 by name (its loader.py, "broken as of January 2026"): with
    backend unsloth generation is Unsloth's own; backend trl uses vLLM.
    Fix: pip install a vLLM >= 0.13.0 inside TRL's window (>= 0.22.0 for FP8).
    """
    gpus = [g for g in facts.visible_gpus() if late_vllm_gpu(g.catalog_id)]
    vllm = _vllm_version(facts)
    if not gpus or vllm is None:
        return skip("needs vllm on a DGX Spark (GB10)")
    scope = late_vllm_gpu(gpus[0].catalog_id)
    evidence = f"{describe(gpus[0])}, vllm {vllm}; {scope['source']} (checked {scope['checked']})"
    if vllm < Version(scope["bf16_from"]):
        return fail(f"vllm {vllm} predates vLLM's GB10 support (stable from {scope['bf16_from']})", evidence,
                    f"pip install 'vllm>={scope['bf16_from']}' "
                    "(inside trl's window; envkit train generates with model.generate until then)")
    if facts.package("unsloth"):
        return warn(f"Unsloth turns fast_inference off on {gpus[0].catalog_id.upper()} "
                    f"(its own rule; vllm {vllm} runs there)", evidence,
                    "backend: trl generates with vLLM on GB10; backend: unsloth generates with Unsloth's native path")
    if vllm < Version(scope["fp8_from"]):
        return warn(f"vllm {vllm} runs bf16 on {gpus[0].catalog_id.upper()}; "
                    f"FP8 checkpoints trap before vllm {scope['fp8_from']}",
                    evidence, f"keep bf16 weights, or pip install 'vllm>={scope['fp8_from']}' for FP8 checkpoints")
    block = scope["fp8_block_scaled"]
    return ok(f"vllm {vllm} runs bf16 and per-tensor FP8 on {gpus[0].catalog_id.upper()}",
              f"{evidence}; block-scaled FP8: {block['issue']}, {block['env']}={block['value']}")


def pdl_setting(facts: Facts) -> tuple[str, str] | None:
    """(variable, value) that turns vLLM's LoRA PDL off on this machine's SM100 GPU, where an environment
    variable can (vLLM 0.15.0+); None where none is needed or none works."""
    vllm = _vllm_version(facts)
    switches = [pdl_switch(g.compute_capability, str(vllm) if vllm else None) for g in facts.visible_gpus()]
    return next((s for s in switches if s), None)


@rule("EK402", "sm100-pdl", "rl", needs_vllm=True)
def sm100_pdl(facts: Facts) -> Outcome:
    """vLLM's LoRA kernels run without programmatic dependent launch on SM100/SM103.

    vLLM's LoRA Triton kernels fail on Blackwell SM100 with PDL on
    (vllm-project/vllm#30872, open): not fixed, only switchable.  From vLLM
    0.15.0 VLLM_LORA_DISABLE_PDL=1 turns it off (envkit train and the image
    set it).  Before 0.15.0 no variable does (TRITON_DISABLE_PDL is read by
    neither vLLM nor Triton): only Unsloth's own patch of supports_pdl, which
    unsloth applies itself (backend: unsloth); backend trl needs vLLM 0.15+.
    """
    pdl = curated("pdl")
    gpus = cc_major_gpus(facts, pdl["compute_capability_major"])
    vllm = _vllm_version(facts)
    if not gpus or vllm is None:
        return skip("needs vllm on an SM100/SM103 GPU")
    setting = f"{pdl['env']}={pdl['value']}"
    evidence = f"{describe(gpus[0])}, vllm {vllm}, {pdl['env']}={facts.env.get(pdl['env'], '<unset>')}"
    if pdl_setting(facts) is None:
        fix = (f"pip install 'vllm>={pdl['env_from_vllm']}' and export {setting} "
               "(or backend: unsloth, which patches it itself)")
        if facts.package("unsloth"):
            return warn(f"vllm {vllm} on SM100: only Unsloth's own patch turns LoRA PDL off", evidence, fix)
        return fail(f"vllm {vllm} on SM100: no setting turns LoRA PDL off before vllm {pdl['env_from_vllm']}",
                    evidence, fix)
    if facts.env.get(pdl["env"]) == pdl["value"]:
        return ok(f"{setting} set for vllm {vllm}", evidence)
    return fail(f"vllm {vllm} on SM100 needs {setting}", evidence, f"export {setting}  (envkit train sets it)")


@rule("EK403", "sm100-torch", "rl", needs_vllm=True)
def sm100_torch(facts: Facts) -> Outcome:
    """Unsloth accepts the torch under vLLM on SM100 (torch 2.9 or newer).

    Unsloth refuses vLLM with torch < 2.9 on Blackwell SM100, saying it aborts
    with std::bad_alloc (unsloth import_fixes.check_vllm_torch_sm100_compatibility).
    That is Unsloth's claim alone: vLLM pins its torch exactly and ran 8xB200 on
    torch 2.8 with vLLM 0.11.0 (vllm-project/vllm#23724), so envkit checks it
    only where Unsloth is installed.
    """
    need = curated("sm100_min_torch_for_vllm")
    gpus = cc_major_gpus(facts, need["compute_capability_major"])
    torch = facts.package("torch")
    if not gpus or _vllm_version(facts) is None or not torch or not facts.package("unsloth"):
        return skip("needs unsloth, vllm and torch on an SM100/SM103 GPU")
    unsloth = facts.package("unsloth").version
    evidence = f"{describe(gpus[0])}, torch {torch.version}, unsloth {unsloth}; {need['source']}"
    if Version(torch.version).release < Version(need["min_torch"]).release:
        return fail(f"Unsloth refuses vLLM with torch {torch.version} on SM100", evidence,
                    f"pip install 'torch>={need['min_torch']}' with a vllm that pins it")
    return ok(f"torch {torch.version} is one Unsloth accepts on SM100", evidence)


@rule("EK404", "sleep-mode", "rl", needs_vllm=True)
def sleep_mode(facts: Facts) -> Outcome:
    """vLLM sleep mode (vllm_enable_sleep_mode) can be used.

    Sleep mode frees vLLM's weights and KV cache while the trainer steps.
    From vLLM 0.14.0 to 0.16.x the weights never enter the sleep pool, only
    the KV cache does, so sleep frees the KV cache and keeps the weights
    (vllm-project/vllm#32714, fixed in 0.17.0).  Unsloth's standby (its
    sleep mode, backend unsloth) raises at load on vLLM 0.10.x and 0.14.x
    (unsloth_zoo's patch_vllm).  Before 0.20.1 vLLM's allocator asserts that
    PYTORCH_CUDA_ALLOC_CONF has no `expandable_segments:True` (from 0.20.1 it
    turns them off for its pool).  Without sleep mode, lower
    gpu_memory_utilization instead.
    """
    vllm = _vllm_version(facts)
    if vllm is None:
        return skip("vllm not installed")
    broken = curated("sleep_mode_broken_vllm")
    conflict = curated("sleep_mode_alloc_conflict")
    alloc = facts.env.get("PYTORCH_CUDA_ALLOC_CONF", "")
    standby = curated("unsloth_vllm_standby")
    zoo = facts.installed.get("unsloth-zoo")
    if zoo and any(in_window(vllm, w) for w in standby["refused_vllm"]):
        return warn(f"backend unsloth: unsloth_zoo raises at load when its standby (sleep mode) runs on vllm {vllm}",
                    f"unsloth-zoo {zoo}; {standby['source']}",
                    f"keep vllm.sleep: false (or auto) with backend unsloth, or pip install a vllm outside "
                    f"{' and '.join(standby['refused_vllm'])} (with a torch and trl that fit it)")
    if in_window(vllm, broken["vllm"]):
        return warn(f"sleep mode on vllm {vllm} frees the KV cache only: the weights stay on the GPU",
                    f"broken on vllm{broken['vllm']}: {broken['source']}",
                    f"keep vllm.sleep: false, or pip install 'vllm>={broken['fixed_in']}' "
                    "(with a torch and trl that fit it)")
    if in_window(vllm, conflict["vllm"]) and conflict["setting"] in alloc.replace(" ", ""):
        return warn("expandable_segments clashes with vLLM sleep mode",
                    f"PYTORCH_CUDA_ALLOC_CONF={alloc}; vllm {vllm} asserts against it "
                    f"(fixed in {conflict['fixed_in']})",
                    "unset PYTORCH_CUDA_ALLOC_CONF (or drop expandable_segments) when sleep mode is on")
    return ok(f"sleep mode usable with vllm {vllm}")


@rule("EK405", "shm", "rl")
def shm(facts: Facts) -> Outcome:
    """/dev/shm is large enough for vLLM and NCCL (1 GiB+).

    Docker gives containers 64 MiB of /dev/shm; vLLM's shared-memory message
    queue and NCCL need more and fail with bus errors.  Fix: run the container
    with --ipc=host (or --shm-size=16g).
    """
    size = facts.host.shm_total_mib
    if size is None:
        return skip("/dev/shm not found")
    floor = curated("min_shm_mib")["value"]
    where = f"in a {facts.host.container} container" if facts.host.container else "on the host"
    evidence = f"/dev/shm {size} MiB {where}"
    if size < floor:
        return fail(f"/dev/shm is only {size} MiB", evidence, "docker run --ipc=host ...  (or --shm-size=16g)")
    return ok(f"/dev/shm {size} MiB", evidence)


@rule("EK406", "trl-sleep-sync", "rl", needs_vllm=True)
def trl_sleep_sync(facts: Facts) -> Outcome:
    """TRL's weight sync reaches a sleeping colocated vLLM.

    From trl 0.28.0 to 1.9.x, colocate mode with vllm_enable_sleep_mode=True
    generates from stale weights (huggingface/trl#5312): waking vLLM reloaded
    the checkpoint from disk over the weights just synced, so training runs,
    loss is logged, and the sampler never sees the updates.  Fixed in trl
    1.10.0 (PR #5313).  envkit train never turns sleep mode on with such a
    TRL and refuses a recipe that asks for it (vllm.sleep: true).  Fix:
    pip install 'trl>=1.10.0' (with a vLLM inside its window), or keep
    vllm.sleep: false.
    """
    trl = facts.package("trl")
    if trl is None or _vllm_version(facts) is None:
        return skip("needs trl and vllm")
    stale = curated("trl_sleep_stale_weights")
    evidence = f"trl {trl.version}; {stale['source']} (checked {stale['checked']})"
    if in_window(trl.version, stale["trl"]):
        return warn(f"trl {trl.version} with vLLM sleep mode trains on stale weights", evidence,
                    f"pip install 'trl>={stale['fixed_in']}', or keep vllm.sleep: false")
    return ok(f"trl {trl.version} syncs weights into a sleeping vLLM",
              f"trl {trl.version} (fixed in {stale['fixed_in']})")


@rule("EK306", "unsloth-vllm", "rl")
def unsloth_vllm(facts: Facts) -> Outcome:
    """Unsloth's fast_inference has been seen working with the installed vLLM.

    Unsloth (and unsloth_zoo) declare no vLLM bound, yet new vLLM releases
    have broken fast_inference before, so package metadata cannot say whether
    a pair works.  envkit lists the pairs it has run GRPO with (curated.json
    unsloth_vllm_verified, each with its results file and date); any other
    pair is a warning, not a failure: untested is not broken.  Fix: install a
    verified pair, or run a short job first and watch the reward.
    """
    unsloth, vllm = facts.package("unsloth"), _vllm_version(facts)
    if unsloth is None or vllm is None:
        return skip("needs unsloth and vllm")
    verified = curated("unsloth_vllm_verified")["pairs"]
    known = ", ".join(f"unsloth {p['unsloth']} + vllm {p['vllm']}" for p in verified)
    match = next((p for p in verified
                  if Version(p["unsloth"]) == Version(unsloth.version) and Version(p["vllm"]) == vllm), None)
    if match:
        return ok(f"unsloth {unsloth.version} + vllm {vllm} verified ({match['checked']})", match["source"])
    return warn(f"unsloth {unsloth.version} + vllm {vllm}: no evidence fast_inference works", f"verified: {known}",
                "pip install one verified pair, or check a short run's reward before a long one")
