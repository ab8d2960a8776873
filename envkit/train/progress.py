"""What `envkit train` shows while it trains: one line per logged step, from the row envkit writes to
metrics.jsonl (step/total, reward, the sampler gap when measured, s/step, tokens/s, ETA), with a progress bar
when stderr is a terminal.  The libraries' own output (TRL's per-step dicts, the Trainer's tqdm bar,
datasets' and transformers' loading bars, their FutureWarnings) only with -v: without it a step's numbers
would be printed twice, once as a raw dict between redrawn bars."""

from __future__ import annotations

import sys
import warnings

import click

from envkit.train.guard import GuardLimits

BAR = 20  # characters of the progress bar


def quiet_libraries() -> None:
    """The libraries' bars and deprecation notes off for this process (before the model and data load).
    Downloads keep their bars (huggingface_hub's): minutes of a model arriving in silence look like a hang."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def quiet_trainer(trainer) -> None:
    """The Trainer's tqdm bar and its print of every log dict (ProgressCallback, or PrinterCallback with
    disable_tqdm) off: envkit's StepLines says each step instead."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)


class StepLines:
    """Called with each training row MetricsCallback writes (an evaluation's row is not a step): prints its line."""

    def __init__(self, bar: bool | None = None):
        self.bar = sys.stderr.isatty() if bar is None else bar
        self.gap_metric = GuardLimits.shipped().metric
        self._first: tuple[int, float] | None = None  # the first row's step and elapsed_s: the pace counts from it

    def __call__(self, row: dict, total: int) -> None:
        click.echo(self.line(row, total), err=True)

    def line(self, row: dict, total: int) -> str:
        step, elapsed = row["step"], row["elapsed_s"]
        if self._first is None or step <= self._first[0]:  # step 1's elapsed_s holds the start-up: not the pace
            self._first = (step, elapsed)
            pace = row["step_time"]
        else:
            pace = (elapsed - self._first[1]) / (step - self._first[0])
        parts = [f"step {step}/{total}"]
        if self.bar and total > 0:
            done = min(BAR, round(BAR * step / total))
            parts.append("[" + "#" * done + "." * (BAR - done) + "]")
        parts.append(f"reward {row['reward']:.3f}")
        if self.gap_metric in row:
            parts.append(f"sampler gap {row[self.gap_metric]:.4f}")
        parts.append(f"{pace:.2f} s/step")
        if "tokens_per_s" in row:
            parts.append(f"{row['tokens_per_s']:.0f} tok/s")
        parts.append(f"ETA {_clock(pace * max(total - step, 0))}")
        return "envkit train: " + "  ".join(parts)


def _clock(seconds: float) -> str:
    """h:mm:ss, or m:ss under an hour."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
