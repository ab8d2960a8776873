"""The memory model of colocated GRPO: training and vLLM generation on one GPU.

Pure arithmetic on a model's shape and a training configuration; every term is
in bytes.  The constants below are estimates with their reasoning written
beside them; `benchmarks/budget_measure.py` measures them on a GPU.

Phases of one GRPO step in TRL's colocate mode (vLLM inside the trainer process):

* generation: the policy (weights, LoRA, AdamW states) stays resident while
  vLLM generates inside its reservation of `gpu_memory_utilization x total`;
* training: forward + backward over the completions; vLLM's reservation stays
  whole, or with sleep mode only its workspace does (weights and KV cache are
  released: level 1 offloads weights to CPU RAM, level 2 discards them, both
  discard the KV cache, so the GPU gains the same at either level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from envkit.recipe.schema import LINEAR_MODULES

MIB = 1024**2
GIB = 1024**3

# One CUDA context (driver state, kernel images of torch + vLLM) per process. In
# colocate mode vLLM shares the trainer's process, so it is counted once. NVML sees
# it, torch's allocator statistics do not.  Measured on the H100 (torch 2.11+cu130):
# 625 MiB of NVML use after the first CUDA tensor, before any model is loaded.
CUDA_CONTEXT = 600 * MIB

DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}

# bitsandbytes NF4: 4 bits per weight, one 8-bit absmax per 64-weight block and,
# with double quantization, one fp32 constant per 256 blocks: 0.5 + 1/64 + 4/16384.
NF4_BYTES = 0.5 + 1 / 64 + 4 / 16384

# LoRA parameters are kept in fp32 (PEFT's autocast_adapter_dtype) and trained with
# AdamW: weight 4 + grad 4 + exp_avg 4 + exp_avg_sq 4. No fp32 master copy: the
# weights already are fp32. Between steps the grads are freed (zero_grad sets None).
LORA_TRAIN_BYTES = 16
LORA_RESIDENT_BYTES = 12

# With gradient checkpointing, the layer being recomputed holds its activations and, during its
# backward, gradients of the same size: two per-layer copies.  Measured (benchmarks/budget_measure.py,
# H100, TRL 1.16, 8 x (64..128 + 256) tokens a micro-batch): with one copy the training peak came out
# 0.13-0.18 GiB low on 205M, Llama-3.2-1B and -3B shapes (-16.7%, -3.9%, -2.1%); with two, within 5%.
RECOMPUTED_LAYER_COPIES = 2

# The LM head of the training forward.  TRL 1.16's GRPOTrainer patches in a fused
# head (trl.kernels.chunked_logprob) that never materializes the (tokens x vocab)
# logits: it projects only the completion tokens, in tiles of at most 4096 tokens x
# 32768 vocabulary entries in the compute dtype, keeping fp32 running statistics; its
# backward adds an fp32 gradient of the hidden states (tokens x hidden x 4).
FUSED_TOKEN_TILE = 4096
FUSED_VOCAB_TILE = 32768

# vLLM's own workspace inside its reservation, besides weights and KV cache: CUDA
# graphs for the batch sizes up to max_num_seqs, cuBLAS/NCCL buffers.  It stays
# on the GPU through sleep mode.  vLLM 0.26 keeps it inside utilization x total
# (measured: NVML grows by the share within 4% over vLLM's start-up); share less
# weights and KV cache came to 0.2-0.9 GiB on the 205M, 1B and 3B shapes.
VLLM_WORKSPACE = 512 * MIB
# TRL's colocate mode builds vLLM with max_num_batched_tokens=4096: vLLM profiles
# one forward of that many tokens and keeps its activation peak out of the KV cache.
VLLM_BATCHED_TOKENS = 4096
VLLM_BLOCK = 16  # tokens per KV-cache block

# The KV cache must hold every concurrent sequence with this much to spare, and at least
# KV_SPARE_MIN: vLLM's memory outside the KV cache changes between versions (CUDA graph pools,
# compile buffers), and an underestimate must cost generation speed, not vLLM's start-up.
KV_MARGIN = 0.10
KV_SPARE_MIN = 1 * GIB


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a Llama/Qwen-style decoder (the config.json fields)."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool
    attention_bias: bool = False
    qk_norm: bool = False
    vision: bool = False  # a vision-language model (config.json has a vision_config): Unsloth never sleeps it

    def linears(self) -> dict[str, tuple[int, int]]:
        """The (in, out) features of each linear layer of one decoder layer."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def linear_params(self) -> int:
        """Weights of the decoder layers' linear layers: what 4-bit quantizes."""
        return self.layers * sum(a * b for a, b in self.linears().values())

    def params(self) -> int:
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        per_layer = 2 * self.hidden  # input and post-attention RMSNorm
        per_layer += (q + 2 * kv) if self.attention_bias else 0
        per_layer += 2 * self.head_dim if self.qk_norm else 0
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return self.linear_params() + self.layers * per_layer + embeddings + self.hidden

    def kv_bytes_per_token(self, dtype_bytes: float) -> float:
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


@dataclass(frozen=True)
class BudgetInputs:
    """One GRPO configuration on one GPU; a recipe maps onto this."""

    shape: ModelShape
    gpu_bytes: int
    dtype: str = "bf16"
    load_in_4bit: bool = False
    lora_r: int = 64
    lora_targets: tuple[str, ...] = LINEAR_MODULES
    num_generations: int = 8
    prompts_per_step: int = 4
    max_prompt_length: int = 512
    max_completion_length: int = 256
    micro_batch: int = 4
    grad_checkpointing: bool | None = None  # None: the budget chooses (budget.recommend.cheapest_budget); on if not
    kv_cache_dtype: str = "auto"  # "auto" (the model dtype) or "fp8"
    server_mode: bool = False  # vLLM on another GPU (vllm_mode="server")
    use_vllm: bool = True  # False: TRL generates with model.generate, its KV cache in the training process
    vllm_tensor_parallel: int = 1  # colocate: each rank's vLLM sharded over this many ranks' GPUs
    # Unsloth's fast_inference: vLLM loads the base weights (in 4 bit with load_in_4bit) and the policy's
    # layers point at them, so they are held once, in vLLM's share, and stay through its standby.
    shared_weights: bool = False

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def sequence_length(self) -> int:
        return self.max_prompt_length + self.max_completion_length

    @property
    def concurrent_sequences(self) -> int:
        return self.prompts_per_step * self.num_generations


def weight_bytes(shape: ModelShape, dtype_bytes: int, load_in_4bit: bool = False) -> float:
    """The policy's weights; 4-bit quantizes the decoder linears, not embeddings, lm_head or norms."""
    if not load_in_4bit:
        return shape.params() * dtype_bytes
    linear = shape.linear_params()
    return linear * NF4_BYTES + (shape.params() - linear) * dtype_bytes


def lora_params(shape: ModelShape, r: int, targets: tuple[str, ...]) -> int:
    """r x (in + out) per targeted linear layer, in every decoder layer."""
    dims = shape.linears()
    return shape.layers * sum(r * (dims[t][0] + dims[t][1]) for t in targets)


def activation_bytes(shape: ModelShape, tokens: int, dtype_bytes: int, grad_checkpointing: bool,
                     lora_r: int = 0, lora_targets: int = 0) -> float:
    """What autograd keeps for backward over `tokens` tokens (micro-batch x sequence).

    Per decoder layer and token, in elements: each RMSNorm keeps its fp32 input
    and its output (3h, twice); attention keeps q and k after RoPE, v and its
    output (2 x (heads + kv_heads) x head_dim; flash/SDPA attention keeps no
    seq x seq scores); the SwiGLU MLP keeps gate, up, silu(gate) and their product
    (4i); each LoRA keeps its r-wide A output.  Frozen base weights need no saved
    input beyond these.  With gradient checkpointing only each layer's input is
    kept, plus one layer recomputed at a time during backward: its saved
    activations and, while backward runs through it, their gradients
    (RECOMPUTED_LAYER_COPIES).
    """
    per_layer = (6 * shape.hidden + 2 * (shape.heads + shape.kv_heads) * shape.head_dim
                 + 4 * shape.intermediate + lora_targets * lora_r)
    if grad_checkpointing:
        return tokens * (shape.layers * shape.hidden + RECOMPUTED_LAYER_COPIES * per_layer) * dtype_bytes
    return tokens * shape.layers * per_layer * dtype_bytes


def logits_bytes(shape: ModelShape, micro_batch: int, completion_length: int, dtype_bytes: int) -> float:
    """The fused LM head over the micro-batch's completion tokens: one logits tile, the gathered
    hidden states it saves (dtype) and their fp32 gradient."""
    tokens = micro_batch * completion_length
    tile = min(tokens, FUSED_TOKEN_TILE) * min(shape.vocab, FUSED_VOCAB_TILE) * dtype_bytes
    return tile + tokens * shape.hidden * (dtype_bytes + 4)


def vllm_profile_bytes(shape: ModelShape, dtype_bytes: int, max_num_seqs: int) -> float:
    """vLLM's profiled activation peak: one layer over the batched tokens, and the sampler's fp32 logits (x3)."""
    layer = VLLM_BATCHED_TOKENS * (4 * shape.hidden + 3 * shape.intermediate) * dtype_bytes
    return layer + 3 * max_num_seqs * shape.vocab * 4


@dataclass(frozen=True)
class Training:
    weights: float
    lora: float  # LoRA weights + grads + AdamW states during the step
    activations: float
    logits: float
    resident: float  # between steps: weights, LoRA weights and AdamW states

    @property
    def peak(self) -> float:
        return self.weights + self.lora + self.activations + self.logits


@dataclass(frozen=True)
class Vllm:
    utilization: float
    share: float  # utilization x total: what vLLM reserves
    weights: float
    workspace: float  # CUDA graphs, buffers, profiled activations: kept through sleep
    kv_cache: float  # the rest of the share
    kv_needed: float  # every concurrent sequence at full length
    shared_weights: bool = False  # the policy's own (Unsloth): kept while vLLM sleeps

    @property
    def asleep(self) -> float:
        """What remains on the GPU while vLLM sleeps."""
        return self.workspace + (self.weights if self.shared_weights else 0)


@dataclass(frozen=True)
class Budget:
    inputs: BudgetInputs
    training: Training
    vllm: Vllm | None  # None in server mode (vLLM is on another GPU) and without vLLM
    sleep: bool
    generate_kv: float = 0.0  # without vLLM: model.generate's KV cache for the generation batch

    @property
    def generation_peak(self) -> float:
        return CUDA_CONTEXT + self.training.resident + (self.vllm.share if self.vllm else self.generate_kv)

    @property
    def training_peak(self) -> float:
        held = 0 if self.vllm is None else (self.vllm.asleep if self.sleep else self.vllm.share)
        return CUDA_CONTEXT + self.training.peak + held

    @property
    def peak(self) -> float:
        return max(self.generation_peak, self.training_peak)

    @property
    def headroom(self) -> float:
        return self.inputs.gpu_bytes - self.peak


def training(inputs: BudgetInputs) -> Training:
    shape, nbytes = inputs.shape, inputs.dtype_bytes
    weights = 0 if inputs.shared_weights else weight_bytes(shape, nbytes, inputs.load_in_4bit)
    lora = lora_params(shape, inputs.lora_r, inputs.lora_targets)
    tokens = inputs.micro_batch * inputs.sequence_length
    return Training(
        weights=weights,
        lora=lora * LORA_TRAIN_BYTES,
        activations=activation_bytes(shape, tokens, nbytes, inputs.grad_checkpointing is not False,
                                     inputs.lora_r, len(inputs.lora_targets)),
        logits=logits_bytes(shape, inputs.micro_batch, inputs.max_completion_length, nbytes),
        resident=weights + lora * LORA_RESIDENT_BYTES,
    )


def kv_needed(inputs: BudgetInputs) -> float:
    """KV cache for every concurrent sequence at prompt + completion tokens, whole blocks."""
    kv_bytes = 1 if inputs.kv_cache_dtype == "fp8" and inputs.use_vllm else inputs.dtype_bytes
    tokens = math.ceil(inputs.sequence_length / VLLM_BLOCK) * VLLM_BLOCK
    return inputs.concurrent_sequences * tokens * inputs.shape.kv_bytes_per_token(kv_bytes)


def vllm_fixed(inputs: BudgetInputs) -> tuple[float, float]:
    """vLLM's weights copy and workspace.

    TRL's vLLM loads the checkpoint in the model dtype even when training loads it
    in 4 bit, so its copy does not shrink with load_in_4bit; Unsloth's (shared_weights)
    is the policy's, quantized as it is.  Colocated with tensor
    parallelism, each GPU holds 1/tp of the weights (and of the KV heads, but its group
    generates the prompts of all tp ranks, so the KV cache per GPU stays one rank's
    batch: kv_needed).  The workspace is kept whole: an upper bound.
    """
    quantized = inputs.load_in_4bit and inputs.shared_weights
    weights = weight_bytes(inputs.shape, inputs.dtype_bytes, quantized) / inputs.vllm_tensor_parallel
    workspace = VLLM_WORKSPACE + vllm_profile_bytes(inputs.shape, inputs.dtype_bytes, inputs.concurrent_sequences)
    return weights, workspace


def min_utilization(inputs: BudgetInputs) -> float:
    """The smallest gpu_memory_utilization (two decimals) whose KV cache holds the sequences with KV_MARGIN."""
    weights, workspace = vllm_fixed(inputs)
    kv = kv_needed(inputs)
    need = weights + workspace + kv + max(kv * KV_MARGIN, KV_SPARE_MIN)
    return math.ceil(need / inputs.gpu_bytes * 100 - 1e-9) / 100


def budget(inputs: BudgetInputs, utilization: float, sleep: bool) -> Budget:
    if inputs.server_mode:
        return Budget(inputs, training(inputs), None, False)
    if not inputs.use_vllm:
        return Budget(inputs, training(inputs), None, False, generate_kv=kv_needed(inputs))
    weights, workspace = vllm_fixed(inputs)
    share = utilization * inputs.gpu_bytes
    vllm = Vllm(utilization, share, weights, workspace, share - weights - workspace, kv_needed(inputs),
                inputs.shared_weights)
    return Budget(inputs, training(inputs), vllm, sleep)
