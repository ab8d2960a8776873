"""Time `envkit doctor` against `trl env` on the same machine: whole-process wall clock, median of N.

    python benchmarks/doctor_startup.py [--runs 7] [--out results.json]

All are started as fresh processes, as a user would run them; `trl env` is
run only where trl is installed.  The doctor is timed with its package cache
(a second run on an unchanged machine: envkit/probe/cache.py) and without it
(ENVKIT_NO_CACHE=1: what a first run or a changed machine costs), next to a
bare `python -c pass`, the interpreter's own start-up.  Prints a table and
optionally writes JSON.  On a machine with PYTHONDONTWRITEBYTECODE=1 and
packages installed with --no-compile (the GPU device bundle), every run compiles
what it imports, `trl env` and the doctor alike; `python -m compileall` of the
site folder and envkit first gives what a pip install leaves.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from importlib.util import find_spec

DOCTOR = [sys.executable, "-m", "envkit", "doctor"]
NO_CACHE = {"ENVKIT_NO_CACHE": "1"}
# name: (command, environment added)
COMMANDS = {
    "python -c pass": ([sys.executable, "-c", "pass"], {}),
    "envkit doctor": (DOCTOR, {}),
    "envkit doctor --json": ([*DOCTOR, "--json"], {}),
    "envkit doctor, no cache": (DOCTOR, NO_CACHE),
    "trl env": ([sys.executable, "-c", "import sys; from trl.cli import main; sys.exit(main(['env']))"], {}),
}


def wall(command: list[str], extra: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env={**os.environ, **extra})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    results = {}
    for name, (command, extra) in COMMANDS.items():
        if name.startswith("trl") and find_spec("trl") is None:
            print(f"{name:24} skipped: trl is not installed")
            continue
        wall(command, extra)  # warm the page cache (and the doctor's cache) once, as a second run by a user would
        times = [wall(command, extra) for _ in range(args.runs)]
        results[name] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": args.runs}
        print(f"{name:24} median {results[name]['median_s']:.3f} s  (min {min(times):.3f}, max {max(times):.3f}, n={args.runs})")
    if args.out:
        with open(args.out, "w") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    main()
