"""Time `envkit doctor` against `trl env` on the same machine: whole-process wall clock, median of N.

    python benchmarks/doctor_startup.py [--runs 7] [--out results.json]

Both are started as fresh processes, as a user would run them; `trl env` is
run only where trl is installed.  Prints a table and optionally writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from importlib.util import find_spec

COMMANDS = {
    "envkit doctor": [sys.executable, "-m", "envkit", "doctor"],
    "envkit doctor --json": [sys.executable, "-m", "envkit", "doctor", "--json"],
    "trl env": [sys.executable, "-c", "import sys; from trl.cli import main; sys.exit(main(['env']))"],
}


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    results = {}
    for name, command in COMMANDS.items():
        if name.startswith("trl") and find_spec("trl") is None:
            print(f"{name:24} skipped: trl is not installed")
            continue
        wall(command)  # warm the page cache once, as a second invocation by a user would
        times = [wall(command) for _ in range(args.runs)]
        results[name] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": args.runs}
        print(f"{name:24} median {results[name]['median_s']:.3f} s  (min {min(times):.3f}, max {max(times):.3f}, n={args.runs})")
    if args.out:
        with open(args.out, "w") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    main()
