"""An sbatch script for a recipe: the layout envkit plans, on the nodes Slurm allocates.  Pure text; nothing runs.

One task per node (``srun --ntasks-per-node=1``), and in each task envkit's own launcher: ``envkit train RECIPE
--machine-rank $SLURM_NODEID --num-machines N --main-process-ip HEAD``.  So each node starts what ``envkit train``
plans for that machine (envkit.launch.layout: the vLLM server on machine 0's generation GPUs in server mode, the
trainer ranks under ``accelerate launch`` on every node), supervised and torn down as on one machine
(envkit.launch.procs).  The head node is the first of the job's node list (``scontrol show hostnames``), reached at
its NodeAddr (``scontrol show node``): the address Slurm itself uses, also where a node's name does not resolve.

Requeue (``--requeue``): Slurm's requeue or preemption sends SIGTERM to every process of the job; the trainer
finishes its step and saves a checkpoint (envkit.train.callbacks.StopOnSignal), and the next start runs the same
command, which always passes ``--resume``.  Near the time limit (``--signal=B:USR1@S``) the script asks for the
requeue itself.  Slurm waits KillWait seconds (slurm.conf; often 30) between that SIGTERM and SIGKILL: the save
must fit in it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from envkit.launch.layout import LaunchError, assign_gpus
from envkit.recipe.schema import Recipe

SCRIPT = "job.sbatch"  # in RUN/slurm/, next to the job's log
PYXIS_PYTHON = "python"  # in the image: the image's own interpreter, first on its PATH


@dataclass(frozen=True)
class SlurmJob:
    """What the script asks of Slurm and where the run lives; the layout comes from the recipe."""

    recipe_path: Path  # absolute: the job starts in workdir, its tasks maybe in a container
    run_dir: Path  # absolute; the script and the job's log go to run_dir/slurm
    workdir: Path  # the job's working directory (sbatch --chdir)
    python: str  # the interpreter that runs envkit on the nodes (the current one, or the image's)
    nodes: int | None = None  # None: distributed.num_machines
    gpus_per_node: int | None = None  # None: the recipe's highest GPU index + 1; 0: no GPU asked (CPU)
    partition: str | None = None
    account: str | None = None
    time: str | None = None  # Slurm's time format (HH:MM:SS, D-HH:MM)
    container_image: str | None = None  # pyxis/enroot: srun --container-image
    requeue: bool = False
    requeue_before_s: int = 300  # with --time: how long before the limit the script requeues itself
    sbatch: tuple[str, ...] = field(default_factory=tuple)  # more #SBATCH options, as given


@dataclass(frozen=True)
class NodeLayout:
    nodes: int
    gpus_per_node: int
    generation_gpus: list[int]  # on node 0 (server mode)
    training_gpus: list[int]  # on every node; [] is one in-process rank per node

    def describe(self, server_mode: bool) -> str:
        ranks = max(len(self.training_gpus), 1)
        where = f"{self.gpus_per_node} GPU(s) per node" if self.gpus_per_node else "no GPU (CPU ranks, gloo)"
        server = f"; the vLLM server on node 0's GPU(s) {self.generation_gpus}" if server_mode else ""
        return f"{self.nodes} node(s), {ranks} trainer rank(s) per node ({ranks * self.nodes} in all), {where}{server}"


def node_layout(recipe: Recipe, nodes: int | None, gpus_per_node: int | None) -> NodeLayout:
    """The nodes and GPUs per node the job asks for, from the recipe's layout (envkit.launch.layout.assign_gpus:
    with training_gpus given, the GPUs a node has do not change it)."""
    server_mode = recipe.vllm.mode == "server" and recipe.vllm.enabled is not False
    nodes = nodes or recipe.distributed.num_machines
    if gpus_per_node is None:
        if server_mode and recipe.resources.training_gpus is None:
            raise LaunchError("resources.training_gpus: unset in server mode trains on every GPU the node has: "
                              "pass --gpus-per-node, or name the training GPUs")
        named = [i for gpus in assign_gpus(recipe, 0, server_mode) for i in gpus]
        gpus_per_node = max(named) + 1 if named else 0
    if server_mode and not gpus_per_node:
        raise LaunchError("vllm.mode: server: the vLLM server needs GPUs; --gpus-per-node 0 asks for none")
    generation, training = assign_gpus(recipe, gpus_per_node, server_mode)
    named = generation + training
    if named and gpus_per_node and max(named) >= gpus_per_node:
        raise LaunchError(f"--gpus-per-node {gpus_per_node}: the recipe names GPU index {max(named)}; ask for at "
                          f"least {max(named) + 1}")
    if nodes > 1 and not server_mode and not training:
        raise LaunchError(f"resources.training_gpus: {nodes} nodes start trainer ranks under accelerate: name "
                          "their GPUs (a count, e.g. training_gpus: 1, also for CPU ranks)")
    return NodeLayout(nodes, gpus_per_node, generation, training)


def sbatch_script(recipe: Recipe, job: SlurmJob, envkit_version: str) -> str:
    """The whole script: #SBATCH options, the head node's address, one srun task per node, requeue handling."""
    layout = node_layout(recipe, job.nodes, job.gpus_per_node)
    server_mode = recipe.vllm.mode == "server" and recipe.vllm.enabled is not False
    logs = job.run_dir / "slurm"
    options = [f"--job-name=envkit-{Path(recipe.source).stem}", f"--nodes={layout.nodes}", "--ntasks-per-node=1",
               f"--chdir={job.workdir}", f"--output={logs}/%j.log", "--open-mode=append"]
    if layout.gpus_per_node:  # whole nodes: the ranks' data loaders and the server want the node's CPUs too
        options += [f"--gpus-per-node={layout.gpus_per_node}", "--exclusive"]
    options += [f"--{name}={value}" for name, value in (("partition", job.partition), ("account", job.account),
                                                         ("time", job.time)) if value]
    if job.requeue:
        options.append("--requeue")
        if job.time:
            options.append(f"--signal=B:USR1@{job.requeue_before_s}")
    options += list(job.sbatch)
    train = [job.python, "-m", "envkit", "train", str(job.recipe_path), "--output", str(job.run_dir), "--resume"]
    multinode = ""
    if layout.nodes > 1:
        train += ["--num-machines", str(layout.nodes)]
        multinode = ' --machine-rank "$SLURM_NODEID" --main-process-ip "$1"'
    srun = ["srun", f"--nodes={layout.nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--label"]
    if job.container_image:
        folders = {job.workdir, job.run_dir.parent, job.recipe_path.parent}
        outer = sorted(f for f in folders if not any(other in f.parents for other in folders))  # nested: mounted along
        mounts = ",".join(f"{f}:{f}" for f in outer)
        srun += [f"--container-image={job.container_image}", f"--container-mounts={mounts}",
                 f"--container-workdir={job.workdir}"]
    task = shlex.join(["bash", "-c", f"exec {shlex.join(train)}{multinode}", "envkit-node"])
    lines = [
        "#!/bin/bash",
        f"# Written by `envkit slurm` (envkit {envkit_version}) for {job.recipe_path}: submit with sbatch.",
        f"# {layout.describe(server_mode)}.",
        "# In each node's task: envkit train lays out that node (machine rank $SLURM_NODEID) as on one machine.",
        *(f"#SBATCH {option}" for option in options),
        "set -uo pipefail",
        'echo "envkit: job $SLURM_JOB_ID start $((${SLURM_RESTART_COUNT:-0} + 1)) on $SLURM_JOB_NODELIST"',
        "# The head node: the first of the job's nodes, at the address Slurm reaches it on (NodeAddr).",
        'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        'head_addr=$(scontrol show node "$head" | sed -n "s/.*NodeAddr=\\([^ ]*\\).*/\\1/p")',
        'head_addr=${head_addr:-$head}',
    ]
    if job.requeue:
        lines += [
            "# Near the time limit: requeue.  Slurm then sends SIGTERM to every process of the job, the trainer",
            "# saves a checkpoint after its step, and the next start resumes from it (--resume).",
            ("trap 'echo \"envkit: time limit near: requeueing job $SLURM_JOB_ID\"; "
             "scontrol requeue \"$SLURM_JOB_ID\"' USR1"),
        ]
    lines += [
        # One task per node with all of the node's CPUs (a task gets one unless it asks).
        f'{shlex.join(srun)} --cpus-per-task="$SLURM_CPUS_ON_NODE" \\',
        f'    {task} "$head_addr" &',
        "step=$!",
        '# wait returns early when a trapped signal arrives: wait again until the step has ended',
        'wait "$step"; code=$?',
        'while kill -0 "$step" 2>/dev/null; do wait "$step"; code=$?; done',
        'echo "envkit: job $SLURM_JOB_ID step ended with exit code $code"',
        'exit "$code"',
    ]
    return "\n".join(lines) + "\n"
