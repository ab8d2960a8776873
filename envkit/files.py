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
- anything else (a directory, a socket), or an error while writing: ``OutputError`` (a ``WriteError``).

The files envkit names itself inside a folder (a run's manifest.json, run.png and lock, the probe cache) are
another matter: whoever can write that folder may have planted a link there to one of the user's files.  They
go through ``write_owned``, ``open_owned`` and ``fresh_dir``, which never follow a link they did not create:
a new name is created with O_EXCL (a temporary file renamed over the name, which replaces a link rather than
writing through it), an opened one with O_NOFOLLOW and checked to be a plain file with no other name; what they
cannot write is an ``OwnFileError``.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from envkit.errors import Failure, UsageError


JSON_BYTES = 64 * 2**20  # a JSON file a folder supplies (a manifest, a config.json, a trainer_state.json)


class WriteError(OSError):
    """An output that could not be written; ``str()`` is the one line to show ("cannot write PATH: why").
    Raised as one of its two kinds, which differ in whose path it was and so in the exit code."""


class OutputError(WriteError, UsageError):
    """A path the user named (``-o``, ``--dump-facts``, ``--output``): exit 2, as any bad input."""


class OwnFileError(WriteError, Failure):
    """A file envkit names itself in a folder (a run's lock, manifest.json, metrics.jsonl, run.png): exit 1,
    the input was fine (and a run that got that far is saved)."""


def write_atomic(path: str | Path, text: str) -> None:
    data = text.encode()
    if str(path) == "-":
        return _to_stream(sys.stdout, "standard output", data)
    try:
        found = os.stat(path)  # through symbolic links
    except FileNotFoundError:
        found = None  # a new file (or a dangling link: its target is created)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    stream = _own_stream(found)
    if stream is not None:
        return _to_stream(stream, str(path), data)
    if found is None or stat.S_ISREG(found.st_mode):
        return _replace(path, Path(os.path.realpath(path)), found, data, OutputError)
    if stat.S_ISCHR(found.st_mode) or stat.S_ISFIFO(found.st_mode):
        return _in_place(path, data)
    what = "a directory" if stat.S_ISDIR(found.st_mode) else "not a file, a device or a pipe"
    raise OutputError(f"cannot write {path}: it is {what}; name a file")


def read_regular(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (links followed), at most ``limit`` of them; anything a user or
    a folder supplies is read through here.  A FIFO, a device (/dev/zero), a socket or a folder is refused
    before a byte is read (opened non-blocking: a FIFO without a writer does not wait), and a larger file
    after ``limit`` bytes, never read to its end: an OSError whose ``strerror`` says which."""
    data = read_regular_head(path, limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {_size(limit)}")
    return data


def read_regular_head(path: str | Path, size: int) -> bytes:
    """The first ``size`` bytes (or fewer) of the regular file at ``path``: read_regular's checks, no size limit."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a pipe, a device or a folder)")
        return handle.read(size)


def _size(limit: int) -> str:
    if limit >= 2**20:
        return f"{limit // 2**20} MiB"
    return f"{limit // 2**10} KiB" if limit >= 2**10 else f"{limit} bytes"


def write_owned(path: str | Path, data: str | bytes) -> None:
    """Write a file envkit names itself: a new temporary file in the same folder, renamed over ``path``; a link
    or another file lying there is replaced, never written through.  A folder there is a WriteError."""
    data = data.encode() if isinstance(data, str) else data
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        found = None
    except OSError as exc:
        raise OwnFileError(f"cannot write {path}: {exc.strerror}") from None
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise OwnFileError(f"cannot write {path}: it is a directory, where envkit writes a file; remove it")
    _replace(path, Path(path), found if found is not None and stat.S_ISREG(found.st_mode) else None, data, OwnFileError)


def open_owned(path: str | Path) -> int:
    """A read-write descriptor of the file envkit keeps at ``path`` (a lock file), created when missing: never
    through a link (O_NOFOLLOW), never a FIFO or device (O_NONBLOCK, then checked), never a file that also
    has another name (a hard link to a user's file).  Anything else is a WriteError naming the fix."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        why = "it is a symbolic link" if os.path.islink(path) else exc.strerror
        raise OwnFileError(f"cannot write {path}: {why}; envkit writes only a file of its own there: "
                           "remove it") from None
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode) or found.st_nlink != 1:
        os.close(fd)
        why = "not a regular file" if not stat.S_ISREG(found.st_mode) else "a file with another name (a hard link)"
        raise OwnFileError(f"cannot write {path}: it is {why}; envkit writes only a file of its own there: remove it")
    return fd


def fresh_dir(path: str | Path) -> None:
    """An empty folder at ``path`` made by this call: whatever was there (a leftover folder, a link to
    someone's folder, a file) is removed first, a link as a link, never what it points to."""
    remove(path)
    os.mkdir(path)


def claim_folder(folder: str | Path, marker: str) -> bool:
    """Whether envkit may write into ``folder``: it holds envkit's ``marker`` file (written when envkit took
    it), or it is empty, and then it is marked now.  A folder holding anything else is the user's: False."""
    path = Path(folder, marker)
    if os.path.lexists(path):
        return stat.S_ISREG(os.lstat(path).st_mode)
    with os.scandir(folder) as entries:
        if next(entries, None) is not None:
            return False
    write_owned(path, "")
    return True


def remove(path: str | Path) -> None:
    """Remove ``path`` without following it: a link or a file is unlinked, a folder removed with its content."""
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _replace(path: str | Path, target: Path, existing: os.stat_result | None, data: bytes,
             error: type[WriteError]) -> None:
    """A temporary file beside ``target``, renamed over it; an existing file keeps its mode.  ``error``: the kind
    of WriteError a failure is (whose path it was)."""
    if existing is not None and not os.access(target, os.W_OK):
        raise error(f"cannot write {path}: permission denied")
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
        raise error(f"cannot write {path}: {exc.strerror or exc}") from None
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
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


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
        raise OutputError(f"cannot write {name}: {exc.strerror or exc}") from None


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def replace_dir(partial: str | Path, target: str | Path) -> None:
    """Put the complete folder ``partial`` at ``target``: the old one goes only once the new one is whole, so a
    kill leaves the old folder, or none (and a ``.partial`` one), never a half-written ``target``."""
    remove(target)
    os.rename(partial, target)
