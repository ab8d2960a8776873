"""Per-step metrics to metrics.jsonl, the guards (stale weights, learning signal), and a clean stop on SIGINT or
SIGTERM (save, then exit)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import click
import torch
from transformers import TrainerCallback

from envkit.files import open_owned, write_owned
from envkit.train import phases
from envkit.train.guard import StaleWeightGuard
from envkit.runs.plot import metric_rows

# TRL's log keys -> ours; rewards/<function>/mean and the sampler-vs-trainer gap (sampling/*: what the
# stale-weight guard reads) keep their names, and so do the ones the learning-signal guard reads
# (envkit.train.learning), so it reads a row as it reads TRL's logs.
KEYS = {"reward": "reward", "completions/mean_length": "completion_length", "kl": "kl", "loss": "loss",
        "learning_rate": "learning_rate", "grad_norm": "grad_norm", "frac_reward_zero_std": "frac_reward_zero_std",
        "completions/clipped_ratio": "completions/clipped_ratio", "adapter_update": "adapter_update"}


class MetricsCallback(TrainerCallback):
    """Appends one JSON line per logged step: rewards per function, completion length, KL, step time, tokens/s,
    seconds since the run started (``elapsed_s``: step 1's is the start-up), TRL's timed spans of the step
    (``phase_s``, envkit.train.phases) and on a GPU the peak of torch's allocations (``gpu_peak_gib``)."""

    def __init__(self, path: Path, run_started: float | None = None, show=None):
        self.path = path
        self.show = show  # called with each step's row and max_steps: envkit.train.progress.StepLines
        self._run_started = time.perf_counter() if run_started is None else run_started
        self._phases = phases.install()
        self._started = 0.0
        self._step_time = 0.0
        self._tokens = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._step_time = time.perf_counter() - self._started

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "eval_reward" in logs:  # an evaluation: a row of its own, its keys as TRL names them (eval_*)
            self._write({"step": state.global_step, **{k: v for k, v in logs.items() if k.startswith("eval_")}})
            return
        if "reward" not in logs:  # the final train summary, not a step
            return
        row = {"step": state.global_step, "step_time": round(self._step_time, 4),
               "elapsed_s": round(time.perf_counter() - self._run_started, 2)}
        row.update({ours: logs[theirs] for theirs, ours in KEYS.items() if theirs in logs})
        row.update({k: v for k, v in logs.items() if k.startswith("rewards/") and k.endswith("/mean") or k.startswith("sampling/")})
        tokens = logs.get("num_tokens")
        if tokens is not None and self._tokens is not None and self._step_time > 0:
            row["tokens_per_s"] = round((tokens - self._tokens) / self._step_time, 1)
        self._tokens = tokens
        if self._phases:
            row["phase_s"] = phases.take()
        if torch.cuda.is_available():  # this process's torch allocations so far (a colocated vLLM's included)
            row["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        self._write(row)
        if self.show:
            self.show(row, state.max_steps)

    def _write(self, row: dict) -> None:
        fd = open_owned(self.path)  # appended to, never through a link planted in the run folder (issue #29)
        try:
            os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, (json.dumps(row) + "\n").encode())
        finally:
            os.close(fd)


class GuardCallback(TrainerCallback):
    """The run's guards on every logged step (the stale-weight guard unless others are given: envkit.train.guard,
    envkit.train.learning): a loud warning when one fires and, with ``guard: stop``, a checkpoint and the end of
    training (the runner then exits naming the cause, with the verdict's exit code).

    Every rank runs it: TRL gathers the metrics over the ranks before logging, so all of them see the same
    values and stop at the same step; only ``speak`` (rank 0) prints.
    """

    def __init__(self, stop: bool, speak: bool, guards: list | None = None):
        self.guards = guards if guards is not None else [StaleWeightGuard()]
        self.stop = stop
        self.speak = speak

    def on_log(self, args, state, control, logs=None, **kwargs):
        for guard in self.guards:
            verdict = guard.observe(state.global_step, logs or {})
            if verdict is None:
                continue
            if self.speak:
                then = ("stopping after a checkpoint (guard: stop)" if self.stop
                        else "training goes on (guard: stop ends such a run)")
                click.echo(f"envkit train: WARNING: {verdict.label}: {verdict.message()}; {then}; {verdict.hint}",
                           err=True)
            if self.stop:
                control.should_save = True
                control.should_training_stop = True


class AdapterMotion(TrainerCallback):
    """Adds ``adapter_update`` to each logged training step, before the other callbacks read it: the norm of
    the trainable weights' change since the last logged step over their norm then (envkit.train.learning reads
    it: 0 when the learning rate is too small to move them).  Keeps one copy of the trainable weights (the
    LoRA adapter: small) on their device.  Under several processes the sums are all-reduced, so every rank
    (a sharded model's too, even one holding none of the weights) logs the same value and the guard stops
    them all at the same step."""

    def __init__(self):
        self._weights: list[torch.Tensor] = []
        self._last: list[torch.Tensor] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._weights = [p for p in model.parameters() if p.requires_grad and p.numel()] if model is not None else []
        self._last = [p.detach().clone() for p in self._weights]

    @torch.no_grad()
    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "reward" not in logs:  # the same on every rank: TRL logs gathered metrics
            return
        sums = torch.zeros(2, dtype=torch.float64, device=args.device)
        for p, q in zip(self._weights, self._last):
            sums[0] += (p.double() - q.double()).pow(2).sum().to(sums.device)
            sums[1] += q.double().pow(2).sum().to(sums.device)
            q.copy_(p)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums)
        moved, size = sums.tolist()
        if size > 0:
            logs["adapter_update"] = (moved / size) ** 0.5


class StopOnSignal(TrainerCallback):
    """First Ctrl-C or SIGTERM: finish the step, save a checkpoint, stop.  A second one interrupts at once.

    SIGTERM too because that is how `docker stop` and schedulers ask (`envkit` is the image's entrypoint,
    PID 1, where an unhandled SIGTERM is ignored until the SIGKILL after the grace period), and how
    envkit's own launcher stops a trainer rank.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: signal.Signals | None = None
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    @property
    def requested(self) -> bool:
        return self.received is not None

    def _handle(self, signum, frame):
        if self.requested:
            self._restore()
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self._restore()


class ScheduleOnResume(TrainerCallback):
    """On resume: the learning rate the schedule gives at the checkpoint's step, for this run's max_steps.

    HF's Trainer builds the scheduler for the max_steps it is given, but the optimizer state it restores
    keeps the rate of the run that saved it: after a finished run that is the end of its schedule (0 for a
    linear or cosine decay), so the first step of an extension (--resume --max-steps N) would train at it.
    The HF schedulers are LambdaLR (a factor per step); other schedulers are left as restored.
    """

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate may wrap it
        factors = getattr(scheduler, "lr_lambdas", None)
        if optimizer is None or not factors:
            return
        for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, factors):
            group["lr"] = base * factor(scheduler.last_epoch)
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what the Trainer logs as learning_rate


def trim_metrics(path: Path, last_step: int) -> None:
    """On resume: drop lines logged after the checkpoint (those steps run again), and a line a kill tore."""
    if not path.exists():
        return
    kept = [row for row in metric_rows(path) if row["step"] <= last_step]
    write_owned(path, "".join(json.dumps(row) + "\n" for row in kept))
