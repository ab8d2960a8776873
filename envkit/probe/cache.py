"""The stack packages' probed facts, kept between runs while the installed packages stay the same (issue #16).

Reading the stack's METADATA and the ELF files of its compiled extensions (torch, vLLM, xformers ...) was about a
quarter of a doctor run with vLLM 0.26's stack installed (0.07 s of 0.31 s on an H200, 0.06 s of 0.21 s on a CPU box
with the same files: benchmarks/results/2026-12-01-h200-doctor.json). Those facts change only when a package is
installed, removed or reinstalled, and each of these rewrites the package's dist-info folder. So the result is
stored with the path and modification time of every stack package's dist-info folder on ``sys.path`` (and of its
RECORD and METADATA), and with the probe's own code; a run reuses it only while all of them match, and probes
afresh otherwise.

The cache holds package facts only (versions, Requires-Dist, linked libraries): no environment variable, no
path outside the installed packages.  ``ENVKIT_CACHE_DIR`` moves it (default ``$XDG_CACHE_HOME/envkit`` or
``~/.cache/envkit``); ``ENVKIT_NO_CACHE=1`` turns it off.  A cache that cannot be read or written is ignored:
the doctor then probes as if there were none.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from packaging.utils import canonicalize_name

from envkit import __version__
from envkit.binding import Binder
from envkit.facts import Package
from envkit.files import read_regular
from envkit.knowledge import PROBED_PACKAGES

FORMAT = 2  # 2: the key holds each METADATA's time
MAX_BYTES = 16 * 2**20  # the stack's facts are a few KB
# The code whose output is cached: a changed probe (an envkit upgrade, or an edit in a checkout) re-probes.
PROBE_CODE = ("packages.py", "elf.py", "cache.py", "../facts.py")


def cache_dir(environ: dict[str, str]) -> Path | None:
    if environ.get("ENVKIT_NO_CACHE", "") not in ("", "0"):
        return None
    if environ.get("ENVKIT_CACHE_DIR"):
        return Path(environ["ENVKIT_CACHE_DIR"])
    base = cache_home(environ)
    return base / "envkit" if base else None


def cache_home(environ: dict[str, str]) -> Path | None:
    """``$XDG_CACHE_HOME`` when it is an absolute path, else ``$HOME/.cache``; None without either.  A relative or
    empty XDG_CACHE_HOME is ignored, as the XDG spec says (it made cache folders in the working directory)."""
    xdg = environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg)
    home = environ.get("HOME", "")
    return Path(home, ".cache") if os.path.isabs(home) else None


def cache_file(environ: dict[str, str]) -> Path | None:
    """One file per Python environment (``sys.prefix``): two virtualenvs used in turn keep a cache each."""
    where = cache_dir(environ)
    return where / f"packages-{hashlib.sha256(sys.prefix.encode()).hexdigest()[:16]}.json" if where else None


def cached_packages(environ: dict[str, str], installed: dict[str, Path]) -> dict[str, Package]:
    """The stack packages' facts: from the cache when nothing they derive from has changed, probed otherwise.
    ``installed``: the dist-info folders on sys.path (envkit.probe.installed.dist_folders)."""
    stack = {canonicalize_name(name) for name in PROBED_PACKAGES}
    folders = {name: folder for name, folder in installed.items() if name in stack}
    key = _key(folders)
    path = cache_file(environ)
    stored = _read(path, key) if path else None
    if stored is not None:
        return stored
    from envkit.probe.packages import probe_packages  # importlib.metadata: imported only on a miss

    packages = probe_packages()
    # Stored only when the folder scan saw exactly the packages importlib.metadata found: one it found some
    # other way (an unusual finder) would change without changing the key.
    if path and {canonicalize_name(name) for name in packages} == set(folders):
        _write(path, key, packages)
    return packages


def _key(folders: dict[str, Path]) -> dict:
    here = Path(__file__).parent
    return {
        "format": FORMAT,
        "envkit": __version__,
        "code": [_mtime(here / name) for name in PROBE_CODE],
        # METADATA too: edited in place (a hand fix, a patching tool) it changes neither the folder nor RECORD
        "packages": {name: [str(folder), _mtime(folder), _mtime(folder / "RECORD"), _mtime(folder / "METADATA")]
                     for name, folder in sorted(folders.items())},
    }


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _read(path: Path, key: dict) -> dict[str, Package] | None:
    try:
        data = json.loads(read_regular(path, MAX_BYTES))  # a FIFO planted there: refused, not waited on
    except (OSError, ValueError, RecursionError):  # unreadable, not UTF-8 or not JSON, nested too deeply
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    binder = Binder(strict=True, mapping="an object")
    packages = binder.value(dict[str, Package], data.get("packages"), "packages")
    return None if binder.problems else packages


def _write(path: Path, key: dict, packages: dict[str, Package]) -> None:
    from envkit.files import WriteError, write_owned  # shutil and tempfile: imported only when writing

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_owned(path, json.dumps({"key": key, "packages": {n: asdict(p) for n, p in packages.items()}}) + "\n")
    except (OSError, WriteError):
        pass  # a read-only home or cache folder: the next run probes again
