"""`envkit train` and `envkit report`.  Only click at import time (the doctor's start-up stays fast)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import click

from envkit.errors import OptionError, RecipeError, UsageError
from envkit.exitcodes import FAILED
from envkit.terminal import echo, printable
from envkit.runs import generate as generate_limits  # -n and --max-new-tokens bounds; torch loads lazily


@click.command()
@click.argument("recipe")
@click.option("--dry-run", is_flag=True, help="Print the plan and the GRPOConfig arguments; import no torch/trl.")
@click.option("--target", metavar="GPU", help="With --dry-run: plan for this catalog GPU (h100, b200, ...) instead of "
              "this machine's GPUs, e.g. in an image built for it on a machine without one.")
@click.option("--target-count", default=1, show_default=True, type=click.IntRange(1, 64),
              help="How many --target GPUs.")
@click.option("--resume", is_flag=True, help="Continue from the last complete checkpoint-N in the output folder; "
              "a finished run is left as it is, unless --max-steps extends it (docs/training.md: Resuming).")
@click.option("--force", is_flag=True, help="Train even when a doctor check relevant to the run fails.")
@click.option("--max-steps", type=click.IntRange(1),
              help="Override grpo.max_steps (with --resume: beyond a finished run's steps, extends it).")
@click.option("--output", type=click.Path(file_okay=False), help="Override output.dir.")
@click.option("--machine-rank", type=click.IntRange(0),
              help="Override distributed.machine_rank (multi-node: one per machine).")
@click.option("--num-machines", type=click.IntRange(1), help="Override distributed.num_machines.")
@click.option("--main-process-ip", metavar="HOST", help="Override distributed.main_process_ip (envkit slurm's script "
              "passes the head node's address).")
@click.option("--no-patch", "no_patch", multiple=True, metavar="ID",
              help="Do not apply envkit's TRL patch ID (repeatable; for A/B runs, or once upstream fixed it). "
              "docs/training.md: Patches.")
@click.option("-v", "--verbose", is_flag=True, help="Show the libraries' own output too: TRL's per-step log dicts, "
              "progress bars and deprecation warnings (by default one envkit line per step).")
@click.option("--worker", is_flag=True, hidden=True,
              help="A trainer rank started by envkit's launch plan: train in this process.")
def train(recipe, dry_run, target, target_count, resume, force, max_steps, output, machine_rank, num_machines,
          main_process_ip, no_patch, verbose, worker) -> None:
    """GRPO-train a LoRA adapter from RECIPE (a path or a shipped recipe name).

    A recipe with a vLLM server or several training GPUs starts those processes (docs/multi-gpu.md).
    Exit codes: 0 done (or, with --resume, already finished), 1 refused by a doctor check (see --force),
    the output folder in use by another run, a launched process failed, or manifest.json not written (the run
    itself is saved), 2 recipe or usage error (also an output folder that cannot be written, or a GRPO setting
    the backend would overwrite), 3 stopped by the stale-weight guard, 4 stopped by the learning-signal guard
    (guard: stop; steps in a row trained on nothing), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM, e.g.
    docker stop); all four save a checkpoint first and stop every launched process; otherwise the trainer's own
    exit code.
    """
    if target and not dry_run:
        raise OptionError("--target plans only (with --dry-run); training needs the GPU itself")
    # envkit.cli maps what it raises to one line and an exit code (envkit.errors), Ctrl-C to 130
    machines = (machine_rank, num_machines, main_process_ip)
    sys.exit(_train(recipe, dry_run, resume, force, max_steps, output, machines, worker, no_patch,
                    (target, target_count), verbose))


def _train(name, dry_run, resume, force, max_steps, output, machines=(None, None, None), worker=False, no_patch=(),
           target=(None, 1), verbose=False) -> int:
    from envkit.launch.tracking import tracker_facts
    from envkit.probe import collect
    from envkit.recipe.library import find_recipe
    from envkit.recipe.load import load_recipe
    from envkit.rules.packages import TRAIN_REQUIRED_PACKAGES
    from envkit.train.plan import LaunchOptions, PlanOptions, build_plan
    from envkit.train.readiness import model_problem

    recipe_path = find_recipe(name)
    recipe = load_recipe(recipe_path)
    facts = collect()
    if target[0]:
        from envkit.probe.target import with_target

        facts = with_target(facts, *target)
    launch_options = None
    trackers = tracker_facts(recipe.output.report_to, os.environ, facts.installed)  # each rank: they write in the run
    if not worker:  # a rank: the launcher that started it laid the run out (and checked the model)
        from envkit.launch.machine import probe_launch

        forward = (["--max-steps", str(max_steps)] if max_steps else []) + (["--resume"] if resume else []) + \
            (["--force"] if force else []) + (["--verbose"] if verbose else []) + \
            [a for p in no_patch for a in ("--no-patch", p)]
        launch_options = LaunchOptions(str(recipe_path), tuple(forward), probe_launch(recipe), dry_run)
    plan = build_plan(recipe, facts, PlanOptions(output, max_steps, *machines, tuple(no_patch), launch_options,
                                                 trackers))
    unavailable = None if worker else model_problem(plan.recipe, facts)  # asks the hub: not part of the plan
    if not worker or os.environ.get("RANK", "0") == "0":  # one rank speaks for all
        _say(plan, force, [unavailable] if dry_run and unavailable else [])
    if dry_run:
        click.echo(json.dumps(_dry_run(plan), indent=2))
        return FAILED if plan.blocking and not force else 0  # scripts can ask "would this run?"
    missing = [name for name in TRAIN_REQUIRED_PACKAGES if not facts.package(name)]
    if missing:  # EK300 warned above; training itself cannot start without them (--dry-run needs none)
        raise UsageError(f"needs {', '.join(missing)}: pip install 'envkit[train]', or use the envkit image")
    if plan.blocking and not force:
        return FAILED
    if unavailable:  # before anything loads: from_pretrained would retry the hub, then end in a traceback
        raise RecipeError(f"{plan.recipe.source}: {unavailable}")
    launch = plan.launch
    if launch is not None and launch.server and not plan.use_vllm:
        click.echo("envkit train: refused: vllm.mode: server needs vLLM generation, which is off here "
                   "(no GPU visible, or vllm not installed: envkit doctor says which)", err=True)
        return FAILED
    if launch is not None and not launch.in_process:
        from envkit.launch.procs import run_processes
        from envkit.train.rundir import check_writable

        check_writable(plan.output_dir)  # before the server and the ranks load anything (rank 0 then locks it)
        if launch.server and plan.recipe.model.name is None:  # model.build: the server loads what the ranks build
            from envkit.train.tiny import build_tiny

            build_tiny(seed=plan.recipe.seed)
        return run_processes(launch, watchdog=_watchdog(plan))
    from envkit.train.failures import explain, save_traceback
    from envkit.train.runner import train as run

    try:
        return run(plan, resume, verbose)
    except Exception as exc:  # a known GPU-side failure in one line; anything else as it is
        share = plan.grpo_config.get("vllm_gpu_memory_utilization", "the server's") if plan.use_vllm else None
        said = explain(exc, share, name)
        if said is None:
            raise
        click.echo(f"envkit train: {said} (traceback: {save_traceback(exc, 'envkit-train')})", err=True)
        return FAILED


def _watchdog(plan):
    """The launched run's watchdog (envkit.launch.watchdog), over the ranks this machine runs; None when off."""
    from envkit.launch.watchdog import Watchdog

    recipe = plan.recipe
    if not recipe.watchdog.enabled:
        return None
    per_machine = max(len(plan.launch.training_gpus), 1)
    first = recipe.distributed.machine_rank * per_machine
    return Watchdog(recipe.watchdog, range(first, first + per_machine), plan.output_dir / "watchdog-stacks.txt")


def _say(plan, force: bool, warnings: list[str]) -> None:
    """The plan's warnings, what the backend changes, and what refuses the run (or is ignored with --force)."""
    from envkit.train.effective import effective_lines

    for warning in list(plan.warnings) + warnings:
        click.echo(f"envkit train: warning: {printable(warning)}", err=True)
    for line in effective_lines(plan.grpo_effective):
        click.echo(f"envkit train: {line}", err=True)
    for finding in plan.blocking:
        verdict = "ignored (--force)" if force else "refused"
        click.echo(f"envkit train: {verdict}: {finding.id} {printable(finding.title)}"
                   + (f"\n    fix: {printable(finding.fix)}" if finding.fix else ""), err=True)


def _dry_run(plan) -> dict:
    """What --dry-run prints: the decisions, GRPOConfig's arguments, the backend's changes, the launch layout."""
    from envkit.train.config import unsloth_model_kwargs, unsloth_peft_kwargs

    recipe = plan.recipe
    shown = {"backend": recipe.backend, "use_vllm": plan.use_vllm, "vllm_off": plan.vllm_off, "sleep": plan.sleep,
             "gpu": plan.gpu, "env": dict(plan.env), "patches": list(plan.patches),
             "patches_off": list(plan.patches_off), "guard": recipe.guard}
    resolved = {"recipe": recipe.source, "plan": shown, "grpo_config": dict(plan.grpo_config),
                "effective_config": plan.grpo_effective, "launch": plan.launch.to_dict() if plan.launch else None}
    if recipe.backend == "unsloth":
        model = recipe.model.name or f"<model.build: {recipe.model.build}, built at start>"
        resolved["unsloth"] = {"from_pretrained": unsloth_model_kwargs(recipe, plan, model),
                               "get_peft_model": unsloth_peft_kwargs(recipe)}
    return resolved


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--samples", "samples", is_flag=False, flag_value="last", metavar="[STEP]",
              help="Print the sample completions of STEP (default: the last logged) from samples.jsonl: per prompt the "
              "answer and the best and worst completion side by side; nothing is redrawn.")
@click.option("--follow", is_flag=True, help="Redraw the table, run.png and report.html as metrics arrive, until "
              "the run ends (no envkit train holds the folder).")
def report(run_dir, samples, follow) -> None:
    """Redraw RUN_DIR/run.png and report.html (charts and samples, one file that opens offline) from its
    metrics.jsonl and print the steps as a table.

    Values that cannot be drawn (not numbers, NaN, ±inf) and lines without a step are left out, and counted
    in a warning.  Exit codes: 0 drawn, 1 run.png could not be written, 2 no readable metrics.jsonl (or no
    samples of that step).
    """
    from envkit.runs.plot import MetricsError

    path = Path(run_dir)
    if samples is not None:
        _print_samples(path, samples)
        return
    if importlib.util.find_spec("matplotlib") is None:  # run.png; --samples reads samples.jsonl alone
        raise UsageError("needs matplotlib to draw run.png: pip install 'envkit[train]' (--samples works without)")
    if follow:
        from envkit.train.live import follow as follow_run

        try:
            shown = follow_run(path, lambda: _draw_report(path) if (path / "metrics.jsonl").exists() else None,
                               echo=echo)
        except KeyboardInterrupt:
            return  # the run goes on; only the view stops
        if not shown:
            raise MetricsError(f"no envkit train is running in {path}, and {path / 'metrics.jsonl'} is not there")
        return
    if not (path / "metrics.jsonl").exists():
        raise MetricsError(f"{path / 'metrics.jsonl'} not found")
    echo(_draw_report(path))


def _draw_report(path: Path) -> str:
    """Draw run.png and report.html; the summary line and the table (warnings go to stderr)."""
    from envkit.runs.html_report import write_report
    from envkit.runs.plot import Skipped, metric_rows, plot_run
    from envkit.runs.summary import metrics_table, steps_line
    from envkit.train.guard import KNOWN_CAUSES, GuardLimits, check_rows
    from envkit.train.learning import check_signal_rows, run_masking

    skipped, limits = Skipped(), GuardLimits.shipped()
    rows = metric_rows(path / "metrics.jsonl", skipped)  # read once: the picture, the summary, the guard
    picture = plot_run(path, limits, skipped, rows)  # run.png not written: OwnFileError, exit 1
    said = steps_line(rows)
    page = write_report(path, rows, said, limits.metric)
    # the folder's name and the reward names in metrics.jsonl are anyone's: printed, never obeyed
    text = f"{picture} and {page.name}: {said}" + (f"\n{metrics_table(rows)}" if rows else "")
    if str(skipped):
        echo(f"envkit report: warning: left out of the picture: {skipped}", err=True)
    verdict = check_rows(rows)
    if verdict:
        echo(f"envkit report: WARNING: stale weights: {verdict.message()}; {KNOWN_CAUSES}", err=True)
    signal = check_signal_rows(rows, run_masking(path / "manifest.json"))
    if signal:
        echo(f"envkit report: WARNING: {signal.label}: {signal.message()}; {signal.hint}", err=True)
    return text


def _print_samples(path: Path, step: str) -> None:
    """`envkit report RUN --samples [STEP]`; a step that is not a number, or has no samples: OptionError (exit 2)."""
    from envkit.runs.samples import SAMPLES, pick_step, read_samples, render_step

    if step != "last" and not step.isdigit():
        raise OptionError(f"--samples {step}: a step number, or nothing for the last logged step")
    rows = read_samples(path)
    row = pick_step(rows, None if step == "last" else int(step))
    if row is None:
        logged = ", ".join(str(r["step"]) for r in rows[-20:]) or "none (output.samples_every)"
        which = "logged" if step == "last" else f"of step {step}"
        raise OptionError(f"--samples: no samples {which} in {path / SAMPLES}; logged steps: {logged}")
    echo(render_step(row, shutil.get_terminal_size((100, 24)).columns))


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("prompts", nargs=-1, required=True, metavar="PROMPT...")
@click.option("-n", "--num-samples", default=1, show_default=True, type=click.IntRange(1, generate_limits.MAX_SAMPLES),
              help="Completions per prompt.")
@click.option("--max-new-tokens", type=click.IntRange(1, generate_limits.MAX_NEW_TOKENS),
              help="Default: the run's grpo.max_completion_length.")
@click.option("--temperature", type=click.FloatRange(0), help="Default: the run's; 0 is greedy.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), help="Default: the run's.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--merged", is_flag=True, help="Sample from RUN_DIR/merged (output.merge: true) instead of base + adapter.")
@click.option("--engine", type=click.Choice(["auto", "vllm", "transformers"]), default="auto", show_default=True,
              help="auto: vLLM (the adapter as a LoRA request) with vllm installed and a GPU, else transformers + peft.")
@click.option("--trust-remote-code", is_flag=True, help="Run the Python code the model folder ships (its config's "
              "auto_map): only for a run you trust; never taken from the run's manifest.json.")
@click.option("--json", "as_json", is_flag=True, help="Print [{prompt, completions}] as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Show the libraries' own output too: loading bars, deprecation "
              "warnings.")
def generate(run_dir, prompts, num_samples, max_new_tokens, temperature, top_p, seed, merged, engine, trust_remote_code,
             as_json, verbose) -> None:
    """Sample from a trained run: RUN_DIR's adapter on its base model (or merged/), prompted as in training.

    RUN_DIR is an `envkit train` output folder, or an adapter folder (a checkpoint-N).  The chat template and
    system prompt the run trained with, and its temperature, top_p and completion length, come from its
    manifest.json.  Exit codes: 0 done, 2 nothing to sample from (no adapter/, no merged/) or a bad option.
    """
    from envkit.runs.generate import EngineFailed, GenerateError, check_sampling, find_trained, pick_engine, sample

    missing = [name for name in ("torch", "transformers", "peft") if importlib.util.find_spec(name) is None]
    if missing:
        raise GenerateError(f"needs {', '.join(missing)}: pip install 'envkit[train]'")
    trained = find_trained(Path(run_dir), merged, trust_remote_code)
    given = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
    sampling = {**trained.sampling, **{k: v for k, v in given.items() if v is not None}}
    check_sampling(sampling, Path(run_dir))
    if sampling["temperature"] == 0 and num_samples > 1:
        raise GenerateError("-n above 1 needs sampling: --temperature 0 (greedy) gives one completion")
    chosen = pick_engine(engine)
    if not verbose:
        from envkit.train.progress import quiet_libraries

        quiet_libraries()
    echo(f"envkit generate: {trained.adapter or trained.model}"
         + (f" on {trained.model}" if trained.adapter else "") + f" with {chosen}", err=True)
    try:
        completions = sample(trained, list(prompts), num_samples, sampling, seed, chosen)
    except EngineFailed as exc:  # a known GPU-side failure in one line (envkit.train.failures); any other as it is
        from envkit.train.failures import explain, save_traceback

        failure = explain(exc.__cause__, "vLLM's default", "")
        if failure is None:
            raise exc.__cause__ from None  # the engine's own exception and traceback
        raise GenerateError(f"{failure.title}; --engine transformers samples without vLLM "
                            f"(traceback: {save_traceback(exc.__cause__, 'envkit-generate')})") from None
    if as_json:
        click.echo(json.dumps([{"prompt": p, "completions": c} for p, c in zip(prompts, completions)], indent=2))
        return
    for i, (prompt, texts) in enumerate(zip(prompts, completions)):
        for j, text in enumerate(texts):
            if len(prompts) > 1 or len(texts) > 1:
                click.echo(f"--- prompt {i + 1}" + (f", sample {j + 1}" if len(texts) > 1 else "") + " ---")
            echo(text)  # a model's text may hold terminal escapes; its newlines stay
