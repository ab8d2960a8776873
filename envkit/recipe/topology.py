"""Where a recipe's processes run, checked across fields: GPU assignment, vLLM parallelism and distributed
settings (envkit.launch.plan relies on these); the ranges of single fields (ports, sizes, counts) are the
schema's bounds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from envkit.recipe.paths import FileProblem, local_file
from envkit.recipe.schema import Recipe, gpu_count

if TYPE_CHECKING:
    from envkit.recipe.checks import Fail


def check_topology(recipe: Recipe, fail: Fail, base: Path) -> None:
    """Every problem to ``fail``; distributed.accelerate_config becomes an absolute path (``base``: the recipe's
    folder)."""
    v, res, dist = recipe.vllm, recipe.resources, recipe.distributed
    if v.server.port == v.server.group_port:
        fail(("vllm", "server", "group_port"), f"must differ from vllm.server.port ({v.server.port})")
    _check_gpus(recipe, fail)
    if not 0 <= dist.machine_rank < dist.num_machines:
        fail(("distributed", "machine_rank"), f"needs 0 <= machine_rank < num_machines, got {dist.machine_rank} "
             f"of {dist.num_machines}")
    if dist.num_machines > 1 and not dist.main_process_ip:
        fail(("distributed", "main_process_ip"), "num_machines > 1 needs the address of machine 0")
    if dist.accelerate_config is not None:
        if dist.backend != "ddp":
            fail(("distributed", "accelerate_config"), f"replaces backend: {dist.backend}; give one of the two")
        try:
            dist.accelerate_config = local_file(base, dist.accelerate_config)
        except FileProblem as problem:
            fail(("distributed", "accelerate_config"), str(problem))
    launched = dist.num_machines > 1 or dist.backend != "ddp" or dist.accelerate_config is not None
    if launched and res.training_gpus is None and v.mode != "server":  # server mode trains on the GPUs left
        fail(("resources", "training_gpus"), "distributed settings start trainer ranks: name their GPUs "
             "(a list, or a count)")


def _check_gpus(recipe: Recipe, fail: Fail) -> None:
    """The generation and training GPUs: distinct, not shared, and as many as vLLM's parallelism uses."""
    v, res = recipe.vllm, recipe.resources
    for name in ("generation_gpus", "training_gpus"):
        gpus = getattr(res, name)
        if isinstance(gpus, int) and gpus < 1:
            fail(("resources", name), f"a count must be at least 1, got {gpus}")
        if isinstance(gpus, list) and (not gpus or min(gpus) < 0 or len(set(gpus)) < len(gpus)):
            fail(("resources", name), f"needs distinct GPU indices (0, 1, ...), got {gpus}")
    if isinstance(res.generation_gpus, list) and isinstance(res.training_gpus, list):
        shared = sorted(set(res.generation_gpus) & set(res.training_gpus))
        if shared:
            fail(("resources", "training_gpus"), f"GPU {shared[0]} is also a generation GPU: TRL refuses a GPU "
                 "shared by the vLLM server and a trainer")
    generation = gpu_count(res.generation_gpus)
    if v.mode == "server" and v.enabled is not False:
        if not generation:
            fail(("resources", "generation_gpus"), "vllm.mode: server needs the GPUs of the vLLM server, e.g. "
                 "generation_gpus: [0]")
        elif v.tensor_parallel_size * v.data_parallel_size != generation:
            fail(("vllm", "tensor_parallel_size"), f"tensor_parallel_size x data_parallel_size = "
                 f"{v.tensor_parallel_size * v.data_parallel_size}, but resources.generation_gpus has {generation}: "
                 "make the product match (TP shards one model, DP replicates it)")
    else:
        if v.mode == "server":
            fail(("vllm", "mode"), "server mode needs vLLM: drop vllm.enabled: false or use mode: colocate")
        if generation:
            fail(("resources", "generation_gpus"), "only vllm.mode: server uses generation GPUs (colocate "
                 "generates on the training GPUs)")
        if v.data_parallel_size != 1:
            fail(("vllm", "data_parallel_size"), "applies to the vLLM server only (vllm.mode: server)")
        ranks = gpu_count(res.training_gpus) or 1
        if ranks % v.tensor_parallel_size:
            fail(("vllm", "tensor_parallel_size"), f"{v.tensor_parallel_size} must divide the {ranks} training "
                 "rank(s): colocated vLLM shards over groups of training ranks")
