"""Find what makes `Dataset.from_list` raise dill's PicklingError on MonthDayNano in one environment (EK605, issue #25).

Self-contained (stdlib only; no envkit import), for the GPU machine where the lock's wheels sit in /tmp/site:

    PYTHONPATH=/tmp/site python3 benchmarks/ek605_bisect.py --out ek605.json   # a bundle staged before 2026-12-07

Each variant runs the repro (Dataset.from_list + map, as grpo_bench does) in its own interpreter, 16 at a time,
60 s each, the whole run under 4 minutes:
- ``isolated``: ``python -S``: the stdlib and PYTHONPATH only (no site, no .pth file);
- ``as-site-packages``: the same, with each PYTHONPATH entry reached through a symlink named ``site-packages``
  (dill 0.4.1 pickles a module by value unless its path has 'site-packages' or lies under sys.prefix);
- ``normal``: the interpreter's usual start-up (site-packages and their .pth files);
- ``pth:FILE``: isolated, then that one .pth file of the site-packages processed;
- ``import:NAME``: isolated with the site-packages appended to sys.path, then that top-level module imported first.
It prints one JSON object (also written to --out): the versions seen, each variant's outcome and the failing ones.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MARK = "EK605-RESULT "
REPRO = r'''
import json, sys
result = {}
try:
    from datasets import Dataset
    Dataset.from_list([{"prompt": "a"}, {"prompt": "b"}]).map(lambda row: {"n": len(row["prompt"])})
    result["ok"] = True
except Exception as error:
    result.update(ok=False, error=f"{type(error).__name__}: {error}"[:400])
for name in ("dill", "multiprocess", "pyarrow", "datasets"):
    module = sys.modules.get(name)
    result[name] = module and [getattr(module, "__version__", "?"), getattr(module, "__file__", None)]
try:
    import dill._dill, pyarrow
    result["dill_pickles_pyarrow_by_reference"] = dill._dill._is_builtin_module(pyarrow)
except Exception as error:
    result["dill_pickles_pyarrow_by_reference"] = repr(error)
result["python"] = sys.version.split()[0]
print("''' + MARK + '''" + json.dumps(result))
'''


def run(name: str, python: str, flags: list[str], preamble: str, env: dict[str, str], timeout: float) -> dict:
    start = time.monotonic()
    try:
        done = subprocess.run([python, *flags, "-c", preamble + REPRO], env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"variant": name, "ok": None, "error": f"timed out after {timeout:.0f} s"}
    line = next((x for x in done.stdout.splitlines() if x.startswith(MARK)), None)
    found = json.loads(line[len(MARK):]) if line else {"ok": None, "error": (done.stderr or done.stdout)[-400:]}
    return {"variant": name, **found, "seconds": round(time.monotonic() - start, 1)}


def site_dirs(python: str) -> list[str]:
    code = "import json, site; print(json.dumps(site.getsitepackages() + [site.getusersitepackages()]))"
    found = subprocess.run([python, "-c", code], capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    return [d for d in json.loads(found.stdout or "[]") if Path(d).is_dir()]


def top_level(site: str) -> list[str]:
    """Importable top-level names in ``site``: each dist's top_level.txt, else its packages and modules."""
    names = set()
    for info in Path(site).glob("*.dist-info"):
        listed = info / "top_level.txt"
        names |= set(listed.read_text().split()) if listed.exists() else set()
    for entry in Path(site).iterdir():
        if (entry / "__init__.py").exists() or entry.suffix == ".py":
            names.add(entry.stem if entry.suffix == ".py" else entry.name)
    return sorted(n for n in names if n.isidentifier() and not n.startswith("_"))


def variants(pythonpath: list[str], sites: list[str], scratch: Path) -> list[tuple[str, list[str], str, str]]:
    """(name, flags, preamble, PYTHONPATH) of every variant."""
    joined = os.pathsep.join(pythonpath)
    linked = []
    for i, entry in enumerate(pythonpath):
        link = scratch / str(i) / "site-packages"
        link.parent.mkdir(parents=True)
        link.symlink_to(Path(entry).resolve())
        linked.append(str(link))
    found = [("isolated", ["-S"], "", joined), ("as-site-packages", ["-S"], "", os.pathsep.join(linked)),
             ("normal", [], "", joined)]
    for site in sites:
        for pth in sorted(Path(site).glob("*.pth")):
            preamble = f"import site; site.addpackage({site!r}, {pth.name!r}, set())\n"
            found.append((f"pth:{pth}", ["-S"], preamble, joined))
        for name in top_level(site):
            preamble = (f"import sys; sys.path.append({site!r})\n"
                        f"try:\n    import {name}\nexcept BaseException:\n    pass\n")
            found.append((f"import:{name}", ["-S"], preamble, joined))
    return found


def verdict(results: list[dict]) -> str:
    by = {r["variant"]: r for r in results}
    failing = [r["variant"] for r in results if r["ok"] is False]
    if not failing:
        return "the repro passes in every variant: not reproduced here"
    if by["isolated"]["ok"] is False:
        where = ("passes when the same folders are reached through a 'site-packages' path: the trigger is the install "
                 "folder (dill pickles pyarrow by value)" if by["as-site-packages"]["ok"] else
                 "fails with a 'site-packages' path too: the trigger is in the PYTHONPATH packages themselves")
        return f"fails with only the stdlib and PYTHONPATH; {where}"
    return "fails only with: " + ", ".join(failing)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--pythonpath", default=os.environ.get("PYTHONPATH", ""), help="default: $PYTHONPATH")
    parser.add_argument("--site", action="append", help="site-packages to bisect (default: the interpreter's)")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--budget", type=float, default=220, help="seconds for the whole run")
    parser.add_argument("--out")
    args = parser.parse_args()
    pythonpath = [p for p in args.pythonpath.split(os.pathsep) if p]
    deadline = time.monotonic() + args.budget - args.timeout
    with tempfile.TemporaryDirectory() as scratch:
        todo = variants(pythonpath, args.site or site_dirs(args.python), Path(scratch))

        def one(item):
            name, flags, preamble, path = item
            if time.monotonic() > deadline:
                return {"variant": name, "ok": None, "error": "not run: over the time budget"}
            env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", scratch), "PYTHONPATH": path,
                   "HF_DATASETS_CACHE": str(Path(scratch) / "hf"), "HF_HUB_OFFLINE": "1"}
            return run(name, args.python, flags, preamble, env, args.timeout)

        with ThreadPoolExecutor(args.workers) as pool:
            results = list(pool.map(one, todo))
    isolated = results[0]
    report = {"python": isolated.get("python"), "pythonpath": pythonpath,
              "versions": {n: isolated.get(n) for n in ("dill", "multiprocess", "pyarrow", "datasets")},
              "verdict": verdict(results), "failing": [r["variant"] for r in results if r["ok"] is False],
              "variants": results}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
