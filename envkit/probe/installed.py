"""Which distributions ``sys.path`` holds, from the dist-info folder names alone (no METADATA read)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from packaging.utils import canonicalize_name


def dist_folders(path: list[str] | None = None) -> dict[str, Path]:
    """Each distribution's dist-info (or egg-info) folder by canonical name; the first entry on the path wins,
    as it does for imports and for ``importlib.metadata``.

    Listing folder names instead of reading each METADATA keeps this at a few milliseconds for environments
    of hundreds of packages.
    """
    found: dict[str, Path] = {}
    for entry in sys.path if path is None else path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            stem, _, suffix = name.rpartition(".")
            if suffix in ("dist-info", "egg-info") and "-" in stem:
                found.setdefault(canonicalize_name(stem.partition("-")[0]), Path(entry or ".", name))
    return found


def installed_versions(folders: dict[str, Path]) -> dict[str, str]:
    """Every distribution of a ``dist_folders`` scan, canonical name -> version (what ``pip check`` needs)."""
    versions = {name: folder.name.rpartition(".")[0].partition("-")[2].partition("-")[0]
                for name, folder in folders.items()}
    return dict(sorted(versions.items()))


def outside_site_packages(folders: dict[str, Path], prefixes: list[str] | None = None) -> list[str]:
    """The distributions of a ``dist_folders`` scan installed outside every Python prefix in a folder whose path
    has no ``site-packages`` (``pip install --target DIR`` on ``PYTHONPATH``). dill takes a module's location for
    whether it is importable: such modules it pickles by value, whole (EK605; dill's ``_is_builtin_module``)."""
    roots = [os.path.realpath(p) for p in (prefixes if prefixes is not None else
                                           {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix})]
    outside = {}  # per sys.path entry: most distributions share one
    for folder in {folder.parent for folder in folders.values()}:
        where = os.path.realpath(folder)
        outside[folder] = "site-packages" not in f"{folder}{where}" and not any(
            where == root or where.startswith(root + os.sep) for root in roots)
    return sorted(name for name, folder in folders.items() if outside[folder.parent])
