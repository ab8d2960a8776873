"""`envkit slurm`: the sbatch script as text (goldens for a 2-node server-mode and a 2-node colocate recipe), and
the script of the tiny recipe run by a real Slurm started on this machine (tests/slurm_cluster.py): 2 CPU ranks
over gloo on one node to the end; 2 nodes (one rank each, network namespaces) requeued mid-run by `scontrol
requeue`, resumed from the checkpoint their SIGTERM saved, to the same final step with metrics continuous.

ENVKIT_REGEN_GOLDEN=1 python -m pytest tests/test_slurm.py rewrites tests/fixtures/slurm/*.sbatch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.launch.layout import LaunchError
from envkit.launch.slurm import SlurmJob, node_layout, sbatch_script
from envkit.recipe.load import load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "fixtures" / "slurm"
LAUNCH = Path(__file__).parent / "fixtures" / "launch"
SHARED = Path("/shared/project")  # the paths a cluster's shared filesystem would give; none is looked at


def _job(recipe: str, **options) -> SlurmJob:
    return SlurmJob(SHARED / f"{recipe}.yaml", SHARED / "runs" / recipe, SHARED, "/shared/venv/bin/python", **options)


@pytest.mark.parametrize("case, recipe, options", [
    ("server-2node", "multinode", {"requeue": True, "time": "04:00:00", "partition": "gpu"}),
    ("colocate-2node", "colocate-2gpu", {"nodes": 2, "container_image": "registry#envkit/grpo:tiny-h100"}),
])
def test_sbatch_script_matches_golden(case, recipe, options):
    text = sbatch_script(load_recipe(LAUNCH / f"{recipe}.yaml"), _job(recipe, **options), "0.0.0")
    path = GOLDEN / f"{case}.sbatch"
    if os.environ.get("ENVKIT_REGEN_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def test_the_script_asks_for_the_recipes_layout():
    server = sbatch_script(load_recipe(LAUNCH / "multinode.yaml"), _job("multinode"), "0.0.0")
    assert "#SBATCH --nodes=2\n" in server and "#SBATCH --gpus-per-node=8\n" in server
    # every node runs envkit's own launcher with its machine rank; the head node's address from Slurm
    assert '--num-machines 2 --machine-rank "$SLURM_NODEID" --main-process-ip "$1"' in server
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in server and "--requeue" not in server
    cpu = sbatch_script(load_recipe(LAUNCH / "colocate-2gpu.yaml"), _job("c", gpus_per_node=0, requeue=True), "0")
    assert "--gpus-per-node" not in cpu and "--machine-rank" not in cpu and "#SBATCH --requeue\n" in cpu
    assert "--signal" not in cpu  # no time limit: nothing to requeue ahead of


@pytest.mark.parametrize("extra, options, message", [
    ("vllm: {mode: server}\nresources: {generation_gpus: [0]}\n", {}, "pass --gpus-per-node"),
    ("vllm: {mode: server}\nresources: {generation_gpus: [0], training_gpus: [1]}\n", {"gpus_per_node": 0},
     "the vLLM server needs GPUs"),
    ("resources: {training_gpus: [0, 3]}\n", {"gpus_per_node": 2}, "names GPU index 3; ask for at least 4"),
    ("", {"nodes": 2}, "2 nodes start trainer ranks under accelerate"),
])
def test_layouts_slurm_cannot_run_are_refused_in_one_line(extra, options, message):
    recipe = parse_recipe((LAUNCH / "colocate-1gpu.yaml").read_text() + extra, str(LAUNCH / "x.yaml"))
    with pytest.raises(LaunchError, match=message):
        node_layout(recipe, options.get("nodes"), options.get("gpus_per_node"))


def test_envkit_slurm_writes_the_script_into_the_run_folder(tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["slurm", str(LAUNCH / "multinode.yaml"), "--output", str(run)])
    assert result.exit_code == 0, result.output
    script = run / "slurm" / "job.sbatch"
    assert f"wrote {script}" in result.output and script.read_text().startswith("#!/bin/bash\n")
    assert (run / ".envkit-run").exists()  # taken for the run: its ranks then accept the folder with slurm/ in it
    bad = CliRunner().invoke(main, ["slurm", str(LAUNCH / "server-1+1.yaml"), "--gpus-per-node", "0",
                                    "--output", str(tmp_path / "other")])
    assert bad.exit_code == 2 and "the vLLM server needs GPUs" in bad.output and "Traceback" not in bad.output


def test_submit_says_what_sbatch_refused_in_one_line(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: gpu' >&2\nexit 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    argv = ["slurm", str(LAUNCH / "multinode.yaml"), "--partition", "gpu", "--output", str(tmp_path / "r"), "--submit"]
    result = CliRunner().invoke(main, argv, env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert result.exit_code == 1 and "sbatch refused" in result.stderr
    assert "invalid partition specified: gpu" in result.stderr and "Traceback" not in result.output


def test_train_takes_the_multinode_options_the_script_passes(tmp_path):
    argv = ["train", str(LAUNCH / "colocate-2gpu.yaml"), "--dry-run", "--force", "--output", str(tmp_path / "o"),
            "--num-machines", "2", "--machine-rank", "1"]
    planned = CliRunner().invoke(main, [*argv, "--main-process-ip", "10.0.0.9"])
    launch = json.loads(planned.stdout)["launch"]
    trainer = launch["processes"][-1]["argv"]
    flags = trainer[trainer.index("--num_processes"):trainer.index("-m", 3)]
    assert flags[:4] == ["--num_processes", "4", "--num_machines", "2"]
    assert "--machine_rank 1 --main_process_ip 10.0.0.9" in " ".join(flags)
    unaddressed = CliRunner().invoke(main, argv)
    assert unaddressed.exit_code == 2 and "2 machines need the address of machine 0: --main-process-ip" in \
        unaddressed.stderr and "Traceback" not in unaddressed.output
    beyond = CliRunner().invoke(main, [*argv[:-4], "--machine-rank", "2", "--num-machines", "2"])
    assert beyond.exit_code == 2 and "machine rank 2 needs num_machines above it, got 2" in beyond.stderr


# --- a real Slurm on this machine --------------------------------------------------------------------------------

sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import NODE_IFNAME, Cluster, two_nodes_unavailable, unavailable

slurm = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")
two_nodes = pytest.mark.skipif(unavailable() is None and two_nodes_unavailable() is not None,
                               reason=str(unavailable() is None and two_nodes_unavailable()))


def _tiny_recipe(folder: Path, training_gpus: int, max_steps: int, save_steps: int) -> Path:
    text = (ROOT / "recipes" / "tiny.yaml").read_text()
    text = text.replace("path: data/toy.jsonl", f"path: {ROOT / 'recipes' / 'data' / 'toy.jsonl'}")
    text = text.replace("max_steps: 20", f"max_steps: {max_steps}")
    text = text.replace("save_steps: 10", f"save_steps: {save_steps}")
    text = text.replace("merge: true", "merge: false") + f"resources:\n  training_gpus: {training_gpus}\n"
    path = folder / "tiny-slurm.yaml"
    path.write_text(text)
    return path


def _envkit_slurm(folder: Path, recipe: Path, *options: str, env: dict | None = None) -> tuple[Path, str]:
    """The script `envkit slurm` wrote, and what it said."""
    run = folder / "run"
    done = subprocess.run([sys.executable, "-m", "envkit", "slurm", str(recipe), "--gpus-per-node", "0", "--output",
                           str(run), *options], capture_output=True, text=True, cwd=folder, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return run / "slurm" / "job.sbatch", done.stdout


def _cluster_env(cluster: Cluster) -> None:
    """What the job's tasks inherit (sbatch exports the submitter's environment): one thread per rank on this
    shared machine; gloo on the nodes' own interface where the nodes are namespaces."""
    cluster.env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                                                      os.environ.get("PYTHONPATH")])))
    if cluster.netns:
        cluster.env["GLOO_SOCKET_IFNAME"] = NODE_IFNAME


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@slurm
@pytest.mark.slurm
@pytest.mark.train
def test_tiny_recipe_runs_to_the_end_on_slurm_with_two_cpu_ranks(tmp_path):
    pytest.importorskip("trl")
    recipe = _tiny_recipe(tmp_path, training_gpus=2, max_steps=3, save_steps=3)
    with Cluster(tmp_path / "slurm", nodes=1) as cluster:
        _cluster_env(cluster)
        script, said = _envkit_slurm(tmp_path, recipe, "--submit", env=cluster.env)
        job = said.split("submitted job ")[1].split(";")[0]
        assert f"its log: {script.parent / f'{job}.log'}" in said
        state = cluster.wait_job(job, 400)
    log = (script.parent / f"{job}.log").read_text()
    print(log)
    assert state["JobState"] == "COMPLETED", log[-3000:]
    assert "EK501 no GPU visible: the 2 trainer rank(s) run on CPU (gloo)" in log
    assert "envkit train: done: 3 steps" in log and _steps(script.parent.parent) == [1, 2, 3]


@slurm
@two_nodes
@pytest.mark.slurm
@pytest.mark.train
def test_two_nodes_requeued_mid_run_resume_to_the_same_final_step(tmp_path):
    """Requeued twice: by the script's own trap (USR1, as --signal sends it before the time limit; the trap runs
    `scontrol requeue`), then from outside by `scontrol requeue` (an admin, a preemption).  Each time every rank
    saves a checkpoint on Slurm's SIGTERM and the next start resumes from it."""
    pytest.importorskip("trl")
    script, _ = _envkit_slurm(tmp_path, _tiny_recipe(tmp_path, training_gpus=1, max_steps=10, save_steps=10),
                              "--nodes", "2", "--requeue")
    run = script.parent.parent
    log = script.parent / "1.log"
    with Cluster(tmp_path / "slurm", nodes=2) as cluster:
        _cluster_env(cluster)
        job = cluster.sbatch(script)
        _wait_for_step(cluster, job, run, 1)
        subprocess.run(["scancel", "--batch", "--signal=USR1", job], env=cluster.env, check=True)
        _start_requeued(cluster, job)
        _wait_for_step(cluster, job, run, 5, restarts="1")
        cluster.scontrol("requeue", job)
        _start_requeued(cluster, job)
        state = cluster.wait_job(job, 400)
    text = log.read_text()
    print(text)
    assert state["JobState"] == "COMPLETED" and state["Restarts"] == "2", text[-3000:]
    assert f"envkit: time limit near: requeueing job {job}" in text and text.count("DUE TO JOB REQUEUE") == 4
    assert f"envkit: job {job} start 3 on n[1-2]" in text
    # each SIGTERM's checkpoint (save_steps is the last step: no other), and the next start resumes from it
    stopped = [int(line.split("terminated (SIGTERM) at step ")[1].split(";")[0]) for line in text.splitlines()
               if line.startswith("0: [train] envkit train: terminated (SIGTERM) at step ")]
    assert len(stopped) == 2 and stopped[0] < stopped[1] < 10, text[-3000:]
    assert all(f"resuming from checkpoint-{step} to max_steps 10" in text for step in stopped)
    assert _steps(run) == list(range(1, 11))  # the same final step; no step lost or logged twice


def _wait_for_step(cluster: Cluster, job: str, run: Path, step: int, restarts: str = "0") -> None:
    """Until metrics.jsonl has ``step`` and the job runs its start number ``restarts`` + 1."""
    deadline = time.monotonic() + 300
    while not ((run / "metrics.jsonl").exists() and _steps(run) and _steps(run)[-1] >= step):
        state = cluster.job(job)
        assert time.monotonic() < deadline and state["JobState"] in ("PENDING", "RUNNING", "REQUEUED") \
            and state.get("Restarts") == restarts, (run / "slurm" / f"{job}.log").read_text()[-3000:]
        time.sleep(0.1)


def _start_requeued(cluster: Cluster, job: str) -> None:
    """Slurm holds a requeued batch job back (its BeginTime: about two minutes on); let it start now."""
    cluster.wait_job(job, 120, until=("PENDING",))
    cluster.scontrol("update", f"JobId={job}", "StartTime=now")
