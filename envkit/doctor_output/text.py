"""The doctor's human output: sections, one marker per check, a fix line per problem, a closing count."""

from __future__ import annotations

import sys
from dataclasses import replace

import click

from envkit.facts import Facts
from envkit.doctor_output import summarize
from envkit.rules.base import SECTIONS, Finding, Severity
from envkit.terminal import printable

MARKS = {Severity.OK: ("✓", "green"), Severity.WARN: ("!", "yellow"), Severity.FAIL: ("✗", "red"),
         Severity.SKIP: ("-", None)}
ASCII = {"✓": "+", "✗": "x"}


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table: the generated sections of docs/doctor.md (checks) and docs/training.md (patches) are
    written by this one function."""
    lines = [header, ["---"] * len(header), *rows]
    return "".join("| " + " | ".join(cells) + " |\n" for cells in lines)


def _mark(severity: Severity) -> str:
    symbol, colour = MARKS[severity]
    encoding = (getattr(sys.stdout, "encoding", None) or "ascii").lower()
    if "utf" not in encoding:
        symbol = ASCII.get(symbol, symbol)
    return click.style(symbol, fg=colour, bold=True) if colour else symbol


def render(findings: list[Finding], facts: Facts, verbose: bool = False) -> str:
    findings = [replace(f, title=printable(f.title), evidence=printable(f.evidence), fix=printable(f.fix))
                for f in findings]
    lines = [_header(facts), ""]
    for section, title in SECTIONS.items():
        shown = [f for f in findings if f.section == section and (verbose or f.severity is not Severity.SKIP)]
        if not shown:
            continue
        lines.append(click.style(title, bold=True))
        for finding in shown:
            lines.append(f"  {_mark(finding.severity)} {finding.title}  {click.style(finding.id, dim=True)}")
            if finding.evidence and (verbose or finding.severity in (Severity.WARN, Severity.FAIL)):
                lines.append(f"      {click.style(finding.evidence, dim=True)}")
            if finding.fix and finding.severity in (Severity.WARN, Severity.FAIL):
                lines.append(f"      fix: {finding.fix}")
        lines.append("")
    summary = summarize(findings)
    colour = "red" if summary.failed else "yellow" if summary.warned else "green"
    lines.append(click.style(summary.line(), fg=colour, bold=True))
    if not verbose and summary.skipped:
        lines.append(click.style(f"{summary.skipped} not applicable here (-v lists them); "
                                 "envkit doctor --explain ID tells more", dim=True))
    return "\n".join(lines)


def _header(facts: Facts) -> str:
    host = facts.host
    where = f"envkit doctor — {host.os} {host.arch}, Python {host.python}"
    if facts.target:
        where += f", target {facts.target} (GPU from the catalog, packages from this machine)"
    if host.container:
        where += f", in {host.container}"
    return click.style(printable(where), bold=True)
