"""Multi-GPU launch: checks of a recipe's process layout against this machine (EK5xx).

They need a recipe, which `envkit doctor` does not take, so they live in their own registry (LAUNCH_CHECKS) and
`envkit train` runs them (envkit.train.plan, with envkit.launch.machine's probe) after laying out the launch;
`envkit doctor --explain
EK501` documents them like every other check.  Each is a pure function of Facts and LaunchInputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from envkit.facts import Facts, device_index
from envkit.knowledge import curated, in_window, load
from envkit.launch.layout import LaunchLayout
from envkit.recipe.derived import max_model_length
from envkit.recipe.schema import Recipe
from envkit.rules.base import Outcome, Rule, fail, ok, rule, skip, warn
from envkit.rules.registry import Registry

if TYPE_CHECKING:
    from envkit.launch.tracking import TrackerFacts

LAUNCH_CHECKS: Registry[Rule] = Registry("launch checks")


@dataclass(frozen=True)
class LaunchProbe:
    """This machine's answers to the launch checks' questions: probed by envkit.launch.machine before planning."""

    busy_ports: tuple[int, ...] = ()  # the recipe's ports found in use (the checks look at the ones the run binds)
    model_context: int | None = None  # the model's max_position_embeddings, when readable locally
    fsdp_version: int | None = None  # the FSDP version of the recipe's own accelerate config (None: no FSDP there)
    quant_method: str | None = None  # the local model's config.json quantization_config.quant_method


@dataclass(frozen=True)
class LaunchInputs:
    """What the launch checks read besides Facts."""

    recipe: Recipe
    layout: LaunchLayout
    use_vllm: bool  # the run generates with vLLM (the run plan's decision)
    machine: LaunchProbe = LaunchProbe()
    trackers: TrackerFacts | None = None  # what output.report_to's trackers need here (EK701, envkit.launch.tracking)


def _gpus(layout: LaunchLayout) -> str:
    parts = [f"generation GPUs {layout.generation_gpus}"] if layout.generation_gpus else []
    return ", ".join(parts + [f"training GPUs {layout.training_gpus}"])


@rule("EK501", "launch-gpus", "launch", LAUNCH_CHECKS)
def launch_gpus(facts: Facts, inputs: LaunchInputs) -> Outcome:
    """The GPUs the recipe assigns exist on this machine.

    resources.generation_gpus and resources.training_gpus are indices among the GPUs visible to
    envkit train (after CUDA_VISIBLE_DEVICES), or counts; server mode without training_gpus trains
    on every GPU the server leaves.  A recipe naming more GPUs than are visible fails here instead
    of minutes later in CUDA.  Without any GPU, trainer ranks run on CPU over gloo (a warning): a
    multi-rank or multi-node smoke run of the tiny recipe, as the Slurm tests run it.
    """
    layout = inputs.layout
    named = layout.generation_gpus + layout.training_gpus
    if not named:
        return skip("the recipe assigns no GPUs (resources unset)")
    visible = facts.visible_gpus()
    if not visible and not layout.generation_gpus:  # the ranks' trainer runs on CPU there (use_cpu: gloo)
        return warn(f"no GPU visible: the {len(layout.training_gpus)} trainer rank(s) run on CPU (gloo)",
                    f"{_gpus(layout)}; 0 visible", "for a CPU smoke run (tests, a Slurm script) only; train on GPUs")
    need = max(named) + 1
    evidence = f"{_gpus(layout)}; {len(visible)} visible" + (f": {visible[0].name}" if visible else "")
    if need > len(visible):
        return fail(f"the recipe needs GPU index {need - 1}, {len(visible)} GPU(s) visible", evidence,
                    "lower resources.generation_gpus/training_gpus, or run where more GPUs are visible")
    return ok(f"{len(set(named))} of {len(visible)} visible GPUs assigned", evidence)


@rule("EK502", "cuda-visible-devices", "launch", LAUNCH_CHECKS)
def cuda_visible_devices(facts: Facts, inputs: LaunchInputs) -> Outcome:
    """CUDA_VISIBLE_DEVICES names existing GPUs, each once.

    envkit train gives each process its own CUDA_VISIBLE_DEVICES, picked from the launcher's: recipe
    index i is the i-th entry.  A duplicate entry makes CUDA fail at start, an index beyond the
    machine's GPUs (or -1) hides that GPU and every one after it, and an empty value hides them all.
    """
    layout = inputs.layout
    if not (layout.generation_gpus or layout.training_gpus):
        return skip("the recipe assigns no GPUs (resources unset)")
    value = facts.cuda_visible_devices
    if value is None:
        return ok("CUDA_VISIBLE_DEVICES unset: recipe indices are the machine's GPU indices", _gpus(layout))
    entries = [e.strip() for e in value.split(",") if e.strip()]
    evidence = f"CUDA_VISIBLE_DEVICES={value}; {_gpus(layout)}"
    if not entries:
        return fail("CUDA_VISIBLE_DEVICES hides every GPU", evidence,
                    "unset CUDA_VISIBLE_DEVICES or list the GPUs to use")
    repeated = sorted({e for e in entries if entries.count(e) > 1})
    if repeated:
        return fail(f"CUDA_VISIBLE_DEVICES lists GPU {repeated[0]} twice", evidence, "list each GPU once")
    indices = [i for i in map(device_index, entries) if i is not None]
    invalid = [i for i in indices if i < 0 or (facts.gpus and i >= len(facts.gpus))]
    if invalid:
        return fail(f"CUDA_VISIBLE_DEVICES entry {invalid[0]} is not a GPU here: "
                    "CUDA ignores it and the entries after it",
                    f"{evidence}; {len(facts.gpus)} GPU(s) on the machine",
                    "list only existing GPU indices (nvidia-smi -L)")
    return ok(f"CUDA_VISIBLE_DEVICES={value}: recipe indices count within it", evidence)


@rule("EK503", "launch-ports", "launch", LAUNCH_CHECKS)
def launch_ports(facts: Facts, inputs: LaunchInputs) -> Outcome:
    """The ports the run binds are free.

    The vLLM server listens on vllm.server.port (8000); the NCCL weight-sync group meets on
    vllm.server.group_port (51216), hosted by the trainer since trl 1.11 and by the server before;
    accelerate's ranks meet on distributed.main_process_port (29500).  A port still held, often by
    a previous run's server, fails the run after the model has loaded.
    """
    ports = sorted({p for proc in inputs.layout.processes for p in proc.ports})
    if not ports:
        return skip("no process of this run binds a port")
    roles = port_roles(inputs.recipe)
    evidence = ", ".join(f"{p} ({roles.get(p, 'port')})" for p in ports)
    busy = [p for p in ports if p in inputs.machine.busy_ports]
    if busy:
        return fail(f"port {busy[0]} ({roles.get(busy[0], 'port')}) is in use", evidence,
                    f"stop what holds it (ss -ltnp 'sport = :{busy[0]}'), or choose another port in the recipe")
    return ok(f"ports {', '.join(map(str, ports))} free", evidence)


def port_roles(recipe: Recipe) -> dict[int, str]:
    """The ports a recipe may have its processes bind, with the field that sets each."""
    server, dist = recipe.vllm.server, recipe.distributed
    accelerate_port = dist.main_process_port or load("launch")["accelerate_default_port"]["value"]
    return {accelerate_port: "distributed.main_process_port", server.group_port: "vllm.server.group_port",
            server.port: "vllm.server.port"}


NCCL_VARIABLES = ("NCCL_P2P_DISABLE", "NCCL_IB_DISABLE", "NCCL_SOCKET_IFNAME")


@rule("EK504", "nccl-env", "launch", LAUNCH_CHECKS)
def nccl_env(facts: Facts, inputs: LaunchInputs) -> Outcome:
    """NCCL settings suit a run of several processes.

    Trainer ranks all-reduce gradients over NCCL and server mode pushes weights to vLLM over NCCL.
    NCCL_P2P_DISABLE=1 routes GPU-to-GPU copies through host memory (needed only where P2P is
    broken: some consumer GPUs and VMs); NCCL_IB_DISABLE=1 makes machines talk over TCP sockets;
    NCCL_SOCKET_IFNAME picks the network interface (across machines it must not be the loopback).
    """
    layout = inputs.layout
    if layout.in_process:
        return skip("a single process: no NCCL traffic")
    env = {name: facts.env.get(name) for name in NCCL_VARIABLES}
    evidence = ", ".join(f"{k}={v if v is not None else '<unset>'}" for k, v in env.items())
    machines = inputs.recipe.distributed.num_machines
    interface = env["NCCL_SOCKET_IFNAME"] or ""
    if machines > 1 and not interface.startswith("^") and interface.lstrip("=").startswith("lo"):  # ^lo excludes lo
        return fail(f"NCCL_SOCKET_IFNAME={interface} cannot reach the other machines", evidence,
                    "set NCCL_SOCKET_IFNAME to the interface the machines share (ip -br addr), or unset it")
    if machines > 1 and env["NCCL_IB_DISABLE"] == "1":
        return warn("NCCL_IB_DISABLE=1: machines exchange gradients over TCP sockets (slow)", evidence,
                    "unset NCCL_IB_DISABLE where InfiniBand/RoCE works")
    if env["NCCL_P2P_DISABLE"] == "1":
        return warn("NCCL_P2P_DISABLE=1: GPU-to-GPU traffic goes through host memory (slower steps and weight sync)",
                    evidence, "unset NCCL_P2P_DISABLE unless this machine's GPUs cannot do P2P")
    note = ("; NCCL picks the network interface (set NCCL_SOCKET_IFNAME if it picks the wrong one)"
            if machines > 1 and not interface else "")
    return ok(f"NCCL environment fits {machines} machine(s){note}", evidence)


@rule("EK505", "max-model-length", "launch", LAUNCH_CHECKS)
def max_model_length_check(facts: Facts, inputs: LaunchInputs) -> Outcome:
    """vLLM's context (vllm_max_model_length) holds prompt plus completion.

    envkit sets vllm_max_model_length (and the server's --max-model-len) to grpo.max_prompt_length
    + grpo.max_completion_length.  vLLM refuses a context beyond the model's position embeddings,
    and rejects a request whose prompt plus completion does not fit, a frequent failure of TRL
    runs; when the installed TRL's GRPOConfig has no max_prompt_length (envkit train says "not
    applied"), prompts are not cut, so max_prompt_length must cover the longest prompt in tokens.
    """
    if not inputs.use_vllm:
        return skip("generation without vLLM")
    g, declared = inputs.recipe.grpo, inputs.recipe.model.max_seq_length
    need = max_model_length(inputs.recipe)
    context = inputs.machine.model_context
    evidence = (f"max_prompt_length {g.max_prompt_length} + max_completion_length {g.max_completion_length} = {need}; "
                f"model.max_seq_length {declared}; "
                f"model positions {context if context is not None else 'unknown here'}")
    if context is not None and need > context:
        return fail(f"vllm_max_model_length {need} exceeds the model's {context} positions", evidence,
                    "lower grpo.max_prompt_length or grpo.max_completion_length")
    if need > declared:
        return warn(f"vllm_max_model_length {need} exceeds model.max_seq_length {declared}", evidence,
                    "lower the grpo lengths, or raise model.max_seq_length if the model takes more")
    return ok(f"vllm_max_model_length {need} = prompt {g.max_prompt_length} + completion {g.max_completion_length}",
              evidence)


@rule("EK506", "server-sharded-sync", "launch", LAUNCH_CHECKS)
def server_sharded_sync(facts: Facts, inputs: LaunchInputs) -> Outcome:
    """Server mode's weight sync copies each weight while it is still gathered (no FSDP1 on trl 1.11-1.16).

    From trl 1.11.0 server mode streams the weights into vLLM's packed broadcast, which buffers views
    of many tensors before copying them; under FSDP1 each module's full parameters are summoned only
    until the generator moves on, so the views can point at re-sharded storage by the time they are
    sent (review of huggingface/trl PR #6765; curated.json ``trl_server_sharded_sync``).  envkit's own
    layouts are not affected (LoRA under ZeRO-3 is gathered whole; its fsdp backend is FSDP2): only a
    recipe's own accelerate config with FSDP version 1 is.  A warning: seen in review, not reproduced.
    Fix: fsdp_version: 2 in the accelerate config (or distributed.backend: fsdp), or vllm.mode: colocate.
    """
    recipe, trl = inputs.recipe, facts.package("trl")
    if recipe.vllm.mode != "server" or not inputs.use_vllm or trl is None:
        return skip("no vLLM server with trl")
    row = curated("trl_server_sharded_sync")
    version = inputs.machine.fsdp_version
    evidence = (f"trl {trl.version}, FSDP version {version or '-'} "
                f"({recipe.distributed.accelerate_config or 'backend ' + recipe.distributed.backend})")
    if version in row["fsdp_versions"] and in_window(trl.version, row["trl"]):
        return warn(f"FSDP{version} with vllm.mode: server on trl {trl.version}: the weights sent to "
                    "vLLM may be read after they are re-sharded", f"{evidence}; {row['source']}",
                    "fsdp_version: 2 in the accelerate config (or distributed.backend: fsdp), or vllm.mode: colocate")
    return ok("server mode's weight sync copies each weight while it is gathered", evidence)


@rule("EK507", "sleep-quantized-load", "launch", LAUNCH_CHECKS)
def sleep_quantized_load(facts: Facts, inputs: LaunchInputs) -> Outcome:
    """A colocated vLLM that may sleep does not load FP8/NVFP4 checkpoint weights (vllm#48680).

    With sleep mode vLLM loads the weights, their post-processing included, inside its sleep pool,
    which cannot hand back the memory of the tensors that post-processing replaces: loading an NVFP4
    (modelopt) model needed about one more copy of its weights and ran out of memory where it fits
    without sleep mode (vllm-project/vllm#48680, open; PR #49151; curated.json
    ``sleep_mode_quantized_load``).  envkit's own models are bf16/fp16 or bitsandbytes, so only a
    pre-quantized checkpoint named as the model is concerned.  A warning: seen upstream, not reproduced.
    Fix: vllm.sleep: false, or a bf16 checkpoint.
    """
    recipe = inputs.recipe
    if not inputs.use_vllm or recipe.vllm.mode != "colocate" or recipe.vllm.sleep is False:
        return skip("no colocated vLLM that may sleep")
    row = curated("sleep_mode_quantized_load")
    method = inputs.machine.quant_method
    evidence = f"model {recipe.model.name}: quant_method {method or '-'}, vllm.sleep: {recipe.vllm.sleep}"
    if method in row["quant_methods"]:
        return warn(f"vLLM sleep mode loads the model's {method} weights inside its pool: "
                    "loading may need about one more copy of them", f"{evidence}; {row['source']}",
                    "vllm.sleep: false, or a bf16 checkpoint of the model")
    return ok("the weights vLLM loads are not FP8/NVFP4 checkpoint weights", evidence)


from envkit.launch import tracking  # noqa: F401  registers EK701, which reads LaunchInputs (above)
