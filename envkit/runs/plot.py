"""The run's picture: the weighted reward, each reward function's mean, completion length, KL, the sampler's
gap to the trainer (the stale-weight guard's metric, with its threshold), step time and tokens/s per step,
from metrics.jsonl.

metrics.jsonl is read as found: a torn last line, a hand-edited value, a diverged run's NaN or 1e308.
What cannot be drawn is left out and counted (``Skipped``), never a traceback; only a metrics.jsonl that is
not a readable regular file is an error (``MetricsError``: one line, exit 2).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from envkit.errors import UsageError
from envkit.files import read_regular, write_owned
from envkit.terminal import printable

# Values beyond are left out: matplotlib's axis arithmetic overflows well before float's end (a panel holding
# 1e308 and -1e308 raises; the symlog panel warns from 1e300), and no metric of a sane step comes near.
LARGEST = 1e100
# Reward functions drawn and tabulated: a recipe names a few; a metrics.jsonl may name thousands (one panel
# line and one table column each took minutes).
MAX_FUNCTIONS = 12
METRICS_BYTES = 2**30  # ~1 KB a step: a million steps; beyond, not a run's metrics


class MetricsError(UsageError, ValueError):
    """metrics.jsonl is not a readable regular file."""


@dataclass
class Skipped:
    lines: int = 0  # not a JSON object with an integer step (a torn line, a stray text)
    values: dict[str, int] = field(default_factory=dict)  # per plotted key: not a number, NaN, ±inf, beyond ±LARGEST
    functions: int = 0  # reward functions beyond the first MAX_FUNCTIONS

    def __str__(self) -> str:
        parts = [f"{self.lines} line{'s' * (self.lines != 1)} without a step"] if self.lines else []
        if self.values:
            count, named = sum(self.values.values()), sorted(self.values.items())
            more = f", and {len(named) - 5} keys more" if len(named) > 5 else ""
            parts.append(f"{count} value{'s' * (count != 1)} not a number, NaN, ±inf or beyond ±{LARGEST:g} ("
                         + ", ".join(f"{key} {n}" for key, n in named[:5]) + more + ")")
        if self.functions:
            parts.append(f"{self.functions} reward functions beyond the first {MAX_FUNCTIONS}")
        return " and ".join(parts)


def metric_rows(path: Path, skipped: Skipped | None = None) -> list[dict]:
    """The step rows of a metrics.jsonl; lines that are not a JSON object with an integer step are skipped
    (the last line of a killed run may be torn), and counted in ``skipped``."""
    if not path.is_file():  # a folder, a FIFO (reading one would wait forever), a dangling link
        raise MetricsError(f"{path} is not a regular file")
    try:
        text = read_regular(path, METRICS_BYTES).decode(errors="replace")
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


def reward_functions(rows: list[dict]) -> tuple[list[str], int]:
    """The reward functions' ``rewards/NAME/mean`` keys shown (the first MAX_FUNCTIONS by name), and how many
    more there are."""
    found = sorted({k for r in rows for k in r if k.startswith("rewards/") and k.endswith("/mean")})
    return found[:MAX_FUNCTIONS], len(found[MAX_FUNCTIONS:])


REWARD_PANELS = ("reward (weighted total)", "reward per function (unweighted mean)")
# Each panel's left axis label, and the right axis's, by the key drawn there.
AXIS_LABELS = {"reward (weighted total)": "reward", "reward per function (unweighted mean)": "mean reward",
               "completion length (tokens)": "tokens", "KL": "KL to the reference",
               "sampler vs trainer |logp gap|": "|logp gap| (symlog)",
               "step time (s), tokens/s (right)": "seconds per step",
               "tokens_per_s": "tokens/s"}
COUNTS_FROM_ZERO = ("completion length (tokens)", "step time (s), tokens/s (right)")  # no dip drawn as a fall
SHORT_NAMES = {"step_time": "step time", "tokens_per_s": "tokens/s", "completion_length": "mean length",
               "kl": "KL", "eval_reward": "eval reward"}


def reward_limits(values: list[float]) -> tuple[float, float]:
    """A reward axis that a wobble cannot fill (0.0985-0.0988 drew as a crash, issue #24): from 0 (or the lowest
    value, when negative) to 1 (or the highest value, when above), padded by 4 % of that span."""
    low, high = min([0.0, *values]), max([1.0 if min(values, default=0) >= 0 else 0.0, *values])
    pad = 0.04 * (high - low)
    return low - pad, high + pad


def panels(rows: list[dict], guard_metric: str, skipped: Skipped | None = None) -> tuple[list, dict]:
    """The panels with something to draw, each (title, keys on the left axis, a key on a right axis of its
    own or None), and the points by key.  The reward panel stays when nothing else has a point."""
    functions, beyond = reward_functions(rows)
    if skipped is not None:
        skipped.functions = beyond
    every = [
        (REWARD_PANELS[0], ["reward", "eval_reward"], None),
        (REWARD_PANELS[1], functions, None),
        ("completion length (tokens)", ["completion_length"], None),
        ("KL", ["kl"], None),
        ("sampler vs trainer |logp gap|", [guard_metric, guard_metric.replace("/mean", "/max")], None),
        ("step time (s), tokens/s (right)", ["step_time"], "tokens_per_s"),
    ]
    drawn = {key: points(rows, key, skipped) for _, left, right in every for key in left + [right] if key}
    return [p for p in every if any(drawn[k] for k in p[1] + [p[2]] if k)] or every[:1], drawn


def plot_run(run_dir: Path, limits, skipped: Skipped | None = None, rows: list[dict] | None = None) -> Path:
    """Draw run_dir/run.png (written whole: a temporary file renamed) from ``rows`` (default: read from its
    metrics.jsonl); what was left out goes to ``skipped``.  ``limits``: the stale-weight guard's metric and
    threshold (envkit.train.guard.GuardLimits), drawn on the sampler's gap.  A panel with nothing to draw is
    left out (KL with beta 0, the sampler's gap without vLLM); the weighted total reward and the functions'
    unweighted means have a panel each, their scales differ by the weights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = metric_rows(run_dir / "metrics.jsonl", skipped) if rows is None else rows
    shown, drawn = panels(rows, limits.metric, skipped)
    columns = min(3, len(shown))
    fig, grid = plt.subplots(-(-len(shown) // columns), columns, figsize=(6 * columns, 4 * -(-len(shown) // columns)),
                             squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    for ax, (title, left, right) in zip(axes, shown):
        _draw(ax, title, left, right, drawn, limits)
    # the output folder, not the recipe ("recipe" for all); a control character would reach stderr in
    # matplotlib's glyph warning
    fig.suptitle(printable(run_dir.resolve().name), fontsize="large")
    fig.tight_layout()
    target = run_dir / "run.png"
    picture = io.BytesIO()
    try:
        fig.savefig(picture, dpi=100, format="png")
    finally:
        plt.close(fig)
    # a temporary file of its own, renamed: never through a link planted in the folder, and never one
    # another report drawing the same run at the same time also writes
    write_owned(target, picture.getvalue())
    return target


def _draw(ax, title: str, left: list[str], right: str | None, drawn: dict, limits) -> None:
    """One panel: its lines with a legend, both axes labelled, ticks without a run of decimals."""
    from matplotlib.ticker import MaxNLocator

    if limits.metric in left:
        ax.axhline(limits.threshold, color="red", linestyle="--", linewidth=1, label="stale-weight guard")
        ax.set_yscale("symlog", linthresh=1e-3)  # healthy ~0.001-0.01, stale ~0.1-1: both readable
    else:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 4), useMathText=True)  # KL 0.00019: 1.9 x 1e-4
    for key in left:
        if drawn[key]:
            label = SHORT_NAMES.get(key) or key.removeprefix("rewards/").removesuffix("/mean").removeprefix("sampling/")
            ax.plot(*zip(*drawn[key]), marker=".", label=printable(label))
    if title in REWARD_PANELS:
        ax.set_ylim(*reward_limits([v for key in left for _, v in drawn[key]]))
    elif title in COUNTS_FROM_ZERO:
        ax.set_ylim(0, 1.08 * max((v for key in left for _, v in drawn[key]), default=1) or 1)
    handles, labels = ax.get_legend_handles_labels()
    if right and drawn[right]:
        twin = ax.twinx()
        handles += twin.plot(*zip(*drawn[right]), marker=".", color="tab:orange", label=SHORT_NAMES[right])
        labels.append(SHORT_NAMES[right])
        twin.set_ylabel(AXIS_LABELS[right])
        twin.set_ylim(bottom=0)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(AXIS_LABELS[title])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    if handles:
        ax.legend(handles, labels, fontsize="small", loc="best")
