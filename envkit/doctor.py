"""`envkit doctor`: probe (or replay) facts, run the rules, report."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass

import click

from envkit.doctor_output import exit_code, repair_indexes, repair_requirements, to_json
from envkit.doctor_output.text import markdown_table, render
from envkit.errors import OptionError
from envkit.facts import Facts
from envkit.rules import REGISTRY, Rule, find_rule, run_rules
from envkit.rules.base import SECTIONS


@dataclass(frozen=True)
class Options:
    as_json: bool = False
    facts_file: str | None = None
    dump_facts: str | None = None
    target: str | None = None
    target_count: int = 1
    no_gpu: bool = False
    explain: str | None = None
    show_fix: bool = False
    yes: bool = False
    strict: bool = False
    verbose: bool = False
    sections: tuple[str, ...] = ()


def all_rules() -> dict[str, Rule]:
    """Every check envkit has: the doctor's, and the ones `envkit train` runs against a recipe (documented here
    too).  Imported on demand: the recipe and launch checks pull in the recipe schema, which a doctor run that
    explains nothing does not need (issue #16: the doctor's start-up)."""
    from envkit.launch.checks import LAUNCH_REGISTRY
    from envkit.rules.run import RUN_REGISTRY

    return dict(sorted({**REGISTRY, **RUN_REGISTRY, **LAUNCH_REGISTRY}.items()))


def explain(key: str) -> int:
    """A check's documentation, or a patch's (envkit train's TRL patches share the ID space: EKP001)."""
    from envkit.train.patches import all_patches, find_patch

    rules = all_rules()
    found = find_rule(key, rules)
    patch = find_patch(key) if found is None else None
    if found is None and patch is None:
        known = ", ".join(f"{r.id} {r.name}" for r in rules.values())
        patches = ", ".join(f"{p.id} {p.name}" for p in all_patches())
        raise OptionError(f"no check or patch {key!r}. Known checks: {known}. Patches: {patches}")
    click.echo(patch.doc() if patch else f"{found.id} {found.name} ({found.section})\n\n{found.doc}")
    return 0


def gather(options: Options) -> Facts:
    """Facts from a file or this machine, with the target GPU applied; raises FactsError/UnknownGpu."""
    if options.facts_file:
        facts = Facts.load(options.facts_file)
    else:
        from envkit.probe import collect

        facts = collect(gpus=not options.no_gpu)
    if options.target:
        from envkit.probe.target import with_target

        facts = with_target(facts, options.target, options.target_count)
    return facts


def run_doctor(options: Options) -> int:
    if options.explain:
        return explain(options.explain)
    if options.yes and not options.show_fix:
        raise OptionError("--yes only goes with --fix")
    if options.yes and options.facts_file:  # pip would install another machine's list here
        raise OptionError("--fix --yes repairs this machine from its own facts, not from --facts FILE: "
                          "drop --yes to print that machine's command, or drop --facts")
    facts = gather(options)  # FactsError, UnknownGpu: exit 2 (envkit.cli)
    if options.dump_facts:
        from envkit.files import write_atomic  # shutil and tempfile: not on a plain run's start-up

        write_atomic(options.dump_facts, facts.to_json())  # OutputError: the --dump-facts path as given, exit 2
    findings = [f for f in run_rules(facts) if not options.sections or f.section in options.sections]
    if options.show_fix:
        return _repair(findings, options.yes)
    if options.as_json:
        click.echo(json.dumps(to_json(findings, facts, options.strict), indent=2))
    else:
        click.echo(render(findings, facts, options.verbose))
    return exit_code(findings, options.strict)


def _repair(findings, run: bool) -> int:
    requirements = repair_requirements(findings)
    if not requirements:
        click.echo("nothing to repair: no package finding has a pip fix")
        return 0
    command = [sys.executable, "-m", "pip", "install", *repair_indexes(requirements), *requirements]
    click.echo(shlex.join(command))
    if not run:
        return 0
    return subprocess.run(command, check=False).returncode


def refuses(rule: Rule) -> str:
    """Which `envkit train` runs the rule's failure refuses, from its metadata (Rule.blocks)."""
    if rule.run_relevance == "planned":
        return "none: the run acts on it (a setting, or a refusal of its own)"
    runs = "every run" if rule.run_relevance == "any" else "GPU runs"
    return " ".join([runs] + (["generating with vLLM"] if rule.needs_vllm else [])
                    + ([f"on backend {' or '.join(rule.backends)}"] if rule.backends else []))


def checks_markdown() -> str:
    """docs/doctor.md's check tables, generated from the registries (tests/test_cli.py keeps the page in step)."""
    def table(rules) -> str:
        return markdown_table(["ID", "name", "section", "checks", "refuses `envkit train`"],
                              [[r.id, r.name, SECTIONS[r.section], r.summary, refuses(r)] for r in rules])

    rules = all_rules()
    doctor = [r for r in rules.values() if r.id in REGISTRY]
    train = [r for r in rules.values() if r.id not in REGISTRY]
    return (table(doctor) + "\nChecked by `envkit train` against the recipe and its layout (`envkit doctor --explain` "
            "documents them too):\n\n" + table(train))


if __name__ == "__main__":  # python -m envkit.doctor > tables: docs/doctor.md's Checks section
    print(checks_markdown(), end="")
