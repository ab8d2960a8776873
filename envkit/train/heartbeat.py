"""A trainer rank's heartbeat for the launcher's watchdog (envkit.launch.watchdog): its phase (init, a step, TRL's
timed spans inside it such as sync_weights, between steps) written to the launcher's watchdog folder as it changes.

Started at the top of the run (``start``: before the model loads, so init is timed), only where the launcher asked
for it (ENVKIT_WATCHDOG_DIR in the environment).  TRL's spans come from ``trl.extras.profiling.ProfilingContext``,
entered and left around generation, the weight sync and the reward passes; a TRL without it gives steps only.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from transformers import TrainerCallback

from envkit.launch.watchdog import BEATS_ENV, RankBeats

_active: list[RankBeats] = []  # the process's heartbeat, for the span hooks (one per process)


class Heartbeat(TrainerCallback):
    def __init__(self, beats: RankBeats):
        self.beats = beats

    def on_train_begin(self, args, state, control, **kwargs):
        self.beats.phase("ready")

    def on_step_begin(self, args, state, control, **kwargs):
        self.beats.step_begin(state.global_step + 1)

    def on_step_end(self, args, state, control, **kwargs):
        self.beats.step_end()

    def on_train_end(self, args, state, control, **kwargs):
        self.beats.phase("done")


def start() -> Heartbeat | None:
    """This rank's heartbeat (phase init from now on), or None when no watchdog watches the run."""
    folder = os.environ.get(BEATS_ENV)
    if not folder:
        return None
    beats = RankBeats(Path(folder), int(os.environ.get("RANK", "0")))
    _active[:] = [beats]
    _hook_spans()
    return Heartbeat(beats)


def _hook_spans() -> None:
    try:
        from trl.extras.profiling import ProfilingContext
    except ImportError:
        return
    if getattr(ProfilingContext.__enter__, "envkit_heartbeat", False):
        return
    enter, leave = ProfilingContext.__enter__, ProfilingContext.__exit__

    def entered(context):
        context.envkit_outer = _active[0].beat["phase"] if _active else None
        context.envkit_started = time.monotonic()
        if _active:
            _active[0].phase(context.name)
        return enter(context)

    def left(context, *exc):
        if _active and getattr(context, "envkit_outer", None):
            _active[0].span_end(context.name, time.monotonic() - context.envkit_started, context.envkit_outer)
        return leave(context, *exc)

    entered.envkit_heartbeat = True
    ProfilingContext.__enter__, ProfilingContext.__exit__ = entered, left
