"""The launched run's watchdog (envkit.launch.watchdog): deadlines from what the run measured, the stalled side
named (the vLLM server, rank N, the NCCL group), its Python stacks written, every process ended, one line.

The deadline logic is pure (find_stall); run_processes is exercised on CPU with a fake server that stops answering
and fake ranks (stdlib processes keeping envkit's heartbeat, as envkit.train.heartbeat does in a trainer), one of
which sleeps in a step.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_launch import alive, free_port  # the process and port helpers of the launcher's own tests

from envkit.launch.layout import LaunchLayout, ProcessSpec
from envkit.launch.procs import LaunchFailed, run_processes
from envkit.launch.watchdog import RankBeats, Watchdog, find_stall
from envkit.recipe.schema import WatchdogSpec

SETTINGS = WatchdogSpec(init_s=100, step_multiple=10, step_floor_s=5, sync_floor_s=3, health_s=4, save_s=1)
NOW = 10_000.0


def beat(rank, phase="ready", since=NOW - 1, step=3, step_since=None, step_s=(0.5, 0.6, 0.4), sync_s=(), seq=None):
    """A heartbeat; ``seq``: the phases passed in the step (ready: after all of them)."""
    seq = seq if seq is not None else 99 if phase == "ready" else 5
    return {"rank": rank, "host": "h", "pid": 1, "phase": phase, "since": since, "step": step, "seq": seq,
            "step_since": step_since, "step_s": list(step_s), "sync_s": list(sync_s)}


def stall(beats, ranks=range(2), started=NOW - 50, silent=None):
    return find_stall({b["rank"]: b for b in beats}, ranks, NOW, started, SETTINGS, silent, "http://s/health")


def test_a_run_within_its_deadlines_is_left_alone():
    assert stall([beat(0, "step", step_since=NOW - 4), beat(1)]) is None  # 4 s < the 5 s floor
    assert stall([], started=NOW - 99) is None  # init has 100 s


def test_a_step_deadline_is_a_multiple_of_the_median_step_with_a_floor():
    slow = [beat(0, "step", step_since=NOW - 24, step_s=[2.0, 2.5, 3.0]), beat(1, step_s=[2.0, 2.5, 3.0])]
    assert stall(slow) is None  # 24 s < 10 x the median 2.5 s
    found = stall([beat(0, "step", since=NOW - 26, step_since=NOW - 26, step_s=[2.0]), beat(1, step_s=[2.0])])
    assert found.side == "rank 0" and found.deadline == "20 s: 10 x the median step 2.00 s, floor 5 s"


def test_the_rank_behind_the_others_is_named_not_the_ones_waiting_for_it():
    """Named by how far each got in the step (the phases it passed), not by time: the rank waiting in a collective
    may have entered its phase before the stalled one entered its own (a real run named the wrong rank so)."""
    sleeper = beat(1, "GRPOTrainer.reward", since=NOW - 39, step=4, step_since=NOW - 41, seq=3)
    waiting = beat(0, "GRPOTrainer._calculate_rewards", since=NOW - 40, step=4, step_since=NOW - 41, seq=4)
    found = stall([waiting, sleeper])
    assert found.side == "rank 1" and found.ranks == (1,)
    assert found.what == "in step 4 for 41 s, in GRPOTrainer.reward for 39 s, behind the other ranks"
    between = stall([beat(0, "compute_loss", step=5, step_since=NOW - 30, seq=2), beat(1, "ready", since=NOW - 31)])
    assert between.side == "rank 1" and between.what.startswith("after step 3, in ready for 31 s")


def test_every_rank_in_the_same_collective_is_the_nccl_groups_stall():
    found = stall([beat(r, "compute_loss", since=NOW - 40, step=7, step_since=NOW - 41) for r in range(2)])
    assert found.side == "the NCCL group" and found.ranks == (0, 1) and "a collective none of them leaves" in found.what


def test_a_weight_sync_past_its_deadline_names_the_sync_group():
    found = stall([beat(0, "sync_weights", since=NOW - 20, step_since=NOW - 21, sync_s=[1.0, 1.5, 2.0]), beat(1)])
    assert found.side == "the NCCL group" and found.server and "weight sync to the vLLM server" in found.what
    assert found.deadline == "15 s: 10 x the median weight sync 1.50 s, floor 3 s"


@pytest.mark.parametrize("beats, side, what", [
    ([beat(0), beat(1, "init")], "rank 1", "still in init while the others wait for it"),
    ([beat(0)], "rank 1", "never started (no heartbeat)"),
    ([beat(0, "init"), beat(1, "init")], "the NCCL group", "no rank of ranks 0, 1 finished init"),
])
def test_init_past_its_deadline_names_who_did_not_finish(beats, side, what):
    found = stall(beats, started=NOW - 101)
    assert found.side == side and what in found.what and found.deadline == "100 s, watchdog.init_s"


def test_a_single_rank_in_init_is_not_said_to_keep_others_waiting():
    found = stall([beat(0, "init")], ranks=range(1), started=NOW - 101)
    assert found.side == "rank 0" and found.what == "still in init (model load, process groups), 101 s after the launch"


def test_a_silent_server_is_named_first():
    found = stall([beat(0), beat(1)], silent=4.5)
    assert found.side == "the vLLM server" and found.what == "http://s/health unanswered for 4.5 s" and found.server


# --- run_processes on CPU, fake processes -----------------------------------------------------------------------

PY = sys.executable
RANK = """
import os, sys, time
from pathlib import Path
from envkit.launch.watchdog import BEATS_ENV, RankBeats
rank, stalls_at = int(os.environ["RANK"]), int(sys.argv[1])
beats = RankBeats(Path(os.environ[BEATS_ENV]), rank)
beats.phase("ready")
def a_step_that_sleeps():
    time.sleep(600)
for step in range(1, 10_000):
    beats.step_begin(step)
    beats.phase("compute_loss")
    if rank == 1 and step == stalls_at:
        a_step_that_sleeps()
    time.sleep(0.05)
    beats.step_end()
"""
# Like torchrun: starts the ranks, in sessions of their own, and waits.
LAUNCHER = """
import os, subprocess, sys
ranks = [subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[3]], env={**os.environ, "RANK": str(r)},
                          start_new_session=True) for r in range(int(sys.argv[2]))]
print("ranks", *[p.pid for p in ranks], flush=True)
for p in ranks:
    p.wait()
"""
SERVER = """
import http.server, sys, time
started = time.time()
def the_server_hangs():
    time.sleep(600)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
class Server(http.server.HTTPServer):
    def service_actions(self):  # every turn of serve_forever, asked or not: the stack shows where it hangs
        if time.time() - started > float(sys.argv[2]):
            the_server_hangs()
Server(("127.0.0.1", int(sys.argv[1])), Health).serve_forever(poll_interval=0.05)
"""


def trainer(ranks: int, stalls_at: int) -> ProcessSpec:
    return ProcessSpec("train", [PY, "-c", LAUNCHER, RANK, str(ranks), str(stalls_at)], {}, [])


def run_watched(tmp_path, processes, ranks, settings) -> tuple[str, list[str], Path]:
    lines: list[str] = []
    watchdog = Watchdog(settings, range(ranks), tmp_path / "stacks.txt")
    started = time.monotonic()
    with pytest.raises(LaunchFailed) as failed:
        run_processes(LaunchLayout(False, "test", processes=processes), echo=lines.append, grace_s=1, poll_s=0.1,
                 watchdog=watchdog)
    assert time.monotonic() - started < 30
    assert not watchdog.folder.exists()  # the heartbeats' folder goes with the run
    return str(failed.value), lines, tmp_path / "stacks.txt"


def test_a_rank_that_sleeps_is_named_with_its_stack_and_everything_ends(tmp_path):
    settings = WatchdogSpec(init_s=30, step_multiple=10, step_floor_s=1.5, save_s=1)
    message, lines, stacks = run_watched(tmp_path, [trainer(2, stalls_at=5)], 2, settings)
    print(message)
    assert message.startswith("watchdog: rank 1 stalled: in step 5 for ") and "in compute_loss" in message
    assert "floor 1.5 s" in message and f"Python stacks in {stacks}" in message
    assert "in a_step_that_sleeps" in stacks.read_text()  # rank 1's own stack, from its faulthandler
    pids = [int(p) for line in lines if line.startswith("[train] ranks") for p in line.split()[2:]]
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)


def test_a_server_that_stops_answering_is_named_with_its_stack(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/health"
    server = ProcessSpec("vllm", [PY, "-c", SERVER, str(port), "1.5"], {}, [], health_url=url, health_timeout_s=20)
    settings = WatchdogSpec(init_s=30, step_floor_s=60, health_s=2, save_s=1)
    message, lines, stacks = run_watched(tmp_path, [server, trainer(1, stalls_at=0)], 1, settings)
    print(message)
    assert message.startswith(f"watchdog: the vLLM server stalled: {url} unanswered for ")
    assert "(deadline 2 s, watchdog.health_s)" in message and "every process of the run was ended" in message
    assert "in the_server_hangs" in stacks.read_text()  # SIGABRT with PYTHONFAULTHANDLER=1: where it hung
    assert any("[envkit] watchdog: asking the trainer to save a checkpoint" in line for line in lines)


def test_a_heartbeat_that_cannot_be_written_never_fails_the_rank(tmp_path):
    """The launcher's teardown removes the heartbeats' folder; a rank still saving its checkpoint goes on."""
    beats = RankBeats(tmp_path / "gone", 0)  # no such folder
    beats.step_begin(1)
    beats.step_end()
    assert beats.beat["step_s"] and not (tmp_path / "gone").exists()


SLEEPY = """import os
import time

calls = 0


def reward(completions, **_):
    global calls
    calls += 1
    if os.environ.get("RANK") == "1" and calls == 2:
        time.sleep(600)
    return [0.0] * len(completions)
"""


@pytest.mark.train
def test_a_real_rank_stalled_in_a_reward_is_named_with_its_stack(tmp_path):
    """`envkit train` with 2 CPU ranks whose rank 1 hangs in a reward function in step 2: the heartbeat
    (envkit.train.heartbeat, TRL's spans) says where, the launcher's watchdog ends the run."""
    pytest.importorskip("trl")
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "sleepy.py").write_text(SLEEPY)
    recipe = (root / "recipes" / "tiny.yaml").read_text().replace(
        "path: data/toy.jsonl", f"path: {root / 'recipes' / 'data' / 'toy.jsonl'}").replace(
        "  - {name: digits, weight: 1.0}\n", "  - {name: digits, weight: 1.0}\n  - {name: sleepy:reward}\n")
    (tmp_path / "r.yaml").write_text(recipe + "resources: {training_gpus: 2}\n"
                                     "watchdog: {step_floor_s: 5, step_multiple: 5, save_s: 5}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "envkit", "train", str(tmp_path / "r.yaml"), "--max-steps", "4",
                           "--output", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    print(last)
    assert done.returncode == 1 and last.startswith("envkit train: watchdog: rank 1 stalled: in step 2 for ")
    assert "in GRPOTrainer.reward for " in last and "floor 5 s" in last
    stacks = (tmp_path / "run" / "watchdog-stacks.txt").read_text()
    assert f'File "{tmp_path / "sleepy.py"}", line 11 in reward' in stacks  # rank 1's time.sleep
