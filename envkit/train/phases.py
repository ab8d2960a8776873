"""Where a step's time goes: TRL's own timed spans (``vLLM.generate``, ``sync_weights``, the log-prob and
reward passes) summed per logged step, for metrics.jsonl.

TRL times these with ``trl.extras.profiling.ProfilingContext`` but sends the figures to wandb / mlflow /
trackio only.  ``install`` wraps its ``_log_metrics`` so every duration is also added here; a TRL without
that class gives no breakdown and nothing else changes.  Every rank sums its own spans.
"""

from __future__ import annotations

from collections import defaultdict

_TOTALS: defaultdict[str, float] = defaultdict(float)


def install() -> bool:
    """Start summing TRL's spans (once per process); False where the installed TRL has no ProfilingContext."""
    try:
        from trl.extras.profiling import ProfilingContext
    except ImportError:
        return False
    original = ProfilingContext._log_metrics
    if getattr(original, "envkit_phases", False):
        return True

    def log_metrics(context, duration: float) -> None:
        _TOTALS[context.name] += duration
        original(context, duration)

    log_metrics.envkit_phases = True
    ProfilingContext._log_metrics = log_metrics
    return True


def take() -> dict[str, float]:
    """The seconds per span since the last call, and start over."""
    totals = {name: round(seconds, 4) for name, seconds in sorted(_TOTALS.items())}
    _TOTALS.clear()
    return totals
