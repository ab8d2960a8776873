"""The run's picture: reward per function, completion length, KL and the sampler's gap to the trainer
(the stale-weight guard's metric, with its threshold) per step, from metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(run_dir: Path) -> list[dict]:
    return metric_rows(run_dir / "metrics.jsonl")


def metric_rows(path: Path) -> list[dict]:
    """The step rows of a metrics.jsonl; lines that are not a JSON object with an integer step are skipped
    (the last line of a killed run may be torn)."""
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and type(row.get("step")) is int:
            rows.append(row)
    return rows


def plot_run(run_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from envkit.train.guard import GuardLimits

    rows = read_metrics(run_dir)
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
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                ax.plot(*zip(*points), marker=".", label=key.removeprefix("rewards/").removesuffix("/mean").removeprefix("sampling/"))
        ax.set_title(title)
        ax.set_xlabel("step")
        if len(keys) > 1 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    target = run_dir / "run.png"
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target
