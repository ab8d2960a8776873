"""Writing output files whole or not at all, without replacing what is not a file.

Every output path of envkit (``lock -o``, ``doctor --dump-facts``, ``matrix refresh --output``, a run's
manifest.json) goes through ``write_atomic``, which writes by what the path names:

- ``-``: standard output.
- what the command's own standard output or error already writes to (``-o /dev/stdout``, whether that
  is a terminal, a pipe or ``> out.txt``): that stream, so the order of the output holds and a rename
  does not cut the command's later output off from its file.
- a new path or a regular file: a temporary file in the same folder, renamed over it; readers see the
  old content or the new, never half of it, and on an error nothing is left behind.
- a symbolic link: written through to its target by these same rules (the link stays a link).
- a character device or a FIFO (``/dev/stdout`` on a terminal or a pipe, ``/dev/null``, a named pipe):
  opened and written in place; a rename would replace the node with a regular file.
- anything else (a directory, a socket), or an error while writing: ``WriteError``.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path


class WriteError(OSError):
    """An output that could not be written; ``str()`` is the one line to show ("cannot write PATH: why")."""


def write_atomic(path: str | Path, text: str) -> None:
    data = text.encode()
    if str(path) == "-":
        return _to_stream(sys.stdout, "standard output", data)
    try:
        found = os.stat(path)  # through symbolic links
    except FileNotFoundError:
        found = None  # a new file (or a dangling link: its target is created)
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror}") from None
    stream = _own_stream(found)
    if stream is not None:
        return _to_stream(stream, str(path), data)
    if found is None or stat.S_ISREG(found.st_mode):
        return _replace(path, Path(os.path.realpath(path)), found, data)
    if stat.S_ISCHR(found.st_mode) or stat.S_ISFIFO(found.st_mode):
        return _in_place(path, data)
    what = "a directory" if stat.S_ISDIR(found.st_mode) else "not a file, a device or a pipe"
    raise WriteError(f"cannot write {path}: it is {what}; name a file")


def _replace(path: str | Path, target: Path, existing: os.stat_result | None, data: bytes) -> None:
    """A temporary file beside ``target``, renamed over it; an existing file keeps its mode."""
    if existing is not None and not os.access(target, os.W_OK):
        raise WriteError(f"cannot write {path}: permission denied")
    tmp = None
    try:
        handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        # mkstemp makes it 0600: give it the old file's mode, or the one open() would have
        os.chmod(tmp, stat.S_IMODE(existing.st_mode) if existing else 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
    except OSError as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise


def _in_place(path: str | Path, data: bytes) -> None:
    """A device or a FIFO: open and write (a FIFO waits for its reader, as a shell redirection does)."""
    try:
        with open(os.open(path, os.O_WRONLY | os.O_NOCTTY), "wb") as out:
            out.write(data)
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from None


def _own_stream(found: os.stat_result | None):
    """sys.stdout or sys.stderr when ``found`` is the very file one of them writes to, else None."""
    if found is None:
        return None
    for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
        try:
            mine = os.fstat(fd)
        except OSError:
            continue
        if (mine.st_dev, mine.st_ino) == (found.st_dev, found.st_ino):
            return stream
    return None


def _to_stream(stream, name: str, data: bytes) -> None:
    try:
        stream.flush()
        target = getattr(stream, "buffer", None)
        if target is not None:
            target.write(data)
        else:
            stream.write(data.decode())
        stream.flush()
    except OSError as exc:
        raise WriteError(f"cannot write {name}: {exc.strerror or exc}") from None


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def replace_dir(partial: str | Path, target: str | Path) -> None:
    """Put the complete folder ``partial`` at ``target``: the old one goes only once the new one is whole, so a
    kill leaves the old folder, or none (and a ``.partial`` one), never a half-written ``target``."""
    shutil.rmtree(target, ignore_errors=True)
    os.rename(partial, target)
