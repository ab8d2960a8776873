"""The budget as a text table and as JSON (schema envkit.budget/1)."""

from __future__ import annotations

from dataclasses import asdict

from envkit.budget.model import CUDA_CONTEXT, GIB
from envkit.budget.recommend import Recommendation

SCHEMA = "envkit.budget/1"


def gib(n: float) -> float:
    return round(n / GIB, 3)


def breakdown(rec: Recommendation) -> dict[str, float]:
    """Every term in GiB, the keys of the JSON report."""
    plan, t = rec.plan, rec.plan.training
    terms = {"training_weights": t.weights, "training_lora": t.lora, "training_activations": t.activations,
             "training_logits": t.logits, "training_peak": t.peak, "cuda_context": CUDA_CONTEXT}
    if plan.vllm:
        v = plan.vllm
        terms |= {"vllm_share": v.share, "vllm_weights": v.weights, "vllm_workspace": v.workspace,
                  "vllm_kv_cache": v.kv_cache, "vllm_kv_needed": v.kv_needed}
    elif not plan.inputs.use_vllm:
        terms["generate_kv_cache"] = plan.generate_kv
    terms |= {"generation_peak": plan.generation_peak, "training_step_peak": plan.training_peak,
              "headroom": plan.headroom}
    return {k: gib(v) for k, v in terms.items()}


def settings(rec: Recommendation) -> dict:
    plan = rec.plan
    if not plan.inputs.use_vllm:
        return {"use_vllm": False}
    if plan.vllm is None:
        return {"vllm_mode": "server"}
    return {"vllm_mode": "colocate", "vllm_gpu_memory_utilization": plan.vllm.utilization,
            "vllm_enable_sleep_mode": plan.sleep}


def _shown(value) -> str:
    """A setting as the text report prints it: a share above the whole GPU is said, not printed as 46997070.41."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.2f}" if value <= 1 else "more than the whole GPU"
    return str(value)


def to_json(rec: Recommendation, gpu: str) -> dict:
    inputs = rec.plan.inputs
    fields = {k: v for k, v in asdict(inputs).items() if k not in ("shape", "gpu_bytes")}
    return {
        "schema": SCHEMA,
        "model": asdict(inputs.shape) | {"params": inputs.shape.params()},
        "gpu": {"name": gpu, "memory_gib": gib(inputs.gpu_bytes)},
        "inputs": fields,
        "fits": rec.fits,
        "recommended": settings(rec),
        "breakdown_gib": breakdown(rec),
        "fixes": [{"name": f.name, "setting": f.setting, "saving_gib": gib(f.saving), "fits": f.fits} for f in rec.fixes],
        "combined": {"settings": list(rec.combined), "fits": rec.combined_fits} if rec.combined else None,
    }


def render(rec: Recommendation, gpu: str) -> str:
    plan, i = rec.plan, rec.plan.inputs
    t, v, b = plan.training, plan.vllm, breakdown(rec)
    shared = ", in vLLM" if v and v.shared_weights else ""
    weights = f"policy weights ({'4-bit' if i.load_in_4bit else i.dtype}){shared}"
    activations = f"activations ({'checkpointed' if i.grad_checkpointing is not False else 'no checkpointing'})"
    rows = [("training step", None), (f"  {weights}", t.weights), (f"  LoRA r={i.lora_r} + grads + AdamW", t.lora),
            (f"  {activations}", t.activations), ("  logits", t.logits), ("  peak", t.peak)]
    if v:
        rows += [(f"vLLM share (gpu_memory_utilization {_shown(v.utilization)})", v.share),
                 ("  weights (the policy's)" if v.shared_weights else "  weights copy", v.weights),
                 ("  workspace (CUDA graphs, buffers, profile)", v.workspace), ("  KV cache", v.kv_cache),
                 (f"  KV needed: {i.concurrent_sequences} sequences x {i.sequence_length} tokens", v.kv_needed)]
    elif not i.use_vllm:
        rows.append((f"model.generate KV cache: {i.concurrent_sequences} sequences x {i.sequence_length} tokens",
                     plan.generate_kv))
    rows += [("CUDA context", CUDA_CONTEXT), ("peak while generating", plan.generation_peak),
             (f"peak while training{' (vLLM asleep)' if plan.sleep else ''}", plan.training_peak)]
    lines = [f"{i.shape.name} ({i.shape.params() / 1e9:.2f}B) on {gpu} ({gib(i.gpu_bytes):g} GiB): {i.dtype}, "
             f"{i.prompts_per_step} prompts x {i.num_generations} generations, "
             f"{i.max_prompt_length}+{i.max_completion_length} tokens, micro-batch {i.micro_batch}", ""]
    lines += [f"  {label:54}{'' if n is None else f'{gib(n):8.2f} GiB'}" for label, n in rows]
    lines += [f"  {'headroom':54}{b['headroom']:8.2f} GiB", ""]
    recommended = ", ".join(f"{k}={_shown(val)}" for k, val in settings(rec).items())
    if rec.fits:
        lines.append(f"fits: {recommended}")
        return "\n".join(lines)
    precision = "4-bit" if i.load_in_4bit else i.dtype
    lines.append(f"does not fit in {precision} ({recommended} needs {gib(plan.peak):.2f} GiB with {gib(i.gpu_bytes):g}); fixes, cheapest first:")
    lines += [f"  {f.setting:32} saves {gib(f.saving):6.2f} GiB  {'fits' if f.fits else 'not enough alone'}  ({f.name})"
              for f in rec.fixes]
    if rec.combined:
        verdict = "fits" if rec.combined_fits else "still does not fit"
        lines.append(f"  together: {', '.join(rec.combined)}: {verdict}")
    return "\n".join(lines)
