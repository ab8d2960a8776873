"""The watchdog of a launched run: no silent hangs.  A stalled NCCL rendezvous, weight sync or step otherwise
waits forever (NCCL's own timeouts are 10-30 minutes, where they apply at all) and says nothing of which side
stalled.

Each trainer rank keeps a heartbeat file in the launcher's temporary folder (``RankBeats``: its phase, since when, its
step, the durations of its steps and weight syncs so far), and answers SIGUSR1 with its Python stacks
(faulthandler, on its stderr, which the launcher echoes).  The launcher (envkit.launch.procs.run_processes) asks
``Watchdog.check`` on every poll; the deadlines come from what the run measured (recipe ``watchdog:``):

* init: every rank of this machine has built its trainer (model load, init_process_group, the weight-sync group)
  within ``init_s`` of the launch;
* a step: ``step_multiple`` x the median step so far, at least ``step_floor_s``;
* a weight sync (TRL's ``sync_weights`` span, server mode): ``step_multiple`` x the median sync, at least
  ``sync_floor_s``;
* the vLLM server's health endpoint: unanswered for at most ``health_s`` during the run.

On expiry the stalled side is named: the vLLM server, rank N (the rank behind the others within the step),
or the NCCL group (every rank at the same point of the step: none is behind the others).  The run's processes
each get a stack dump request, the trainer a SIGTERM (it saves a checkpoint if it reaches the end of its step,
within ``save_s``), then every process ends and the run fails with one line.
"""

from __future__ import annotations

import faulthandler
import json
import os
import shutil
import signal
import socket
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from envkit.recipe.schema import WatchdogSpec

BEATS_ENV = "ENVKIT_WATCHDOG_DIR"  # set in the environment of every launched process
KEPT = 50  # durations kept per rank: the median's window
SYNC = "sync_weights"  # TRL's span of the weight sync (trl/trainer/grpo_trainer.py profiling_context)
STACK_SIGNAL = signal.SIGUSR1
IDLE = ("init", "ready", "done")  # phases outside a step


class RankBeats:
    """A rank's side: its heartbeat file, rewritten (atomically) at each phase change.  Pure stdlib: the trainer's
    callback (envkit.train.heartbeat) and the tests' fake ranks drive it alike."""

    def __init__(self, folder: Path, rank: int):
        self.path = Path(folder) / f"rank-{rank}.json"
        self.beat = {"rank": rank, "host": socket.gethostname(), "pid": os.getpid(), "phase": "init",
                     "since": time.time(), "step": 0, "seq": 0, "step_since": None, "step_s": [], "sync_s": []}
        faulthandler.register(STACK_SIGNAL, all_threads=True)  # stacks on stderr: the launcher echoes them
        self._write()

    def phase(self, name: str) -> None:
        self.beat.update(phase=name, since=time.time(), seq=self.beat["seq"] + 1)
        self._write()

    def step_begin(self, step: int) -> None:
        now = time.time()
        self.beat.update(phase="step", since=now, step=step, seq=0, step_since=now)
        self._write()

    def step_end(self) -> None:
        self._measured("step_s", time.time() - (self.beat["step_since"] or time.time()))
        self.beat.update(phase="ready", since=time.time(), seq=self.beat["seq"] + 1, step_since=None)
        self._write()

    def span_end(self, name: str, seconds: float, back_to: str) -> None:
        if name == SYNC:
            self._measured("sync_s", seconds)
        self.phase(back_to)

    def _measured(self, key: str, seconds: float) -> None:
        self.beat[key] = (self.beat[key] + [round(seconds, 3)])[-KEPT:]

    def _write(self) -> None:
        """Never fails the training: a heartbeat that cannot be written (the launcher gone, its folder removed
        during the teardown) is a missed beat, not a crash of a rank that may be saving its checkpoint."""
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            temporary.write_text(json.dumps(self.beat))
            os.replace(temporary, self.path)
        except OSError:
            pass


@dataclass(frozen=True)
class Stall:
    side: str  # "the vLLM server", "rank 1", "the NCCL group"
    what: str  # what it was doing, for how long
    deadline: str  # the deadline and where it came from
    ranks: tuple[int, ...] = ()  # the ranks whose stacks say where it stalled (all of this machine's for a group)
    server: bool = False

    def line(self, stacks: Path | None) -> str:
        where = f"; Python stacks in {stacks}" if stacks else ""
        return (f"watchdog: {self.side} stalled: {self.what} (deadline {self.deadline}){where}; every process of the "
                "run was ended")


def read_beats(folder: Path) -> dict[int, dict]:
    beats = {}
    for path in Path(folder).glob("rank-*.json"):
        try:
            beat = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced right now: the next poll reads it
        beats[beat["rank"]] = beat
    return beats


def _deadline(measured: list[float], settings: WatchdogSpec, floor: float, what: str) -> tuple[float, str]:
    if not measured:
        return floor, f"{floor:g} s, the floor: no {what} measured yet"
    median = statistics.median(measured)
    seconds = max(floor, settings.step_multiple * median)
    return seconds, f"{seconds:g} s: {settings.step_multiple:g} x the median {what} {median:.2f} s, floor {floor:g} s"


def find_stall(beats: dict[int, dict], ranks: range, now: float, started: float, settings: WatchdogSpec,
               server_silent_s: float | None = None, health_url: str = "") -> Stall | None:
    """The stall among this machine's ``ranks`` (their heartbeats) and the server, if a deadline has passed.  Pure."""
    if server_silent_s is not None and server_silent_s > settings.health_s:
        return Stall("the vLLM server", f"{health_url} unanswered for {_s(server_silent_s)} s",
                     f"{settings.health_s:g} s, watchdog.health_s", server=True)
    mine = {rank: beats[rank] for rank in ranks if rank in beats}
    unready = [rank for rank in ranks if mine.get(rank, {}).get("phase", "init") == "init"]
    if unready and now - started > settings.init_s:
        deadline = f"{settings.init_s:g} s, watchdog.init_s"
        if len(unready) == len(ranks) and len(ranks) > 1 and len(mine) == len(ranks):
            return Stall("the NCCL group", f"no rank of {_names(ranks)} finished init (model load, process group) "
                         f"in {_s(now - started)} s", deadline, tuple(ranks))
        missing = [r for r in unready if r not in mine]
        what = ("never started (no heartbeat)" if missing == unready else "still in init (model load, process "
                "groups)" if len(ranks) == 1 else "still in init while the others wait for it")
        return Stall(_names(unready), f"{what}, {_s(now - started)} s after the launch", deadline, tuple(unready))
    step_limit, step_why = _deadline([s for b in mine.values() for s in b["step_s"]], settings,
                                     settings.step_floor_s, "step")
    sync_limit, sync_why = _deadline([s for b in mine.values() for s in b["sync_s"]], settings,
                                     settings.sync_floor_s, "weight sync")
    late = {}
    for rank, beat in mine.items():
        if beat["phase"] == SYNC and now - beat["since"] > sync_limit:
            return Stall("the NCCL group", f"rank {rank}'s weight sync to the vLLM server (step {beat['step']}) has "
                         f"run {_s(now - beat['since'])} s", sync_why, (rank,), server=True)
        if beat["phase"] not in IDLE and beat["step_since"] and now - beat["step_since"] > step_limit:
            late[rank] = beat
    if not late:
        return None
    # Ranks run the same code: within a step, each passes the same phases (TRL's spans) in the same order.  The
    # ranks behind the others stalled; the others went on to a collective and wait there for them.  None behind:
    # they all wait in one collective, the NCCL group's own stall.
    progress = {rank: (b["step"], b.get("seq", 0)) for rank, b in mine.items()}
    behind = sorted(r for r in mine if progress[r] == min(progress.values()))
    beat = mine[behind[0]]
    if len(behind) == len(mine) > 1:
        return Stall("the NCCL group", f"every rank of {_names(ranks)} in step {beat['step']} ({beat['phase']}) "
                     f"for {_s(now - beat['step_since'])} s: a collective none of them leaves", step_why,
                     tuple(mine))
    where = (f"in step {beat['step']} for {_s(now - beat['step_since'])} s" if beat["step_since"]
             else f"after step {beat['step']}")  # between steps: the others started the next one
    others = ", behind the other ranks" if len(mine) > 1 else ""
    return Stall(_names(behind), f"{where}, in {beat['phase']} for {_s(now - beat['since'])} s{others}", step_why,
                 tuple(behind))


def _s(seconds: float) -> str:
    """Seconds as said in a message: whole ones from 10 on, tenths below (a 1.5 s deadline, stalled 2.1 s)."""
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}"


def _names(ranks) -> str:
    ranks = list(ranks)
    return f"rank {ranks[0]}" if len(ranks) == 1 else "ranks " + ", ".join(map(str, ranks))


class HealthPoller:
    """The server's health endpoint polled in a thread while the run goes; ``silent_s`` since its last answer."""

    def __init__(self, url: str, every_s: float = 2.0):
        self.url, self.every_s = url, every_s
        self.last_ok = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=self.every_s * 2) as response:
                    if response.status == 200:
                        self.last_ok = time.monotonic()
            except (urllib.error.URLError, HTTPException, OSError):
                pass
            self._stop.wait(self.every_s)

    def silent_s(self) -> float:
        return time.monotonic() - self.last_ok

    def stop(self) -> None:
        self._stop.set()


class Watchdog:
    """The launcher's side for one machine: the environment its processes get, the deadlines checked on each poll,
    and the stack dump of a stall (to ``stacks``, in the run's folder).  ``ranks``: the global ranks this machine
    runs (accelerate numbers them machine by machine).  The heartbeats live in a temporary folder of this machine,
    removed with ``stop``: each machine watches its own ranks, and the run's folder stays the run's (a fresh run
    refuses a folder with files in it)."""

    def __init__(self, settings: WatchdogSpec, ranks: range, stacks: Path, dump_wait_s: float = 2.0):
        self.settings, self.ranks, self.stacks, self.dump_wait_s = settings, ranks, Path(stacks), dump_wait_s
        self.folder = Path(tempfile.mkdtemp(prefix="envkit-watchdog-"))
        self.started = time.time()
        self.health: HealthPoller | None = None
        self.health_url = ""
        self._recording: list[str] | None = None

    def env(self) -> dict[str, str]:
        """Added to every launched process's environment: where ranks beat; stacks on a fatal signal (the server
        is not envkit's code: SIGABRT with faulthandler on is how it says where it was)."""
        return {BEATS_ENV: str(self.folder), "PYTHONFAULTHANDLER": "1"}

    def tap(self, echo):
        """The launcher's echo, also recording the lines of a stack dump while one is asked for."""
        def tapped(line: str) -> None:
            if self._recording is not None:
                self._recording.append(line)
            echo(line)
        return tapped

    def watch_server(self, url: str) -> None:
        """The server is up: poll its health from now on; init is timed from now (the trainer starts)."""
        self.health, self.health_url = HealthPoller(url), url
        self.started = time.time()

    def check(self) -> Stall | None:
        silent = self.health.silent_s() if self.health else None
        return find_stall(read_beats(self.folder), self.ranks, time.time(), self.started, self.settings, silent,
                          self.health_url)

    def dump_stacks(self, stall: Stall, server_pid: int | None) -> Path | None:
        """SIGUSR1 to the stalled ranks of this machine (their faulthandler prints every thread), SIGABRT to the
        server when it is the stalled side; what they print lands in ``stacks``."""
        beats, host = read_beats(self.folder), socket.gethostname()
        targets = [(beats[r]["pid"], STACK_SIGNAL) for r in stall.ranks if r in beats and beats[r]["host"] == host]
        if stall.server and server_pid:
            targets.append((server_pid, signal.SIGABRT))
        if not targets:
            return None
        self._recording = []
        for pid, sig in targets:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(self.dump_wait_s)  # the dumps travel through the launcher's pipes
        lines, self._recording = self._recording, None
        self.stacks.write_text("\n".join(lines) + "\n")
        return self.stacks

    def stop(self) -> None:
        if self.health:
            self.health.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
