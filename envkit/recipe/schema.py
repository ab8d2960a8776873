"""The recipe schema: one dataclass per YAML section, field defaults are the recipe defaults.

The loader (envkit.recipe.load, through envkit.binding) walks these types, so a field's annotation is its
validation: ``Literal`` lists the allowed values, ``X | None`` makes it optional, ``list[...]`` a sequence.  A field's
help text and range are its metadata (``spec(default, help, bound)``), checked at any depth: what TRL/PEFT would
otherwise reject with a traceback mid-start (or, for num_generations, silently mis-train).  An unset (null or auto)
value is not range-checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from envkit.binding import Bound
from envkit.recipe.trl_fields import grpo_extra

Auto = Literal["auto"]


POSITIVE, AT_LEAST_1 = Bound(0, low_open=True), Bound(1)
PORT = Bound(1, 65535, why="a port number")
GPUS = Bound(0, 1024, why="a count of GPUs on this machine")


def spec(default: Any, help: str = "", bound: Bound | None = None) -> Any:
    """A recipe field with its default, help text and range, TRL-style (``field(metadata={"help": ...})``)."""
    return field(default=default, metadata={"help": help, **({"bound": bound} if bound else {})})
LOSS_TYPES = Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"]


@dataclass
class ModelSpec:
    name: str | None = None  # hub name or local path
    build: Literal["tiny"] | None = None  # build a tiny random-init Llama locally instead of loading one
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    load_in_4bit: bool = False
    max_seq_length: int = spec(2048, bound=AT_LEAST_1)
    trust_remote_code: bool = False


# The linear layers of a Llama-style decoder layer: lora.target_modules' default and what "all-linear" means to the
# memory budget (envkit.budget).
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSpec:
    r: int = spec(16, bound=AT_LEAST_1)
    alpha: int = spec(32, bound=POSITIVE)
    dropout: float = spec(0.0, bound=Bound(0, 1, high_open=True))
    target_modules: list[str] = field(default_factory=lambda: list(LINEAR_MODULES))


@dataclass
class DatasetSpec:
    path: str | None = spec(None, "a local .jsonl, .json, .parquet or .csv, relative to the recipe")
    name: str | None = None  # registry name (openai/gsm8k)
    config: str | None = None
    split: str = "train"
    # Evaluation rows: at most one of eval_path, eval_split, test_size.  Evaluated every output.save_steps unless
    # grpo.eval_strategy / eval_steps say otherwise; metrics.jsonl gets eval_* rows.
    eval_path: str | None = spec(None, "evaluation rows from a local file like path")
    eval_split: str | None = spec(None, "evaluation rows from this split of the registry dataset (with name)")
    test_size: float | None = spec(None, "evaluation rows held out of the training rows: a fraction below 1, or a "
                                   "count", bound=POSITIVE)
    prompt_field: str = spec("question", "the prompt column: text, or chat messages [{role, content}, ...] "
                             "(conversational; trailing assistant turns dropped, system_prompt first)")
    prompt_template: str | None = None  # str.format over the row, e.g. "Q: {question}\nA:"
    answer_field: str = "answer"
    system_prompt: str | None = None
    use_chat_template: bool = True


@dataclass
class RewardSpec:
    name: str  # a builtin (format, exact_answer, length) or "module:function"
    weight: float = 1.0


@dataclass
class GrpoSpec:
    num_generations: int = spec(8, bound=Bound(2, why="GRPO's advantage compares 2 or more completions of each prompt"))
    max_prompt_length: int = spec(256, bound=AT_LEAST_1)
    max_completion_length: int = spec(256, bound=AT_LEAST_1)
    learning_rate: float = spec(5e-6, bound=POSITIVE)
    max_steps: int | None = spec(None, bound=AT_LEAST_1)
    num_epochs: float | None = spec(None, 'used when max_steps is unset (default 1 epoch)', bound=POSITIVE)
    per_device_train_batch_size: int = spec(8, bound=AT_LEAST_1)
    gradient_accumulation_steps: int = spec(1, bound=AT_LEAST_1)
    beta: float = spec(0.0, bound=Bound(0, why="the KL penalty's weight: 0 turns it off, a negative one rewards "
                                            "drifting from the base"))
    loss_type: LOSS_TYPES = "dapo"
    temperature: float = spec(1.0, bound=POSITIVE)
    top_p: float = spec(1.0, bound=Bound(0, 1, low_open=True))
    top_k: int | None = spec(None, bound=AT_LEAST_1)
    gradient_checkpointing: Auto | bool = field(default="auto", metadata={"help": (
        "auto: off where the memory budget has room for the activations (no recomputed forward: faster), else on "
        "(TRL's default); on without a budget (no GPU, unknown model shape)")})
    micro_batch: Auto | None = field(default=None, metadata={"help": (
        "auto: the step's per_device_train_batch_size x gradient_accumulation_steps completions and optimizer step "
        "unchanged, run in the largest micro-batch the memory budget holds without sleep mode or checkpointing the "
        "written split avoids (fewer, larger passes); null: as written")})
    # Any other field of TRL's GRPOConfig, as written under grpo: (envkit.recipe.trl_fields checks it)
    trl: dict = field(default_factory=dict, metadata={"input": False, "extra_keys": grpo_extra})


@dataclass
class VllmServerSpec:
    """Where trainers reach the vLLM server (TRL's vllm_server_host/port, vllm_group_port, vllm_server_timeout)."""

    host: str = "127.0.0.1"  # a non-loopback address makes the server listen on all interfaces (multi-node)
    port: int = spec(8000, bound=PORT)
    group_port: int = spec(51216, "NCCL weight-sync rendezvous", bound=PORT)
    # How long to wait for the server's health endpoint (envkit, and TRL's trainers on other machines).
    # A server that dies is seen at once, so this only bounds a hang: a 205M model's first start on a fresh
    # H100 took 152 s (benchmarks/server_smoke.py), TRL's 240 s default leaves larger models little room.
    timeout_s: float = spec(600.0, bound=POSITIVE)


@dataclass
class VllmSpec:
    enabled: Auto | bool = "auto"
    mode: Literal["colocate", "server"] = "colocate"
    gpu_memory_utilization: Auto | float = spec("auto", bound=Bound(0, 1, low_open=True,
                                                                    why="vLLM's share of the GPU's memory"))
    sleep: Auto | bool = "auto"
    max_lora_rank: int | None = None  # default: lora.r
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"
    # Server mode: the server's shape (tensor x data parallel = generation GPUs).  Colocate: each
    # training rank's vLLM is sharded over tensor_parallel_size ranks (TRL's vllm_tensor_parallel_size).
    tensor_parallel_size: int = spec(1, bound=AT_LEAST_1)
    data_parallel_size: int = spec(1, bound=AT_LEAST_1)
    server: VllmServerSpec = field(default_factory=VllmServerSpec)


@dataclass
class ResourcesSpec:
    """GPUs by index among the visible ones (CUDA_VISIBLE_DEVICES order), or a count; unset: one in-process run."""

    generation_gpus: list[int] | int | None = spec(None, bound=GPUS)  # the vLLM server's (vllm.mode: server)
    # one trainer rank each; server mode default: the GPUs left
    training_gpus: list[int] | int | None = spec(None, bound=GPUS)


def gpu_count(gpus: list[int] | int | None) -> int:
    """How many GPUs a resources entry names (0 when unset)."""
    return 0 if gpus is None else gpus if isinstance(gpus, int) else len(gpus)


@dataclass
class DistributedSpec:
    """How `accelerate launch` runs the trainer ranks; the multi-node fields mirror accelerate's flags."""

    backend: Literal["ddp", "deepspeed-zero2", "deepspeed-zero3", "fsdp"] = "ddp"
    accelerate_config: str | None = None  # an accelerate config file, relative to the recipe; replaces backend
    num_machines: int = spec(1, bound=AT_LEAST_1)
    machine_rank: int = 0
    main_process_ip: str | None = None  # needed when num_machines > 1
    main_process_port: int | None = spec(None, "accelerate's default: 29500", bound=PORT)


@dataclass
class OutputSpec:
    dir: str | None = None  # default: runs/<recipe name>, relative to the working directory
    save_steps: int = spec(50, bound=AT_LEAST_1)
    keep: int | None = spec(3, bound=AT_LEAST_1)
    report_to: list[str] = field(default_factory=list)
    merge: bool = False  # also save merged/: the base with the adapter folded in (envkit.train.runner.merge_adapter)


@dataclass
class Recipe:
    version: Literal[1]
    model: ModelSpec
    dataset: DatasetSpec
    rewards: list[RewardSpec]
    backend: Literal["trl", "unsloth"] = "trl"
    lora: LoraSpec = field(default_factory=LoraSpec)
    grpo: GrpoSpec = field(default_factory=GrpoSpec)
    vllm: VllmSpec = field(default_factory=VllmSpec)
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    distributed: DistributedSpec = field(default_factory=DistributedSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    seed: int = spec(42, bound=Bound(0, 2**32 - 1, why="numpy and torch take seeds from 0 to 2**32 - 1"))
    # The run's guards: stale weights (envkit.train.guard) and learning signal (envkit.train.learning):
    # warn, stop (checkpoint, then exit 3 or 4), or off.
    guard: Literal["warn", "stop", "off"] = "warn"
    # Not YAML keys: where the recipe came from (set by the loader).
    source: str = field(default="", metadata={"input": False})
    sha256: str = field(default="", metadata={"input": False})
