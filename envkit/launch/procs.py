"""Run a launch layout: start its processes, wait for the server, stream their output, always tear down.

Each process leads a session of its own (``start_new_session``), so the terminal's Ctrl-C reaches only
envkit, which then stops the processes itself.  Stopping is polite first: one signal to the process's
group, as the engines expect (vLLM's server stops its engine processes; torchrun, under ``accelerate
launch``, forwards the signal to its ranks).  After the grace period every process of the tree still
alive gets SIGKILL.  The tree is tracked while the run goes (/proc), because torchrun starts each rank
in a session of its own, out of reach of the launcher's group, and a rank whose parent died would
otherwise live on.  Nothing outlives the run; the ports its processes held are free again.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from http.client import HTTPException
from pathlib import Path

from envkit.errors import Failure
from envkit.exitcodes import INTERRUPTED, TERMINATED, Terminated
from envkit.launch.layout import LaunchLayout, ProcessSpec

GRACE_S = 15.0  # SIGTERM -> SIGKILL
SAVE_GRACE_S = 120.0  # Ctrl-C: time for the trainer to finish its step and save a checkpoint
TAIL_LINES = 15
PROC = Path("/proc")

Echo = Callable[[str], None]
_echo_lock = threading.Lock()


class LaunchFailed(Failure, RuntimeError):
    """A process of the run failed to come up or died; the message ends with its last output lines."""


def echo_stdout(line: str) -> None:
    with _echo_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Running:
    """A started process: its output is echoed with a ``[name] `` prefix and its last lines kept."""

    def __init__(self, spec: ProcessSpec, echo: Echo = echo_stdout):
        self.spec = spec
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}  # its output is a pipe: stream it, not blocks
        self.popen = subprocess.Popen(spec.argv, env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.tree: dict[int, int] = {}  # descendant pid -> its start time (a reused pid is not ours)
        self._reader = threading.Thread(target=self._read, args=(echo,), daemon=True)
        self._reader.start()

    def _read(self, echo: Echo) -> None:
        """Line by line as the bytes come; a carriage return (progress bars) ends a line too."""
        pending = b""
        for chunk in iter(lambda: self.popen.stdout.read1(65536), b""):
            *lines, pending = re.split(rb"\r\n|\r|\n", pending + chunk)
            for raw in filter(None, lines):
                self._emit(raw, echo)
        if pending:
            self._emit(pending, echo)

    def _emit(self, raw: bytes, echo: Echo) -> None:
        line = raw.decode("utf-8", "replace")
        self.tail.append(line)
        echo(f"[{self.spec.name}] {line}")

    def track(self) -> None:
        """Remember the process's descendants (so a rank whose parent died can still be found)."""
        table = _process_table()
        self.tree.update({pid: table[pid][3] for pid in _descendants(self.popen.pid, table)})

    def last_lines(self) -> str:
        self._reader.join(timeout=0.5)  # a process that just exited: let its last lines arrive
        lines = list(self.tail)
        return "; last lines of its output:\n" + "\n".join(f"    {line}" for line in lines) if lines else "; it printed nothing"

    def stop(self, first: signal.Signals = signal.SIGTERM, grace_s: float = GRACE_S) -> None:
        """``first`` to the process group, SIGKILL to whatever of the tree is alive after ``grace_s``."""
        self.track()
        _signal_group(self.popen.pid, first)
        deadline = time.monotonic() + grace_s
        while self._alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self._alive()
        if left:
            _signal_group(self.popen.pid, signal.SIGKILL)
            for pid in left:
                _signal(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while self._alive() and time.monotonic() < deadline:  # gone, so their ports are free on return
                time.sleep(0.02)
        self.popen.wait()
        self._reader.join(timeout=1)

    def _alive(self) -> list[int]:
        self.popen.poll()  # reap the leader once it exits
        table = _process_table()
        alive = [pid for pid, started in self.tree.items() if pid in table and table[pid][2] != "Z" and table[pid][3] == started]
        return alive + ([self.popen.pid] if self.popen.returncode is None else [])


def wait_healthy(url: str, timeout_s: float, proc: Running | None = None, poll_s: float = 1.0) -> None:
    """Until ``url`` answers 200; LaunchFailed when ``proc`` exits first or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    who = proc.spec.name if proc else "the server"
    while True:
        if proc is not None and proc.popen.poll() is not None:
            raise LaunchFailed(f"{who} exited with code {proc.popen.returncode} before {url} answered{proc.last_lines()}")
        try:
            with urllib.request.urlopen(url, timeout=max(0.1, min(5.0, deadline - time.monotonic()))) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, HTTPException, OSError):
            pass  # not listening yet, or not ready (vLLM answers once the engine is up)
        if time.monotonic() >= deadline:
            tail = proc.last_lines() if proc else ""
            raise LaunchFailed(f"{who} did not answer {url} within {timeout_s:g} s (vllm.server.timeout_s){tail}")
        time.sleep(poll_s)


def run_processes(layout: LaunchLayout, echo: Echo = echo_stdout, grace_s: float = GRACE_S,
                  save_grace_s: float = SAVE_GRACE_S, poll_s: float = 0.5) -> int:
    """Start the processes in order (each one with a health URL must answer before the next starts);
    the run ends when the last one exits, with its exit code; 130 on Ctrl-C, 143 on SIGTERM (as the
    `envkit` command raises it: Terminated).  Teardown always: the processes lead sessions of their own,
    so without it a SIGTERM to envkit alone would leave the server and the ranks running."""
    running: list[Running] = []
    interrupted = False
    try:
        for spec in layout.processes:
            running.append(Running(spec, echo))
            if spec.health_url:
                wait_healthy(spec.health_url, spec.health_timeout_s, running[-1], poll_s)
                echo(f"[envkit] {spec.name} is up: {spec.health_url}")
        return _wait_last(running, poll_s)
    except KeyboardInterrupt:
        interrupted = True
        echo("[envkit] interrupted: stopping (the trainer saves a checkpoint; Ctrl-C again stops at once)")
        return INTERRUPTED
    except Terminated:
        echo("[envkit] terminated: stopping every process of the run")
        return TERMINATED
    finally:
        _teardown(running, interrupted, grace_s, save_grace_s)


def _wait_last(running: list[Running], poll_s: float) -> int:
    main, helpers = running[-1], running[:-1]
    while True:
        for proc in running:
            proc.track()
        code = main.popen.poll()
        if code is not None:
            return code
        for proc in helpers:
            if proc.popen.poll() is not None:
                raise LaunchFailed(f"{proc.spec.name} exited with code {proc.popen.returncode} during the run{proc.last_lines()}")
        time.sleep(poll_s)


def _teardown(running: list[Running], interrupted: bool, grace_s: float, save_grace_s: float) -> None:
    """The trainer first (on Ctrl-C with SIGINT, which envkit's runner answers with a checkpoint), then the rest."""
    try:
        for proc in reversed(running):
            saving = interrupted and proc is running[-1]
            proc.stop(signal.SIGINT if saving else signal.SIGTERM, save_grace_s if saving else grace_s)
    except (KeyboardInterrupt, Terminated):  # a second Ctrl-C or SIGTERM: no more waiting
        for proc in running:
            proc.stop(signal.SIGKILL, 0)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _process_table() -> dict[int, tuple[int, int, str, int]]:
    """pid -> (ppid, pgid, state, start time) from /proc; empty where there is no /proc."""
    table = {}
    try:
        entries = [e for e in os.listdir(PROC) if e.isdigit()]
    except OSError:
        return table
    for entry in entries:
        try:
            stat = (PROC / entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
        table[int(entry)] = (int(fields[1]), int(fields[2]), fields[0], int(fields[19]))
    return table


def _descendants(root: int, table: dict[int, tuple[int, int, str, int]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_rest) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
