"""Writing output files whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename: no half-written file on error."""
    target = Path(path)
    handle, tmp = tempfile.mkstemp(dir=target.parent or ".", prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; give it the mode open() would have
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def replace_dir(partial: str | Path, target: str | Path) -> None:
    """Put the complete folder ``partial`` at ``target``: the old one goes only once the new one is whole, so a
    kill leaves the old folder, or none (and a ``.partial`` one), never a half-written ``target``."""
    shutil.rmtree(target, ignore_errors=True)
    os.rename(partial, target)
