"""The human report: sections, one marker per check, a fix line per problem, a closing count."""

from __future__ import annotations

import sys
from dataclasses import replace

import click

from envkit.facts import Facts
from envkit.report import summarize
from envkit.rules.base import SECTIONS, Finding, Severity

MARKS = {Severity.OK: ("✓", "green"), Severity.WARN: ("!", "yellow"), Severity.FAIL: ("✗", "red"),
         Severity.SKIP: ("-", None)}
ASCII = {"✓": "+", "✗": "x"}
# What steers a terminal rather than shows: C0 and C1 controls (ESC sequences, \r, BEL, newlines), DEL, and the
# Unicode line separators and bidirectional overrides that break or reorder a line.
STEERING = [*range(0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F),
            *range(0x2066, 0x206A)]
ESCAPED = {c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in STEERING}


def printable(text: str) -> str:
    """``text`` with every character that could steer a terminal written as its escape (ESC as \\x1b).

    Findings and the header carry strings from the probe or a replayed facts file (a GPU name, the OS, a
    version, a package name); left raw, one can clear the screen, set the window title or forge a "✓"
    line.  Everything envkit prints for people passes here once, before it is styled; --json needs
    nothing (JSON escapes control characters)."""
    return text.translate(ESCAPED)


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
