"""Run a recipe: TRL's GRPOTrainer with a PEFT LoRA adapter.  torch/trl are imported in here only."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import click

from envkit.errors import OptionError, OutputFolderError
from envkit.exitcodes import INTERRUPTED, TERMINATED
from envkit.files import JSON_BYTES, fresh_dir, read_regular, replace_dir, write_owned
from envkit.recipe.schema import Recipe
from envkit.terminal import echo
from envkit.train.checkpoints import Checkpoint, last_checkpoint
from envkit.train.config import split_supported
from envkit.train.effective import keep_after, trained_value
from envkit.train.guard import GuardLimits, StaleWeightGuard, guard_lines, guard_record
from envkit.train.plan import Plan
from envkit.train.rewards import resolve_reward
from envkit.train.rundir import LOCK, MARKER, RunLock, check_writable

# The packages whose installed versions a run's manifest.json records.
MANIFEST_PACKAGES = ("envkit", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "vllm", "bitsandbytes")


def train(plan: Plan, resume: bool, verbose: bool = False) -> int:
    """Train the plan's recipe into its output_dir; the exit code.  ``verbose``: the libraries' bars, warnings and TRL's
    per-step dicts as they print them (else one envkit line per step: envkit.train.progress).

    The main rank (RANK 0, or no RANK: one process) first makes sure the folder can be written (exit 2 if
    not) and locks it against a second run (envkit.train.rundir; exit 1 while another run holds it).

    Resume semantics (``--resume``; docs/training.md, Resuming), with N the step of the newest complete checkpoint
    (envkit.train.checkpoints: a torn one is skipped with a warning) and M the max_steps asked for (the
    recipe's, or --max-steps; an epoch-based recipe: the checkpoint's):

    - N < M: training continues from checkpoint-N to M: a run that was stopped, or, past a finished run,
      an extension.  adapter/ and merged/ are replaced only when it completes.  HF's Trainer takes
      max_steps from the arguments on resume, not from the checkpoint: the learning-rate schedule is the
      one for M, from step N on (ScheduleOnResume).
    - N >= M and manifest.json says completed at step N: the run is finished; nothing is done (exit 0).
    - N == M otherwise (stopped at the last step, killed while writing adapter/ or merged/): nothing is
      left to train; adapter/ and merged/ are written from checkpoint-N.  The Trainer is not started: asked
      to resume at max_steps, it trains one more step.
    - N > M otherwise (an extension cut short): refused (exit 2), naming the --max-steps that ends or
      continues it.
    """
    recipe, output_dir = plan.recipe, plan.output_dir
    os.environ.update(plan.env)  # before anything imports triton (or unsloth)
    main = os.environ.get("RANK", "0") == "0"  # under accelerate launch one rank writes the run's files
    lock = None
    if main:
        check_writable(output_dir)  # before transformers and torch load (the heartbeat imports them)
        lock = RunLock(output_dir)
        if lock.warning:
            echo(f"envkit train: warning: {lock.warning}", err=True)
    try:
        from envkit.train import heartbeat

        beat = heartbeat.start()  # under envkit's launcher: its watchdog times this rank from here on
        return _train(recipe, plan, output_dir, resume, main, verbose, beat)
    finally:
        if lock:
            lock.release()


def _train(recipe: Recipe, plan: Plan, output_dir: Path, resume: bool, main: bool, verbose: bool, beat=None) -> int:
    if main and not resume and any(p.name not in (LOCK, MARKER) for p in output_dir.iterdir()):
        raise OutputFolderError(f"{output_dir} is not empty: pass --resume to continue the run in it, "
                                "or --output another folder")
    # what it says names the output folder and its checkpoints: anyone's names, printed never obeyed
    say = (lambda text: echo(f"envkit train: {text}", err=True)) if main else (lambda text: None)
    checkpoint = last_checkpoint(output_dir, warn=lambda text: say(f"warning: {text}")) if resume else None
    if resume and checkpoint is None:
        say(f"no complete checkpoint in {output_dir}; starting from scratch")
    todo = _left_to_do(recipe, output_dir, checkpoint)
    if todo == "nothing":
        say(f"{output_dir} is finished (step {checkpoint.step}, manifest.json completed): nothing to do; "
            f"--resume --max-steps N, N > {checkpoint.step}, extends it")
        return 0
    if todo == "train" and checkpoint is not None:
        say(f"resuming from {checkpoint.path.name} to max_steps {recipe.grpo.max_steps or checkpoint.max_steps}")
    if todo == "finish":
        say(f"{checkpoint.path.name} is at max_steps: nothing left to train; writing adapter/"
            f"{' and merged/' if recipe.output.merge else ''} from it")
    started, wall = datetime.now(timezone.utc), time.perf_counter()
    if todo == "train":
        from envkit.runs.summary import generation_line

        say(f"{Path(recipe.source).name} on {plan.gpu} ({plan.dtype}), generation: "
            f"{generation_line(plan.vllm_off, recipe.vllm.mode, plan.sleep)}")

    from envkit.train.models import (
        import_unsloth,
        load_model,
        load_tokenizer,
        merge_adapter,
        model_source,
        name_base_in_card,
    )
    from envkit.train.progress import StepLines, quiet_libraries, quiet_trainer

    if recipe.backend == "unsloth":
        import_unsloth()  # before trl: importing unsloth patches it
    from trl import GRPOConfig, GRPOTrainer

    if not verbose:
        quiet_libraries()  # it imports transformers and datasets: after unsloth, which must come first

    from envkit.train.callbacks import (
        AdapterMotion,
        GuardCallback,
        MetricsCallback,
        ScheduleOnResume,
        StopOnSignal,
        trim_metrics,
    )
    from envkit.train.data import prepare_dataset
    from envkit.train.samples_log import samples_callback, trim_samples
    from envkit.train.learning import LearningSignalGuard

    if todo == "train":
        _apply(plan, main)
        # user code runs from here on, before the slow loads
        rewards = [resolve_reward(r.name, Path(recipe.source).parent) for r in recipe.rewards]

    kwargs, dropped = split_supported(plan.grpo_config, {f.name for f in dataclasses.fields(GRPOConfig)})
    for name in dropped if main else ():
        click.echo(f"envkit train: warning: the installed trl's GRPOConfig has no {name}; not applied", err=True)
    metrics = output_dir / "metrics.jsonl"
    if main and checkpoint is not None:
        trim_metrics(metrics, checkpoint.step)
        trim_samples(output_dir, checkpoint.step)
    elif main and metrics.exists():
        metrics.unlink()
    source = model_source(recipe)
    adapter, partial = output_dir / "adapter", output_dir / "adapter.partial"
    if todo == "finish":
        tokenizer = load_tokenizer(recipe, str(checkpoint.path))
        steps, code, guards = checkpoint.step, 0, None
        chat = recipe.dataset.use_chat_template
        if main:
            _copy_adapter(checkpoint.path, partial)
    else:
        train_rows, eval_rows = prepare_dataset(recipe, load_tokenizer(recipe, source))  # the prompts, then weights
        model, tokenizer, peft_config = load_model(recipe, plan, source)
        chat = isinstance(train_rows[0]["prompt"], list)  # messages: conversational, or use_chat_template
        args = GRPOConfig(**kwargs)
        restored = keep_after(args, kwargs, recipe.backend)
        for r in restored:
            say(f"backend {recipe.backend} set {r['field']} {r['backend_set']!r} over the recipe's {r['value']!r}: "
                "set back on its config")
        stop = StopOnSignal()
        lines = None if verbose else StepLines()
        callbacks = [AdapterMotion()] + ([MetricsCallback(metrics, wall, lines)] if main else [])
        masking = trained_value(plan.grpo_config, plan.grpo_effective, "mask_truncated_completions")
        watching = [StaleWeightGuard(), LearningSignalGuard(bool(masking))]
        guards = GuardCallback(recipe.guard == "stop", main, watching) if recipe.guard != "off" else None
        trainer = GRPOTrainer(
            model=model,
            processing_class=tokenizer,
            reward_funcs=rewards,
            args=args,
            train_dataset=train_rows,
            eval_dataset=eval_rows,
            peft_config=peft_config,
            callbacks=callbacks + [c for c in (guards, stop, checkpoint and ScheduleOnResume(), beat) if c],
        )
        name_base_in_card(trainer, recipe)
        if main and recipe.output.samples_every:
            trainer.add_callback(samples_callback(recipe, output_dir, train_rows, trainer))
        if not verbose:
            quiet_trainer(trainer)
        trainer.train(resume_from_checkpoint=str(checkpoint.path) if checkpoint else None)
        steps = trainer.state.global_step
        fired = next((g.verdict for g in guards.guards if g.verdict), None) if guards else None
        code = _outcome(steps, stop, fired if recipe.guard == "stop" else None)
        if code == 0:
            if main:
                fresh_dir(partial)  # a killed run's leftover, or a link planted there: never written through
            trainer.save_model(str(partial))  # every rank: a sharded model is gathered for the save
    if main and code == 0:
        replace_dir(partial, adapter)
        if recipe.output.merge:
            merge_adapter(recipe, plan, source, adapter, output_dir / "merged", tokenizer)
    wall_s = time.perf_counter() - wall
    manifest = _manifest(recipe, plan, kwargs, dropped, steps, started, wall_s, checkpoint.path if checkpoint else None,
                         completed=code == 0, chat=chat)
    if todo == "train" and restored:
        manifest["effective_config"] = {**manifest["effective_config"], "restored": restored}
    stale, signal = guards.guards if guards else (None, None)
    manifest["guard"] = guard_record(recipe.guard, stale, signal, plan.vllm_off, recipe.backend)
    if main:
        write_owned(output_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    if main and metrics.exists():
        from envkit.runs.html_report import write_report
        from envkit.runs.plot import metric_rows, plot_run
        from envkit.runs.summary import generation_line, run_summary, steps_line

        rows = metric_rows(metrics)
        limits = GuardLimits.shipped()
        plot_run(output_dir, limits, rows=rows)
        write_report(output_dir, rows, steps_line(rows), limits.metric)
        if code == 0:
            generation = generation_line(plan.vllm_off, recipe.vllm.mode, plan.sleep)
            echo(run_summary(output_dir, rows, steps, wall_s, generation, recipe.output.merge,
                             guard_lines(manifest["guard"])))
    return code


def _outcome(steps: int, stop, stopped_by) -> int:
    """The exit code of a training that ended, said in one line when it did not complete."""
    if stopped_by is not None:
        click.echo(f"envkit train: stopped at step {steps} by the {stopped_by.guard}: {stopped_by.message()}; "
                   f"checkpoint saved; {stopped_by.hint}", err=True)
        return stopped_by.exit_code
    if not stop.requested:
        return 0
    how = "terminated (SIGTERM)" if stop.received is signal.SIGTERM else "interrupted"
    click.echo(f"envkit train: {how} at step {steps}; checkpoint saved, --resume continues", err=True)
    return TERMINATED if stop.received is signal.SIGTERM else INTERRUPTED


def _left_to_do(recipe: Recipe, output_dir: Path, checkpoint: Checkpoint | None) -> str:
    """"train", "finish" (adapter/ and merged/ from the checkpoint, no step left) or "nothing": train's docstring."""
    if checkpoint is None:
        return "train"
    target = recipe.grpo.max_steps or checkpoint.max_steps
    if checkpoint.step < target:
        return "train"
    try:
        manifest = json.loads(read_regular(output_dir / "manifest.json", JSON_BYTES))
    except (OSError, ValueError, RecursionError):
        manifest = None
    if isinstance(manifest, dict) and manifest.get("completed") is True and manifest.get("steps") == checkpoint.step:
        return "nothing"
    if checkpoint.step > target:
        started = (f", --max-steps {checkpoint.max_steps} continues it as it was started"
                   if checkpoint.max_steps > checkpoint.step else "")
        raise OptionError(f"{checkpoint.path} is past max_steps {target} and its run did not complete: "
                          f"--max-steps {checkpoint.step} ends it at that step{started}")
    return "finish"


def _copy_adapter(checkpoint: Path, target: Path) -> None:
    """What trainer.save_model writes (adapter, its config, the tokenizer) from a checkpoint: its files
    less the Trainer's resume state (trainer_state.json and the torch.save'd *.pt / *.pth)."""
    fresh_dir(target)
    for path in checkpoint.iterdir():
        if path.is_file() and path.name != "trainer_state.json" and path.suffix not in (".pt", ".pth"):
            shutil.copy2(path, target / path.name)


def _apply(plan: Plan, main: bool) -> None:
    """The plan's TRL patches, said in the log; one that cannot be applied stops the run (it exists because
    the run would silently train wrong without it)."""
    from envkit.train.patches import PATCHES
    from envkit.train.trl_patches import PatchUnavailable, apply_patches

    failed = dict(apply_patches(plan.patches))
    for patch_id in plan.patches + plan.patches_off:
        patch = PATCHES[patch_id]
        if main and patch_id in failed:
            click.echo(f"envkit train: patch {patch_id} could not be applied ({failed[patch_id]})", err=True)
        elif main:
            state = "off (--no-patch)" if patch_id in plan.patches_off else "applied"
            click.echo(f"envkit train: patch {patch_id} {patch.name} {state}: {patch.title}", err=True)
    if failed:
        raise PatchUnavailable(f"patch {', '.join(failed)} could not be applied to the installed trl, and the run "
                               f"needs it; --no-patch {' --no-patch '.join(failed)} runs without "
                               f"(envkit doctor --explain {next(iter(failed))})")


def _manifest(recipe, plan, kwargs, dropped, steps, started, wall_s, resumed_from, completed, chat) -> dict:
    """What ran, on what: versions, recipe hash, GPU, time, the plan.  Of the environment only the variables
    envkit itself sets (plan.env: VLLM_LORA_DISABLE_PDL, the Unsloth standby, CUDA_VISIBLE_DEVICES), never a secret."""
    versions = {}
    for name in MANIFEST_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "schema": "envkit.run/1",
        "recipe": recipe.source,
        "recipe_sha256": recipe.sha256,
        "started_at": started.isoformat(timespec="seconds"),
        "wall_s": round(wall_s, 2),
        "steps": steps,
        "completed": completed,
        "resumed_from": resumed_from.name if resumed_from else None,
        "gpu": plan.gpu,
        "python": sys.version.split()[0],
        "packages": versions,
        "plan": plan.to_dict(),
        "grpo_config": kwargs,
        "effective_config": plan.grpo_effective,  # what the backend changed in it (envkit.train.effective)
        "not_applied": dropped,
        # how prompts reached the model in training, for envkit generate (envkit.runs.generate)
        "generate": {"chat_template": chat, "system_prompt": recipe.dataset.system_prompt,
                     "trust_remote_code": recipe.model.trust_remote_code},
    }
