"""The run's picture: reward per function, completion length, KL and the sampler's gap to the trainer
(the stale-weight guard's metric, with its threshold) per step, from metrics.jsonl.

metrics.jsonl is read as found: a torn last line, a hand-edited value, a diverged run's NaN or 1e308.
What cannot be drawn is left out and counted (``Skipped``), never a traceback; only a metrics.jsonl that is
not a readable regular file is an error (``MetricsError``: one line, exit 2).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

# Values beyond are left out: matplotlib's axis arithmetic overflows well before float's end (a panel holding
# 1e308 and -1e308 raises; the symlog panel warns from 1e300), and no metric of a sane step comes near.
LARGEST = 1e100


class MetricsError(ValueError):
    """metrics.jsonl is not a readable regular file."""


@dataclass
class Skipped:
    lines: int = 0  # not a JSON object with an integer step (a torn line, a stray text)
    values: dict[str, int] = field(default_factory=dict)  # per plotted key: not a number, NaN, ±inf, beyond ±LARGEST

    def __str__(self) -> str:
        parts = [f"{self.lines} line{'s' * (self.lines != 1)} without a step"] if self.lines else []
        if self.values:
            count = sum(self.values.values())
            parts.append(f"{count} value{'s' * (count != 1)} not a number, NaN, ±inf or beyond ±{LARGEST:g} ("
                         + ", ".join(f"{key} {n}" for key, n in sorted(self.values.items())) + ")")
        return " and ".join(parts)


def metric_rows(path: Path, skipped: Skipped | None = None) -> list[dict]:
    """The step rows of a metrics.jsonl; lines that are not a JSON object with an integer step are skipped
    (the last line of a killed run may be torn), and counted in ``skipped``."""
    if not path.is_file():  # a folder, a FIFO (reading one would wait forever), a dangling link
        raise MetricsError(f"{path} is not a regular file")
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise MetricsError(f"cannot read {path}: {exc.strerror or exc}") from None
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: arrays or objects nested past the interpreter's limit
            row = None
        if isinstance(row, dict) and type(row.get("step")) is int and 0 <= row["step"] <= 2**53:
            rows.append(row)
        elif skipped is not None and line.strip():
            skipped.lines += 1
    return rows


def points(rows: list[dict], key: str, skipped: Skipped | None = None) -> list[tuple[int, float]]:
    """(step, value) for the rows with ``key``; a value that is not a finite number below LARGEST (a string,
    a bool, null, NaN, ±inf, ±1e308) is left out and counted in ``skipped``."""
    drawn = []
    for row in rows:
        if key not in row:
            continue
        value = row[key]
        if type(value) in (int, float) and math.isfinite(value) and abs(value) <= LARGEST:
            drawn.append((row["step"], float(value)))
        elif skipped is not None:
            skipped.values[key] = skipped.values.get(key, 0) + 1
    return drawn


def plot_run(run_dir: Path, skipped: Skipped | None = None, rows: list[dict] | None = None) -> Path:
    """Draw run_dir/run.png (written whole: a temporary file renamed) from ``rows`` (default: read from its
    metrics.jsonl); what was left out goes to ``skipped``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from envkit.train.guard import GuardLimits

    rows = metric_rows(run_dir / "metrics.jsonl", skipped) if rows is None else rows
    limits = GuardLimits.shipped()
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    panels = [
        ("reward", sorted({k for r in rows for k in r if k.startswith("rewards/")} | {"reward"})),
        ("completion length (tokens)", ["completion_length"]),
        ("KL", ["kl"]),
        ("sampler vs trainer |logp gap|", [limits.metric, limits.metric.replace("/mean", "/max")]),
    ]
    axes[3].axhline(limits.threshold, color="red", linestyle="--", linewidth=1, label="stale-weight guard")
    axes[3].set_yscale("symlog", linthresh=1e-3)  # healthy ~0.001-0.01, stale ~0.1-1: both readable
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            drawn = points(rows, key, skipped)
            if drawn:
                label = key.removeprefix("rewards/").removesuffix("/mean").removeprefix("sampling/")
                ax.plot(*zip(*drawn), marker=".", label=label)
        ax.set_title(title)
        ax.set_xlabel("step")
        if len(keys) > 1 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    target = run_dir / "run.png"
    partial = run_dir / ".run.png.partial"
    try:
        fig.savefig(partial, dpi=100, format="png")
        os.replace(partial, target)
    finally:
        plt.close(fig)
        partial.unlink(missing_ok=True)
    return target
