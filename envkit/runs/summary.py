"""What a run says about itself in words: the end-of-run summary of `envkit train` and the table of `envkit report`.

Pure over metrics.jsonl's rows (envkit.runs.plot.metric_rows) and what the runner knows; nothing imported.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path

from envkit.runs.plot import points, reward_functions

TREND = 5  # steps averaged at each end of the reward's trend


def reward_trend(rows: list[dict]) -> str | None:
    """"0.120 -> 0.310 (mean of the first 5 steps -> the last 5)"; fewer than 2 steps with a reward: None.
    A short run compares halves, so the two means never share a step."""
    rewards = [value for _, value in points(rows, "reward")]
    n = min(TREND, len(rewards) // 2)
    if n == 0:
        return None
    first, last = sum(rewards[:n]) / n, sum(rewards[-n:]) / n
    span = "step" if n == 1 else f"{n} steps"
    return f"{first:.3f} -> {last:.3f} (mean of the first {span} -> the last {span})"


def steps_line(rows: list[dict]) -> str:
    """"20 steps, reward 0.120 -> 0.310 (...)": what `envkit report` and report.html say first about a run."""
    steps = len({row["step"] for row in rows})  # an evaluation's row shares its step's number
    trend = reward_trend(rows)
    return f"{steps} step{'s' * (steps != 1)}" + (f", reward {trend}" if trend else "")


def generation_line(vllm_off: str | None, mode: str, sleep: bool) -> str:
    """How the run generates completions, and why not with vLLM when it doesn't."""
    if vllm_off:
        return f"model.generate (vLLM off: {vllm_off})"
    return f"vLLM, {mode}" + (", sleep mode" if sleep and mode == "colocate" else "")


def run_summary(output_dir: Path, rows: list[dict], steps: int, wall_s: float, generation: str, merged: bool,
                guards: list[str] = ()) -> str:
    """The closing block of a completed `envkit train`: where everything is and what to run next."""
    out = str(output_dir)
    lines = [f"envkit train: done: {steps} step{'s' * (steps != 1)} in {_duration(wall_s)} -> {out}",
             f"  generation  {generation}"]
    trend = reward_trend(rows)
    if trend:
        lines.append(f"  reward      {trend}")
    lines += list(guards)
    merged_text = f"  (merged model: {output_dir / 'merged'})" if merged else ""
    lines.append(f"  adapter     {output_dir / 'adapter'}{merged_text}")
    lines.append(f"  metrics     {output_dir / 'metrics.jsonl'}, picture {output_dir / 'run.png'}, "
                 f"page {output_dir / 'report.html'}")
    quoted = shlex.quote(out)
    lines.append(f"  next        envkit generate {quoted} \"your prompt\"   # sample from the trained adapter")
    lines.append(f"              envkit report {quoted}   # the table and the picture again (--samples: completions)")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes // 60:.0f} h {minutes % 60:.0f} min"


# The table's columns: metrics.jsonl key -> heading.  Per-function rewards (rewards/<name>/mean) join after reward.
COLUMNS = {"reward": "reward", "eval_reward": "eval reward", "completion_length": "completion", "kl": "kl",
           "loss": "loss", "step_time": "step s", "tokens_per_s": "tok/s",
           "sampling/sampling_logp_difference/mean": "logp gap"}


def metrics_table(rows: list[dict], limit: int = 12) -> str:
    """A fixed-width table of the run's steps: every step when there are at most ``limit``, else ``limit``
    of them spread evenly, first and last included.  ``reward`` is the weighted total, ``r:NAME`` each
    function's unweighted mean.  A column no shown row has a number for (kl with beta 0, the sampler gap
    without vLLM) is left out; a value that is not a finite number is "-"."""
    shown = rows if len(rows) <= limit else [rows[round(i * (len(rows) - 1) / (limit - 1))] for i in range(limit)]
    functions, beyond = reward_functions(rows)
    keys = [k for k in ["reward", *functions, *list(COLUMNS)[1:]] if any(_number(r.get(k)) for r in shown)]
    headings = ["step"] + [COLUMNS.get(k) or "r:" + k.removeprefix("rewards/").removesuffix("/mean") for k in keys]
    cells = [[str(r["step"])] + [_cell(r.get(k)) for k in keys] for r in shown]
    widths = [max(len(row[i]) for row in [headings, *cells]) for i in range(len(headings))]
    lines = ["  ".join(text.rjust(width) for text, width in zip(row, widths)) for row in [headings, *cells]]
    if len(shown) < len(rows):
        lines.append(f"({len(shown)} of {len(rows)} steps shown)")
    if beyond:
        lines.append(f"({beyond} more reward functions not shown)")
    return "\n".join(lines)


def _number(value) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _cell(value) -> str:
    if type(value) not in (int, float) or not math.isfinite(value):
        return "-"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{value:.2e}"
