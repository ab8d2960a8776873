"""A run's output folder before training: writable (checked before anything loads), and one run in it at a time."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from envkit.errors import Failure, OutputFolderError
from envkit.files import claim_folder, open_owned

try:
    import fcntl
except ImportError:  # Windows: no flock; the run goes unguarded, with a warning
    fcntl = None

LOCK = ".envkit-train.lock"
MARKER = ".envkit-run"  # written into the folder a run takes: a folder without it is not a run's (files.claim_folder)


class RunBusy(Failure):
    """Another `envkit train` holds the output folder (exit 1: the run is refused, not misused)."""


def check_writable(folder: Path) -> None:
    """Create the folder, then write, sync and remove a probe file in it: a read-only folder or a full disk
    is one line (exit 2) before the model loads, not a traceback minutes later at the first checkpoint.
    Then take it for the run (MARKER): a folder holding files but no marker is someone else's, and a run
    (``--resume`` too) would replace its README.md, manifest.json and adapter/: refused (exit 2)."""
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{folder} is not a folder: --output a folder for the run")
    probe = None
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # the leaf first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # a new name (O_EXCL): a link planted at a fixed name would have zero-filled its target
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".envkit-probe-")
        try:
            if os.write(fd, b"\0" * 65536) < 65536:  # a few blocks: a full disk may still take an empty file
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            if probe:
                os.unlink(probe)
                probe = None
            for made in created:
                made.rmdir()  # leave no trace of a run that never started
        raise OutputFolderError(f"cannot write to {folder}: {exc.strerror or exc}; "
                                + (_not_owner_fix(folder) if exc.errno in (errno.EACCES, errno.EPERM) else "")
                                + "make it writable, free space, or --output another folder") from None
    finally:
        if probe:
            with contextlib.suppress(OSError):
                os.unlink(probe)
    if not claim_folder(folder, MARKER):
        raise OutputFolderError(f"{folder} holds files envkit train did not write (no {MARKER} in it): --output a "
                                f"new or empty folder (a run of an older envkit: touch {folder / MARKER})")


def _not_owner_fix(folder: Path) -> str:
    """What to do when the folder (or the nearest one that exists) belongs to another uid: typically a host folder
    mounted into the image, which runs as uid 1000 unless told otherwise."""
    if not hasattr(os, "geteuid"):  # Windows
        return ""
    existing = next((p for p in (folder.absolute(), *folder.absolute().parents) if p.exists()), None)
    owner = existing.stat().st_uid if existing else os.geteuid()
    if owner == os.geteuid():
        return ""
    return (f"{existing} belongs to uid {owner}, envkit runs as uid {os.geteuid()} (in a container: "
            f'docker run --user "$(id -u):$(id -g)" ...); ')


class RunLock:
    """One `envkit train` per output folder: an exclusive flock on FOLDER/.envkit-train.lock, taken by the
    main rank for the whole run.  The kernel drops a flock when its process ends, however it ends, so the
    file a crashed run leaves behind is no lock at all and the next run takes it over; what the file says
    (pid, host, start time) only names the holder in the refusal.  A filesystem without flock support
    runs unguarded, with a warning (``warning`` is set)."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK
        self.warning: str | None = None
        self._fd: int | None = None
        if fcntl is None:
            self.warning = f"no flock on this system; a second run into {folder} would not be refused"
            return
        while self._fd is None:
            fd = open_owned(self.path)  # never through a link planted at the name (WriteError: refused)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 512).decode(errors="replace").strip() or "no details"
                os.close(fd)
                raise RunBusy(f"{folder} is in use by another envkit train ({holder}); wait for it to end, "
                              f"or --output another folder") from None
            except OSError as exc:
                os.close(fd)
                self.warning = (f"cannot lock {self.path} ({exc.strerror}); "
                                f"a second run into {folder} would not be refused")
                return
            if _same_file(fd, self.path):
                self._fd = fd
            else:  # a holder finishing removed the file between our open and flock: lock the new one
                os.close(fd)
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode())

    def release(self) -> None:
        """Remove the file, then drop the flock (in this order: whoever opens it next finds no stale text)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = path.lstat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)
