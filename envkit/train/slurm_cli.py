"""`envkit slurm`: write (and submit) the sbatch script of a recipe.  Only click at import time.

A command of its own rather than `envkit train --slurm`: it trains nothing here, needs none of this machine's GPUs
or packages (the job's nodes run `envkit train`), and its options are Slurm's (partition, time, container image),
which `envkit train` would otherwise carry for every local run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click

from envkit.exitcodes import FAILED, USAGE
from envkit.terminal import echo


@click.command()
@click.argument("recipe")
@click.option("--output", type=click.Path(file_okay=False), help="The run folder (default: output.dir, else "
              "runs/<recipe name>); the script and the job's log go to its slurm/.")
@click.option("--nodes", type=click.IntRange(1), help="Default: distributed.num_machines.")
@click.option("--gpus-per-node", type=click.IntRange(0), help="Default: the recipe's highest GPU index + 1; "
              "0: ask for no GPU (CPU ranks over gloo, a smoke run).")
@click.option("--partition", help="sbatch --partition.")
@click.option("--account", help="sbatch --account.")
@click.option("--time", "time_limit", metavar="LIMIT", help="sbatch --time (HH:MM:SS, D-HH:MM).")
@click.option("--container-image", metavar="IMAGE", help="Run each node's task in this image with pyxis/enroot "
              "(srun --container-image: a registry image such as registry#envkit/grpo:tag, or a .sqsh file); "
              "default: this Python environment, which every node must see at the same path.")
@click.option("--requeue", is_flag=True, help="Requeue on preemption, scontrol requeue or (with --time) near the "
              "time limit: the trainer saves a checkpoint on SIGTERM and the next start resumes from it.")
@click.option("--requeue-before", default=300, show_default=True, type=click.IntRange(1), metavar="S",
              help="With --requeue and --time: requeue this many seconds before the limit.")
@click.option("--sbatch", "sbatch_options", multiple=True, metavar="OPTION",
              help="One more #SBATCH line, e.g. --sbatch=--qos=high (repeatable).")
@click.option("--submit", is_flag=True, help="Submit it with sbatch and print the job id.")
def slurm(recipe, output, nodes, gpus_per_node, partition, account, time_limit, container_image, requeue,
          requeue_before, sbatch_options, submit) -> None:
    """Write RUN/slurm/job.sbatch: RECIPE's layout on Slurm nodes, one `envkit train` per node (docs/multi-gpu.md).

    Exit codes: 0 written (and submitted), 1 sbatch refused it, 2 a recipe or option error.
    """
    from envkit import __version__
    from envkit.files import WriteError, write_owned
    from envkit.launch.layout import LaunchError
    from envkit.launch.slurm import PYXIS_PYTHON, SCRIPT, SlurmJob, sbatch_script
    from envkit.recipe.library import find_recipe
    from envkit.recipe.load import RecipeError, load_recipe
    from envkit.train.rundir import check_writable

    try:
        recipe_path = find_recipe(recipe).resolve()
        loaded = load_recipe(recipe_path)
        run_dir = Path(output or loaded.output.dir or Path("runs") / recipe_path.stem).resolve()
        job = SlurmJob(recipe_path, run_dir, Path.cwd(), PYXIS_PYTHON if container_image else sys.executable,
                       nodes, gpus_per_node, partition, account, time_limit, container_image, requeue,
                       requeue_before, tuple(sbatch_options))
        text = sbatch_script(loaded, job, __version__)
        check_writable(run_dir)  # and take it for the run: its ranks refuse a folder envkit did not take
        (run_dir / "slurm").mkdir(exist_ok=True)  # sbatch opens the job's log there: it must exist
        script = run_dir / "slurm" / SCRIPT
        write_owned(script, text)
    except (RecipeError, LaunchError) as exc:
        echo(f"envkit slurm: {exc}", err=True)
        sys.exit(USAGE)
    except WriteError as exc:
        echo(f"envkit slurm: {exc}", err=True)
        sys.exit(USAGE)
    except OSError as exc:  # slurm/ cannot be made in it (a file of that name)
        echo(f"envkit slurm: cannot make {run_dir / 'slurm'}: {exc.strerror}", err=True)
        sys.exit(USAGE)
    echo(f"envkit slurm: wrote {script}")
    if not submit:
        echo(f"envkit slurm: submit with: sbatch {script}")
        return
    if shutil.which("sbatch") is None:
        echo("envkit slurm: --submit: sbatch not found on PATH (run it on the cluster's login node)", err=True)
        sys.exit(USAGE)
    done = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        echo(f"envkit slurm: sbatch refused {script}: {done.stderr.strip() or done.stdout.strip()}", err=True)
        sys.exit(FAILED)
    job_id = done.stdout.strip().split(";")[0]
    echo(f"envkit slurm: submitted job {job_id}; its log: {run_dir / 'slurm' / f'{job_id}.log'}")
