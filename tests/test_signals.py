"""`envkit` as a container's entrypoint (PID 1): SIGTERM must end it, where the kernel would ignore it
without a handler (envkit.cli.run installs one for every command)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SLEEPY = """import pathlib, time
pathlib.Path("started").write_text("")
time.sleep(60)


def reward(completions, **_):
    return [0.0] * len(completions)
"""


def _pid_namespaces_work() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True).returncode == 0


@pytest.mark.train
@pytest.mark.skipif(not _pid_namespaces_work(), reason="needs root and unshare (a PID namespace of its own)")
def test_sigterm_ends_envkit_running_as_pid_1(tmp_path):
    """Before training starts (here: a recipe's reward module still importing, before the model loads),
    `docker stop` must not have to wait for its SIGKILL."""
    (tmp_path / "sleepy.py").write_text(SLEEPY)
    recipe = (RECIPES / "tiny.yaml").read_text().replace("path: data/toy.jsonl", f"path: {RECIPES / 'data' / 'toy.jsonl'}")
    recipe = recipe.replace("  - {name: length, weight: 0.1}\n", "  - {name: length, weight: 0.1}\n  - {name: sleepy:reward}\n")
    (tmp_path / "r.yaml").write_text(recipe)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    # A real run: loading a recipe (--dry-run) no longer imports its reward modules; training does, before the model.
    outer = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-m", "envkit", "train", "r.yaml",
                              "--output", "run"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert outer.poll() is None, outer.stderr.read()
            assert time.monotonic() < deadline, "envkit never imported the recipe's reward module"
            time.sleep(0.05)
        envkit = int(Path(f"/proc/{outer.pid}/task/{outer.pid}/children").read_text().split()[0])
        nspid = next(line for line in Path(f"/proc/{envkit}/status").read_text().splitlines() if line.startswith("NSpid:"))
        assert nspid.split()[-1] == "1"  # it is its namespace's init, as in a container
        os.kill(envkit, 15)
        assert outer.wait(timeout=10) == 143
    finally:
        outer.kill()
        outer.wait()
