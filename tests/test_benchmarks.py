"""The benchmark harness (benchmarks/grpo_bench.py): what it promises about the runs it starts."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from grpo_bench import run_arm  # noqa: E402


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_run_arm_leaves_nothing_behind(tmp_path):
    """A run that exits at once but leaves a busy child (as os._exit does) has it killed before the next arm."""
    pidfile = tmp_path / "child.pid"
    script = f"import subprocess; p = subprocess.Popen(['sleep', '300']); open({str(pidfile)!r}, 'w').write(str(p.pid))"
    code = run_arm([sys.executable, "-c", script], tmp_path / "arm.log", timeout=30)
    assert code == 0
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_run_arm_times_out_and_kills(tmp_path):
    started = time.monotonic()
    code = run_arm([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(300)"], tmp_path / "arm.log", timeout=1)
    assert code == "timeout"
    assert time.monotonic() - started < 30
    assert (tmp_path / "arm.log").read_text().strip() == "up"


def test_run_arm_lets_a_timed_out_run_clean_up_first(tmp_path):
    """`envkit train` answers SIGTERM by stopping its server and ranks, which live in sessions of their own."""
    script = ("import signal, sys, time\n"
              "def bye(*a):\n    print('stopped my processes', flush=True); sys.exit(143)\n"
              "signal.signal(signal.SIGTERM, bye)\nprint('up', flush=True)\ntime.sleep(300)")
    code = run_arm([sys.executable, "-c", script], tmp_path / "arm.log", timeout=1, stop_s=10)
    assert code == "timeout"
    assert (tmp_path / "arm.log").read_text().split() == ["up", "stopped", "my", "processes"]
