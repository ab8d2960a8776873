"""The launch layout: the processes `envkit train` starts for a recipe on this machine, as data (the run's
Plan, envkit.train.plan, holds it).

Pure (no torch/trl/vllm import, nothing started), so ``envkit train --dry-run`` prints exactly what a
run starts and the tests golden-test it.  Two existing engines do the work, no protocol of ours:

* TRL's server mode (``vllm_mode="server"``): a vLLM server on the generation GPUs, started with the
  command the installed TRL expects (knowledge/launch.json: ``vllm serve`` with TRL's settings since
  trl 1.11, TRL's own ``trl vllm-serve`` server before), which the trainer reaches on host:port and
  pushes weights to over NCCL on group_port (trl/generation/vllm_client.py);
* ``accelerate launch`` for the trainer ranks, one per training GPU, each running
  ``python -m envkit train RECIPE --worker`` (DDP, DeepSpeed ZeRO or FSDP flags from TRL's
  trl/accelerate_configs/*.yaml, or the recipe's own accelerate config).

One training process with colocated vLLM stays what it was: a single in-process run.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from string import Template
from typing import Any

from packaging.version import InvalidVersion, Version

from envkit.errors import UsageError
from envkit.knowledge import in_window, load
from envkit.recipe.schema import Recipe, gpu_count
from envkit.recipe.derived import max_model_length

# accelerate's --mixed_precision -> vLLM's --dtype: the server holds the weights in the trainer's precision.
SERVER_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "no": "float32"}


def loopback_address(host: str) -> str | None:
    """The address to listen on when ``host`` names this machine's loopback, else None.  Decided by the address,
    not the spelling: ``LOCALHOST``, ``localhost.``, ``127.1``, ``127.0.0.2``, ``0:0:0:0:0:0:0:1`` and
    ``::ffff:127.0.0.1`` are all loopback (a spelling list sent those to 0.0.0.0, with the dev-mode server
    taking weights from anyone)."""
    name = host.strip().lower().rstrip(".")
    if name == "localhost":
        return "localhost"
    try:
        address = ipaddress.ip_address(name.strip("[]").split("%")[0])
    except ValueError:
        try:  # the C library's short IPv4 forms (127.1), which the server's resolver accepts too
            address = ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return None
    mapped = getattr(address, "ipv4_mapped", None)
    address = mapped or address
    return str(address) if address.is_loopback else None


class LaunchError(UsageError, ValueError):
    """A recipe that cannot be laid out on this machine; one line naming the field and the fix."""


@dataclass(frozen=True)
class ProcessSpec:
    name: str  # "vllm" or "train": also the prefix of its output lines
    argv: list[str]
    env: dict[str, str]  # set on top of the launcher's environment (never a secret)
    gpus: list[str]  # its CUDA_VISIBLE_DEVICES entries
    ports: list[int] = field(default_factory=list)  # ports it binds on this machine
    health_url: str | None = None  # answers 200 once the process is ready
    health_timeout_s: float | None = None  # given with health_url


@dataclass(frozen=True)
class LaunchLayout:
    in_process: bool  # True: the run stays in the envkit process (env applies to it)
    why: str
    generation_gpus: list[int] = field(default_factory=list)  # recipe indices (among the visible GPUs)
    training_gpus: list[int] = field(default_factory=list)
    processes: list[ProcessSpec] = field(default_factory=list)  # started in order; the run ends with the last
    env: dict[str, str] = field(default_factory=dict)
    server: str | None = None  # the server command's name (knowledge/launch.json), None without one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def launch_layout(
    recipe: Recipe,
    recipe_path: str,
    visible_gpus: int,
    trl_version: str | None,
    *,
    vllm_utilization: float | None,
    cuda_visible_devices: str | None = None,
    mixed_precision: str = "bf16",
    model: str | None = None,
    forward: Sequence[str] = (),
    python: str = sys.executable,
) -> LaunchLayout:
    """The processes for ``recipe`` on a machine with ``visible_gpus`` GPUs.

    ``cuda_visible_devices`` is the launcher's own setting: recipe GPU indices count among its entries.
    ``vllm_utilization`` is the server's share of its GPUs, resolved (envkit.train.decisions.vllm_utilization).
    ``model`` is what the server loads (default model.name).  ``forward`` are ``envkit train`` options
    every rank gets (``--output DIR`` ...).
    """
    server_mode = recipe.vllm.mode == "server" and recipe.vllm.enabled is not False
    generation, training = assign_gpus(recipe, visible_gpus, server_mode)
    devices = _device_names(cuda_visible_devices)
    dist = recipe.distributed
    uses_accelerate = (len(training) > 1 or dist.num_machines > 1 or dist.backend != "ddp"
                       or dist.accelerate_config is not None)
    if not server_mode and not uses_accelerate:
        if not training and visible_gpus > 1:
            # One process seeing several GPUs: transformers wraps the model in nn.DataParallel, which TRL's
            # GRPOTrainer refuses ("make a single GPU visible with CUDA_VISIBLE_DEVICES"): show it the first.
            training = [0]
        env = {"CUDA_VISIBLE_DEVICES": ",".join(_map(training, devices, "training_gpus"))} if training else {}
        where = f" on GPU {env['CUDA_VISIBLE_DEVICES']} of {visible_gpus}" if visible_gpus > 1 else ""
        return LaunchLayout(True, f"one training process, generation in it: a single in-process run{where}", [],
                          training, env=env)
    processes = []
    server = _server_entry(trl_version) if server_mode else None
    if server and dist.machine_rank == 0:
        processes.append(_server_process(recipe, server, _map(generation, devices, "generation_gpus"), mixed_precision,
                                         model or recipe.model.name, python, vllm_utilization))
    train_gpus = _map(training, devices, "training_gpus")
    worker = ["-m", "envkit", "train", recipe_path, "--worker", *forward]
    ports, train_env = [], {"CUDA_VISIBLE_DEVICES": ",".join(train_gpus)}
    if server and server["group_port_bound_by"] == "trainer" and dist.machine_rank == 0:
        ports.append(recipe.vllm.server.group_port)
        if loopback_address(recipe.vllm.server.host):
            # The trainer tells the server where to join the weight-sync group: vLLM's get_ip(), which
            # guesses from the default route (0.0.0.0 with a warning on a host without one) unless
            # VLLM_HOST_IP names it.  Server and trainer share this host here: say so.
            train_env["VLLM_HOST_IP"] = "127.0.0.1"
    if uses_accelerate:
        argv = [python, "-m", "accelerate.commands.launch", *_accelerate_args(recipe, len(training), mixed_precision),
                *worker]
        if dist.machine_rank == 0 and len(training) * dist.num_machines > 1:
            ports.append(dist.main_process_port or load("launch")["accelerate_default_port"]["value"])
    else:
        argv = [python, *worker]
    processes.append(ProcessSpec("train", argv, train_env, train_gpus, ports))
    ranks = len(training) * dist.num_machines
    generates = f"a vLLM server on {len(generation)} GPU(s)" if server_mode else "generation in each rank"
    if server_mode and dist.num_machines > 1:
        generates += " of machine 0"
    machines = f" over {dist.num_machines} machines" if dist.num_machines > 1 else ""
    why = f"{ranks} training rank(s){machines}, {generates}"
    return LaunchLayout(False, why, generation, training, processes,
                      server=server["name"] if server else None)


def assign_gpus(recipe: Recipe, visible_gpus: int, server_mode: bool) -> tuple[list[int], list[int]]:
    """(generation, training) GPU indices.  Lists are taken as given; a count takes the lowest indices the
    other list leaves (generation first, as TRL's docs put the server on GPUs 0..); server mode without
    training_gpus trains on every visible GPU left.  Colocate without resources: no GPU named ([]; the
    in-process run then takes the first visible one)."""
    res = recipe.resources
    taken_by_training = res.training_gpus if isinstance(res.training_gpus, list) else []
    generation = _resolve(res.generation_gpus, taken_by_training) if server_mode else []
    if res.training_gpus is None and server_mode:
        training = [i for i in range(visible_gpus) if i not in generation]
        if not training:
            raise LaunchError(f"resources.training_gpus: no GPU left for training ({visible_gpus} visible, "
                              f"{len(generation)} for the vLLM server); name them, e.g. training_gpus: [1]")
    else:
        training = _resolve(res.training_gpus, generation)
    return generation, training


def _resolve(gpus: list[int] | int | None, taken: list[int]) -> list[int]:
    if isinstance(gpus, list):
        return list(gpus)
    free = (i for i in range(len(taken) + gpu_count(gpus)) if i not in taken)
    return [next(free) for _ in range(gpu_count(gpus))]


def _device_names(cuda_visible_devices: str | None) -> list[str] | None:
    """The launcher's CUDA_VISIBLE_DEVICES entries (indices or UUIDs); None when unset (index i is GPU i)."""
    if cuda_visible_devices is None:
        return None
    return [e.strip() for e in cuda_visible_devices.split(",") if e.strip()]


def _map(indices: list[int], devices: list[str] | None, field_name: str) -> list[str]:
    if devices is None:
        return [str(i) for i in indices]
    missing = [i for i in indices if i >= len(devices)]
    if missing:
        raise LaunchError(f"resources.{field_name}: GPU {missing[0]} is not among the {len(devices)} visible "
                          f"(CUDA_VISIBLE_DEVICES={','.join(devices)}); indices count within that list")
    return [devices[i] for i in indices]


def _server_entry(trl_version: str | None) -> dict[str, Any]:
    """The knowledge/launch.json server entry whose TRL range holds the installed TRL."""
    entries = load("launch")["servers"]
    try:
        version = Version(trl_version) if trl_version else None
    except InvalidVersion:
        version = None
    for entry in entries:
        if version is not None and in_window(version, entry["trl"]):
            return entry
    ranges = "; ".join(f"{e['name']} for trl{e['trl']}" for e in entries)
    raise LaunchError(f"vllm.mode: server: no known vLLM server command for trl {trl_version or '(not installed)'} "
                      f"(known: {ranges}); install one of those trl versions")


def _server_process(recipe: Recipe, entry: dict[str, Any], gpus: list[str], mixed_precision: str, model: str | None,
                    python: str, utilization: float | None) -> ProcessSpec:
    v = recipe.vllm
    if model is None:
        raise LaunchError("model: the vLLM server needs a model name or path (model.build models are built at launch)")
    host, port = v.server.host, v.server.port
    # Dev-mode endpoints take weights from anyone who can connect: listen on loopback unless trainers are remote.
    bind = loopback_address(host) or "0.0.0.0"
    values = {
        "model": model, "bind": bind, "port": port,
        "tensor_parallel_size": v.tensor_parallel_size, "data_parallel_size": v.data_parallel_size,
        "gpu_memory_utilization": utilization,
        "dtype": SERVER_DTYPE[mixed_precision], "kv_cache_dtype": v.kv_cache_dtype,
        "max_model_len": max_model_length(recipe),
    }
    argv = [python, "-m", entry["module"], *(Template(a).substitute(values) for a in entry["args"])]
    if recipe.model.trust_remote_code:
        if "trust_remote_code" not in entry["options"]:
            raise LaunchError(f"model.trust_remote_code: the {entry['name']} server of trl{entry['trl']} cannot trust "
                              "remote code; upgrade trl")
        argv += entry["options"]["trust_remote_code"]
    ports = [port] + ([v.server.group_port] if entry["group_port_bound_by"] == "server" else [])
    url_host = f"[{host}]" if ":" in host else host
    return ProcessSpec("vllm", argv, {"CUDA_VISIBLE_DEVICES": ",".join(gpus), **entry["env"]}, gpus, ports,
                       f"http://{url_host}:{port}{entry['health']}", v.server.timeout_s)


def _accelerate_args(recipe: Recipe, ranks_per_machine: int, mixed_precision: str) -> list[str]:
    """`accelerate launch` flags: the process count and machines always (the recipe's GPUs decide them);
    the backend's flags from knowledge unless the recipe brings its own accelerate config."""
    dist = recipe.distributed
    args = ["--num_processes", str(ranks_per_machine * dist.num_machines), "--num_machines", str(dist.num_machines)]
    if dist.accelerate_config is not None:
        args = ["--config_file", dist.accelerate_config, *args]
    else:
        args += ["--mixed_precision", mixed_precision, "--dynamo_backend", "no",
                 *load("launch")["backends"][dist.backend]["args"]]
    if dist.num_machines > 1:
        args += ["--machine_rank", str(dist.machine_rank), "--main_process_ip", str(dist.main_process_ip)]
    if dist.main_process_port is not None:
        args += ["--main_process_port", str(dist.main_process_port)]
    return args
