"""`envkit train` and `envkit report`.  Only click at import time (the doctor's start-up stays fast)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

USAGE, REFUSED = 2, 1


@click.command()
@click.argument("recipe")
@click.option("--dry-run", is_flag=True, help="Print the plan and the GRPOConfig arguments; import no torch/trl.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint-N in the output folder.")
@click.option("--force", is_flag=True, help="Train even when a doctor check relevant to the run fails.")
@click.option("--max-steps", type=click.IntRange(1), help="Override grpo.max_steps.")
@click.option("--output", type=click.Path(file_okay=False), help="Override output.dir.")
def train(recipe, dry_run, resume, force, max_steps, output) -> None:
    """GRPO-train a LoRA adapter from RECIPE (a path or a shipped recipe name).

    Exit codes: 0 done, 1 refused by a doctor check (see --force), 2 recipe or usage error, 130 interrupted.
    """
    from envkit.recipe.load import RecipeError

    try:
        sys.exit(_train(recipe, dry_run, resume, force, max_steps, output))
    except RecipeError as exc:
        click.echo(f"envkit train: {exc}", err=True)
        sys.exit(USAGE)


def _train(name, dry_run, resume, force, max_steps, output) -> int:
    import json

    from envkit.probe import collect
    from envkit.recipe.library import find_recipe
    from envkit.recipe.load import load_recipe
    from envkit.rules import run_rules
    from envkit.train.config import grpo_kwargs
    from envkit.train.preflight import plan_run

    recipe = load_recipe(find_recipe(name))
    if max_steps:
        recipe.grpo.max_steps = max_steps
    output_dir = Path(output or recipe.output.dir or Path("runs") / Path(recipe.source).stem)
    facts = collect()
    plan = plan_run(recipe, facts, run_rules(facts))
    for warning in plan.warnings:
        click.echo(f"envkit train: warning: {warning}", err=True)
    for finding in plan.blocking:
        click.echo(f"envkit train: {'ignored (--force)' if force else 'refused'}: {finding.id} {finding.title}"
                   + (f"\n    fix: {finding.fix}" if finding.fix else ""), err=True)
    kwargs = grpo_kwargs(recipe, plan, str(output_dir))
    if dry_run:
        click.echo(json.dumps({"recipe": recipe.source, "plan": {"use_vllm": plan.use_vllm, "sleep": plan.sleep, "gpu": plan.gpu,
                                                                 "env": plan.env}, "grpo_config": kwargs}, indent=2))
        return 0
    if plan.blocking and not force:
        return REFUSED
    from envkit.train.runner import train as run

    return run(recipe, plan, output_dir, resume)


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def report(run_dir) -> None:
    """Redraw RUN_DIR/run.png from its metrics.jsonl and print the last step."""
    from envkit.train.plot import plot_run, read_metrics

    path = Path(run_dir)
    if not (path / "metrics.jsonl").exists():
        click.echo(f"envkit report: {path / 'metrics.jsonl'} not found", err=True)
        sys.exit(USAGE)
    rows = read_metrics(path)
    click.echo(f"{plot_run(path)}: {len(rows)} steps" + (f", last {rows[-1]}" if rows else ""))
