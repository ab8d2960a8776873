"""What envkit prints for people: text from users, folders, files or the network is shown, never obeyed.

A run folder's name, a reward's name in metrics.jsonl, a recipe, a model's completion or a package index's
METADATA may hold ESC sequences (clear the screen, set the window title, forge a "✓" line), other C0 and C1
controls, or bidirectional overrides (U+202E) that reorder what follows.  ``echo`` prints such text with
each of these written as its escape, line breaks kept; ``printable`` does it to one line.
"""

from __future__ import annotations

import click

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


def echo(text: object = "", err: bool = False, nl: bool = True) -> None:
    """``click.echo`` of text that may come from anyone: every line printable, the line breaks kept."""
    click.echo("\n".join(printable(line) for line in str(text).split("\n")), err=err, nl=nl)
