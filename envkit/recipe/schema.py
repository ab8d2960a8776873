"""The recipe schema: one dataclass per YAML section, field defaults are the recipe defaults.

The loader (envkit.recipe.load, through envkit.binding) walks these types, so a field's annotation is its
validation: ``Literal`` lists the allowed values, ``X | None`` makes it optional, ``list[...]`` a sequence.  A field's
help text and range are its metadata (``spec(default, help, bound)``), checked at any depth: what TRL/PEFT would
otherwise reject with a traceback mid-start (or, for num_generations, silently mis-train).  An unset (null or auto)
value is not range-checked.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from envkit.binding import Bound
from envkit.recipe.trl_fields import grpo_extra

Auto = Literal["auto"]


POSITIVE, AT_LEAST_1 = Bound(0, low_open=True), Bound(1)
PORT = Bound(1, 65535, why="a port number")
GPUS = Bound(0, 1024, why="a count of GPUs on this machine")


def spec(default: Any = dataclasses.MISSING, help: str = "", bound: Bound | None = None) -> Any:
    """A recipe field with its default (none: required; a list: copied for each recipe), help text and range,
    TRL-style (``field(metadata={"help": ...})``).  Every key has help: docs/recipe.md and `recipes explain` show it."""
    metadata = {"help": help, **({"bound": bound} if bound else {})}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


LOSS_TYPES = Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"]


@dataclass
class ModelSpec:
    name: str | None = spec(None, "the policy model: a hub id (meta-llama/Llama-3.2-1B-Instruct; gated ones need "
                            "HF_TOKEN) or a local folder (relative to the working directory); one of name and build")
    build: Literal["tiny"] | None = spec(None, "tiny: build a small random-init Llama locally instead of loading one "
                                         "(CPU smoke runs, no hub)")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = spec("auto", "the training dtype; auto: bf16 where the GPU has "
                                                          "it, else fp16; fp32 without a GPU")
    load_in_4bit: bool = spec(False, "load the base model quantized to 4 bits (bitsandbytes): QLoRA, less memory")
    max_seq_length: int = spec(2048, "the longest prompt + completion, in tokens (Unsloth's max_seq_length)",
                               bound=AT_LEAST_1)
    trust_remote_code: bool = spec(False, "run the model repository's own Python code (models not in transformers)")


# The linear layers of a Llama-style decoder layer: lora.target_modules' default and what "all-linear" means to the
# memory budget (envkit.budget).
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSpec:
    r: int = spec(16, "the LoRA rank: the adapter's size and capacity", bound=AT_LEAST_1)
    alpha: int = spec(32, "the LoRA scale (updates scaled by alpha / r)", bound=POSITIVE)
    dropout: float = spec(0.0, "dropout on the LoRA path", bound=Bound(0, 1, high_open=True))
    target_modules: list[str] = spec(list(LINEAR_MODULES), "the layers that get an adapter (names of the model's "
                                     "linear modules)")


@dataclass
class DatasetSpec:
    path: str | None = spec(None, "a local .jsonl, .json, .parquet or .csv, relative to the recipe")
    name: str | None = spec(None, "a registry dataset (openai/gsm8k); one of path and name")
    config: str | None = spec(None, "the registry dataset's configuration (gsm8k: main)")
    split: str = spec("train", "the registry dataset's split to train on")
    # Evaluation rows: at most one of eval_path, eval_split, test_size.  Evaluated every output.save_steps unless
    # grpo.eval_strategy / eval_steps say otherwise; metrics.jsonl gets eval_* rows.
    eval_path: str | None = spec(None, "evaluation rows from a local file like path")
    eval_split: str | None = spec(None, "evaluation rows from this split of the registry dataset (with name)")
    test_size: float | None = spec(None, "evaluation rows held out of the training rows: a fraction below 1, or a "
                                   "count", bound=POSITIVE)
    prompt_field: str = spec("question", "the prompt column: text, or chat messages [{role, content}, ...] "
                             "(conversational; trailing assistant turns dropped, system_prompt first)")
    prompt_template: str | None = spec(None, 'str.format over the row for a text prompt, e.g. '
                                       '"Question: {question}\\nAnswer:"')
    answer_field: str = spec("answer", "the reference answer's column: the rewards get it as answer=")
    system_prompt: str | None = spec(None, "a system message before each prompt (chat), or a first paragraph (text)")
    use_chat_template: bool = spec(True, "format prompts with the tokenizer's chat template (the model needs one)")


@dataclass
class RewardSpec:
    name: str = spec(help="a builtin (exact_answer, format, length, digits) or module:function, the module beside "
                          "the recipe (docs/rewards.md)")
    weight: float = spec(1.0, "its weight in the summed reward")


@dataclass
class GrpoSpec:
    num_generations: int = spec(8, "completions sampled per prompt, compared with each other",
                                bound=Bound(2, why="GRPO's advantage compares 2 or more completions of each prompt"))
    max_prompt_length: int = spec(256, "the longest prompt, in tokens", bound=AT_LEAST_1)
    max_completion_length: int = spec(256, "the longest completion, in tokens", bound=AT_LEAST_1)
    learning_rate: float = spec(5e-6, "the optimizer's peak learning rate", bound=POSITIVE)
    max_steps: int | None = spec(None, "optimizer steps to train; unset: num_epochs", bound=AT_LEAST_1)
    num_epochs: float | None = spec(None, 'used when max_steps is unset (default 1 epoch)', bound=POSITIVE)
    per_device_train_batch_size: int = spec(8, "completions per device per forward pass (a multiple of "
                                            "num_generations over all ranks)", bound=AT_LEAST_1)
    gradient_accumulation_steps: int = spec(1, "forward passes per optimizer step", bound=AT_LEAST_1)
    beta: float = spec(0.0, "the KL penalty's weight (0: no reference model, KL not logged)",
                       bound=Bound(0, why="the KL penalty's weight: 0 turns it off, a negative one rewards "
                                          "drifting from the base"))
    loss_type: LOSS_TYPES = spec("dapo", "TRL's GRPO loss variant (how token losses are normalized)")
    temperature: float = spec(1.0, "sampling temperature of the completions", bound=POSITIVE)
    top_p: float = spec(1.0, "nucleus sampling: the probability mass sampled from", bound=Bound(0, 1, low_open=True))
    top_k: int | None = spec(None, "sample from the k likeliest tokens only; unset: all", bound=AT_LEAST_1)
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

    host: str = spec("127.0.0.1", "the server's address; a non-loopback one makes it listen on all interfaces "
                     "(multi-node)")
    port: int = spec(8000, "the server's HTTP port", bound=PORT)
    group_port: int = spec(51216, "NCCL weight-sync rendezvous", bound=PORT)
    # How long to wait for the server's health endpoint (envkit, and TRL's trainers on other machines).
    # A server that dies is seen at once, so this only bounds a hang: a 205M model's first start on a fresh
    # H100 took 152 s (benchmarks/server_smoke.py), TRL's 240 s default leaves larger models little room.
    timeout_s: float = spec(600.0, "how long to wait for the server's health endpoint, in seconds", bound=POSITIVE)


@dataclass
class VllmSpec:
    enabled: Auto | bool = spec("auto", "generate with vLLM; auto: where it can run (a GPU, vllm installed), else "
                                "model.generate, with the cost said")
    mode: Literal["colocate", "server"] = spec("colocate", "colocate: vLLM in each training process; server: a "
                                               "vLLM server on resources.generation_gpus")
    gpu_memory_utilization: Auto | float = spec("auto", "vLLM's share of the GPU; auto: from envkit budget",
                                                bound=Bound(0, 1, low_open=True,
                                                            why="vLLM's share of the GPU's memory"))
    sleep: Auto | bool = spec("auto", "vLLM sleeps while the trainer steps (frees its memory); auto: where the "
                              "budget needs it and it works")
    max_lora_rank: int | None = spec(None, "the largest LoRA rank vLLM serves; unset: lora.r")
    kv_cache_dtype: Literal["auto", "fp8"] = spec("auto", "fp8: a KV cache in FP8, half the memory of bf16")
    # Server mode: the server's shape (tensor x data parallel = generation GPUs).  Colocate: each
    # training rank's vLLM is sharded over tensor_parallel_size ranks (TRL's vllm_tensor_parallel_size).
    tensor_parallel_size: int = spec(1, "GPUs one vLLM engine is sharded over", bound=AT_LEAST_1)
    data_parallel_size: int = spec(1, "vLLM engine copies of the server (server mode)", bound=AT_LEAST_1)
    server: VllmServerSpec = field(default_factory=VllmServerSpec)


@dataclass
class ResourcesSpec:
    """GPUs by index among the visible ones (CUDA_VISIBLE_DEVICES order), or a count; unset: one in-process run."""

    generation_gpus: list[int] | int | None = spec(None, "the vLLM server's GPUs (vllm.mode: server)", bound=GPUS)
    training_gpus: list[int] | int | None = spec(None, "one trainer rank each; server mode default: the GPUs left",
                                                 bound=GPUS)


def gpu_count(gpus: list[int] | int | None) -> int:
    """How many GPUs a resources entry names (0 when unset)."""
    return 0 if gpus is None else gpus if isinstance(gpus, int) else len(gpus)


@dataclass
class DistributedSpec:
    """How `accelerate launch` runs the trainer ranks; the multi-node fields mirror accelerate's flags."""

    backend: Literal["ddp", "deepspeed-zero2", "deepspeed-zero3", "fsdp"] = spec("ddp", "how trainer ranks share "
                                                                                  "the model (accelerate)")
    accelerate_config: str | None = spec(None, "an accelerate config file, relative to the recipe; replaces backend")
    num_machines: int = spec(1, "machines in the run (each runs envkit train with its machine_rank)",
                             bound=AT_LEAST_1)
    machine_rank: int = spec(0, "this machine's rank, 0 the main one (--machine-rank overrides)")
    main_process_ip: str | None = spec(None, "the main machine's address, needed when num_machines > 1")
    main_process_port: int | None = spec(None, "accelerate's default: 29500", bound=PORT)


@dataclass
class WatchdogSpec:
    """Deadlines of a multi-process run (envkit.launch.watchdog): on expiry envkit names the side that stalled,
    writes its processes' Python stacks, and ends the run (exit 1) instead of hanging."""

    enabled: bool = spec(True, "watch a launched run (a vLLM server, several ranks); off: wait as long as it hangs")
    init_s: float = spec(1800.0, "from the launch until every rank has built its trainer (model load, the NCCL "
                         "groups' init), in seconds", bound=POSITIVE)
    step_multiple: float = spec(10.0, "a step's (and a weight sync's) deadline: this many times the median one so "
                                "far", bound=Bound(1))
    step_floor_s: float = spec(600.0, "a step's deadline is never below this; also the first step's, before there "
                               "is a median", bound=POSITIVE)
    sync_floor_s: float = spec(300.0, "a weight sync's deadline is never below this (server mode)", bound=POSITIVE)
    health_s: float = spec(120.0, "the vLLM server's health endpoint may go unanswered this long during the run",
                           bound=POSITIVE)
    save_s: float = spec(120.0, "after a stall, the time the trainer gets to save a checkpoint before every "
                         "process is ended", bound=Bound(0))


@dataclass
class OutputSpec:
    dir: str | None = spec(None, "the run's folder; default: runs/<recipe name>, relative to the working directory "
                           "(--output overrides)")
    save_steps: int = spec(50, "a checkpoint every this many steps (and an evaluation, with eval rows)",
                           bound=AT_LEAST_1)
    keep: int | None = spec(3, "checkpoints kept, the newest; unset: all", bound=AT_LEAST_1)
    report_to: list[str] = spec([], "trackers TRL reports to: tensorboard, trackio, wandb (offline without a key), "
                                "mlflow, ...; each writes into the run folder unless its variable says otherwise "
                                "(envkit doctor --explain EK701); empty: none")
    samples_every: int | None = spec(10, "every this many steps (and step 1) the step's prompts, completions, their "
                                     "rewards per function and the answer go to samples.jsonl (and the tracker's "
                                     "table); envkit report RUN --samples prints them; null: none", bound=AT_LEAST_1)
    merge: bool = spec(False, "also save merged/: the base with the adapter folded in")


@dataclass
class Recipe:
    version: Literal[1] = spec(help="the recipe format's version: 1")
    model: ModelSpec = spec()
    dataset: DatasetSpec = spec()
    rewards: list[RewardSpec] = spec()
    backend: Literal["trl", "unsloth"] = spec("trl", "trl: TRL's GRPOTrainer on transformers; unsloth: Unsloth's "
                                              "FastLanguageModel with fast_inference")
    lora: LoraSpec = field(default_factory=LoraSpec)
    grpo: GrpoSpec = field(default_factory=GrpoSpec)
    vllm: VllmSpec = field(default_factory=VllmSpec)
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    distributed: DistributedSpec = field(default_factory=DistributedSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    watchdog: WatchdogSpec = field(default_factory=WatchdogSpec)
    seed: int = spec(42, "the seed of sampling, initialisation and data order",
                     bound=Bound(0, 2**32 - 1, why="numpy and torch take seeds from 0 to 2**32 - 1"))
    guard: Literal["warn", "stop", "off"] = spec("warn", "the run's guards, stale weights and learning signal: warn, "
                                                 "stop (checkpoint, then exit 3 or 4) or off")
    # Not YAML keys: where the recipe came from (set by the loader).
    source: str = field(default="", metadata={"input": False})
    sha256: str = field(default="", metadata={"input": False})
