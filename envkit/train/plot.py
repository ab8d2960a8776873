"""The run's picture: reward per function, completion length and KL per step, from metrics.jsonl."""

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

    rows = read_metrics(run_dir)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = [
        ("reward", sorted({k for r in rows for k in r if k.startswith("rewards/")} | {"reward"})),
        ("completion length (tokens)", ["completion_length"]),
        ("KL", ["kl"]),
    ]
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                ax.plot(*zip(*points), marker=".", label=key.removeprefix("rewards/").removesuffix("/mean"))
        ax.set_title(title)
        ax.set_xlabel("step")
        if len(keys) > 1:
            ax.legend(fontsize="small")
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    target = run_dir / "run.png"
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target
