"""A run's sample completions (RUN/samples.jsonl, written by envkit.train.samples_log): read back and shown as
`envkit report RUN --samples [STEP]` prints them, each prompt's best and worst completion side by side.

Pure over the file's text: nothing imported that a report without torch lacks.  Everything in the file is the
model's or the dataset's text: printed through ``printable``, never obeyed.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

from envkit.files import read_regular
from envkit.terminal import printable

SAMPLES = "samples.jsonl"
SAMPLES_BYTES = 2**30
PROMPT_CHARS = 600  # a prompt longer than this is cut in the printout (the file keeps it whole)
COMPLETION_LINES = 12  # lines of each side's wrapped completion shown


def group_rows(flat: list[dict]) -> list[dict]:
    """Completions grouped by their prompt (GRPO's group: num_generations completions of one prompt), in order."""
    groups: dict[str, dict] = {}
    for c in flat:
        group = groups.setdefault(c["prompt"], {"prompt": c["prompt"], "answer": c["answer"], "completions": []})
        group["completions"].append({k: c[k] for k in ("completion", "reward", "rewards", "advantage")})
    return list(groups.values())


def read_samples(run_dir: Path) -> list[dict]:
    """samples.jsonl's step rows (a torn or foreign line is skipped, and what is not a group or a completion in
    a row); [] when the run has none."""
    path = run_dir / SAMPLES
    if not path.is_file():
        return []
    rows = []
    for line in read_regular(path, SAMPLES_BYTES).decode(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(row, dict) and type(row.get("step")) is int and isinstance(row.get("groups"), list):
            groups = [g for g in row["groups"] if isinstance(g, dict) and isinstance(g.get("completions"), list)]
            for group in groups:
                group["completions"] = [c for c in group["completions"] if isinstance(c, dict)]
            rows.append({**row, "groups": groups})
    return rows


def samples_text(rows: list[dict]) -> str:
    """samples.jsonl's text of ``rows``."""
    return "".join(json.dumps(row) + "\n" for row in rows)


def pick_step(rows: list[dict], step: int | None) -> dict | None:
    """The row of ``step``, or the last row when None."""
    if step is None:
        return rows[-1] if rows else None
    return next((r for r in reversed(rows) if r["step"] == step), None)  # a resumed run logged it again: the last


def _reward(completion: dict) -> float:
    value = completion.get("reward")
    return value if isinstance(value, (int, float)) and math.isfinite(value) else -math.inf


def count(completions: list) -> str:
    """"8 completions", "1 completion"."""
    return f"{len(completions)} completion{'s' * (len(completions) != 1)}"


def ranked(group: dict) -> list[dict]:
    """A group's completions, the best (highest weighted reward) first; one without a reward last."""
    return sorted(group["completions"], key=_reward, reverse=True)


def score_line(completion: dict) -> str:
    """"reward 1.100 (exact_answer 1, length 0.1, digits 1)"."""
    rewards = completion.get("rewards") if isinstance(completion.get("rewards"), dict) else {}
    parts = ", ".join(f"{name} {value:.3g}" if isinstance(value, (int, float)) else f"{name} -"
                      for name, value in rewards.items())
    total = completion.get("reward")
    head = f"reward {total:.3f}" if isinstance(total, (int, float)) else "reward -"
    return f"{head} ({parts})" if parts else head


def _shown(text) -> list[str]:
    """Anyone's text as printable lines (a line break kept, every other control character escaped)."""
    return [printable(line) for line in str(text).splitlines()]


def _column(title: str, completion: dict, width: int) -> list[str]:
    paragraphs = _shown(completion.get("completion", "")) or ["(empty)"]
    lines = [line for para in paragraphs for line in textwrap.wrap(para, width) or [""]]
    more = [f"... ({len(lines) - COMPLETION_LINES} more lines)"] if len(lines) > COMPLETION_LINES else []
    head = textwrap.wrap(f"{title}: {printable(score_line(completion))}", width)
    return head + ["-" * min(width, 20)] + lines[:COMPLETION_LINES] + more


def render_step(row: dict, width: int = 100) -> str:
    """One logged step: per prompt its answer and the reward spread, then the best and the worst completion
    side by side (one under the other when the terminal is narrow)."""
    out = [f"step {row['step']}: {len(row['groups'])} prompt{'s' * (len(row['groups']) != 1)}"]
    for n, group in enumerate(row["groups"], 1):
        completions = ranked(group)
        if not completions:
            continue
        prompt = "\n    ".join(_shown(group.get("prompt", "")))
        prompt = prompt if len(prompt) <= PROMPT_CHARS else prompt[:PROMPT_CHARS] + " ..."
        rewards = [_reward(c) for c in completions if _reward(c) > -math.inf]
        spread = count(completions) + (f", reward {min(rewards):.3f} .. {max(rewards):.3f}, "
                                       f"mean {sum(rewards) / len(rewards):.3f}" if rewards else "")
        out += ["", f"[{n}] prompt: {prompt}",
                f"    answer: {printable(str(group.get('answer')))}", f"    {spread}"]
        half = max(20, (width - 3) // 2)
        best, worst = _column("best", completions[0], half), _column("worst", completions[-1], half)
        if width < 60 or len(completions) == 1:
            out += [""] + best + ([""] + worst if len(completions) > 1 else [])
            continue
        out.append("")
        for i in range(max(len(best), len(worst))):
            left = best[i] if i < len(best) else ""
            right = worst[i] if i < len(worst) else ""
            out.append(f"{left.ljust(half)} | {right}".rstrip())
    return "\n".join(out)
