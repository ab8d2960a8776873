"""`envkit report RUN --follow`: a live view without any service.  The table, run.png and report.html are drawn
again whenever metrics.jsonl grows, until the run ends: no `envkit train` holds the folder's lock any more
(envkit.train.rundir.RunLock: the kernel drops it however the run ends, a crash included)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from envkit.train.rundir import LOCK

try:
    import fcntl
except ImportError:  # Windows: no flock, so no way to tell a live run; --follow draws once
    fcntl = None

CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear the screen: a terminal redraws the table in place


def run_active(run_dir: Path) -> bool:
    """An `envkit train` holds RUN/.envkit-train.lock now.  Asked without taking it: a shared lock tried and
    dropped at once (a train starting in that instant is told the folder is busy: it would be, by us)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False  # no lock file: no run (a run removes it when it ends)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def follow(run_dir: Path, draw: Callable[[], str | None], interval: float = 2.0, echo=print,
           active: Callable[[Path], bool] = run_active, sleep=time.sleep) -> bool:
    """Call ``draw`` (which redraws the picture and the page and returns the text to show, None while there is
    nothing) whenever metrics.jsonl changes, until the run is no longer active; then once more.  Whether anything
    was shown (nothing: no run, and no metrics.jsonl)."""
    metrics = run_dir / "metrics.jsonl"
    tty = sys.stdout.isatty()
    seen, shown = None, False
    while True:
        running = active(run_dir)
        try:
            stat = metrics.stat()
            state = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            state = None
        if state != seen or not running:
            seen = state
            text = draw() if state is not None else None
            if text is not None:
                shown = True
                echo((CLEAR if tty else "") + text + ("" if not running else f"\n(following {run_dir}: Ctrl-C stops)"))
        if not running:
            return shown
        sleep(interval)
