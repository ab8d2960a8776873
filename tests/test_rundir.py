"""The output folder before a run: writable, checked before anything loads; one run in it at a time (an flock
the kernel drops when its holder dies, however it dies)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.errors import OutputFolderError
from envkit.train.rundir import LOCK, MARKER, RunBusy, RunLock, check_writable
from tests.conftest import needs_train

HOLD = "import sys, time; from pathlib import Path; from envkit.train.rundir import RunLock; " \
       "RunLock(Path(sys.argv[1])); print('held', flush=True); time.sleep(300)"


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock on tmp_path/run, as a running `envkit train` does."""
    run = tmp_path / "run"
    run.mkdir()
    (run / MARKER).touch()  # the running train took the folder
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "held\n"
    yield run, process
    process.kill()
    process.wait()


def test_a_writable_folder_is_created_and_left_empty_but_for_its_marker(tmp_path):
    check_writable(tmp_path / "a" / "run")
    assert [p.name for p in (tmp_path / "a" / "run").iterdir()] == [MARKER]


def test_a_path_under_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputFolderError, match=r"^cannot write to .*file/run: Not a directory; make it writable, free space"):
        check_writable(tmp_path / "file" / "run")
    with pytest.raises(OutputFolderError, match=r"file is not a folder"):
        check_writable(tmp_path / "file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_folder_is_one_line(tmp_path):
    (tmp_path / "run").mkdir(mode=0o500)
    with pytest.raises(OutputFolderError, match="Permission denied"):
        check_writable(tmp_path / "run")


def test_a_folder_of_another_uid_names_both_uids_and_the_fix(tmp_path, monkeypatch):
    """A host folder mounted into the image (uid 1000) but owned by the caller: the line says to run as the caller."""
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(os, "open", denied)
    monkeypatch.setattr(os, "geteuid", lambda: tmp_path.stat().st_uid + 1000)
    with pytest.raises(OutputFolderError) as caught:
        check_writable(tmp_path / "runs" / "x")
    message = str(caught.value)
    owner = tmp_path.stat().st_uid
    assert message.startswith(f"cannot write to {tmp_path / 'runs' / 'x'}: Permission denied; "
                              f"{tmp_path} belongs to uid {owner}, envkit runs as uid {owner + 1000}")
    assert '--user "$(id -u):$(id -g)"' in message and "\n" not in message
    assert not (tmp_path / "runs").exists()


def test_a_denied_folder_of_ones_own_gets_no_uid_hint(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(OutputFolderError) as caught:
        check_writable(tmp_path / "run")
    assert "uid" not in str(caught.value)


def test_a_full_disk_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputFolderError, match="No space left on device; make it writable, free space, or --output another folder"):
        check_writable(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_lock_names_its_holder_and_goes_with_release(tmp_path):
    lock = RunLock(tmp_path)
    text = (tmp_path / LOCK).read_text()
    assert text.startswith(f"pid {os.getpid()} on ") and ", started " in text
    with pytest.raises(RunBusy, match=f"is in use by another envkit train \\(pid {os.getpid()} on "):
        RunLock(tmp_path)  # a second open file: flock refuses it even in the same process
    lock.release()
    assert not (tmp_path / LOCK).exists()
    RunLock(tmp_path).release()


def test_a_dead_holders_lock_is_stale_and_taken_over(holder):
    run, process = holder
    with pytest.raises(RunBusy, match=f"pid {process.pid} on "):
        RunLock(run)
    process.send_signal(signal.SIGKILL)  # no release: the file stays, naming the dead process
    process.wait()
    assert f"pid {process.pid} on " in (run / LOCK).read_text()
    lock = RunLock(run)
    assert (run / LOCK).read_text().startswith(f"pid {os.getpid()} on ")
    lock.release()


@needs_train
def test_a_second_train_into_a_held_folder_is_refused_in_one_line(holder):
    run, process = holder
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    result = CliRunner().invoke(main, ["train", "tiny", "--output", str(run), "--resume"])
    assert result.exit_code == 1, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith(f"envkit train: {run} is in use by another envkit train (pid {process.pid} on ")
    assert line.endswith("; wait for it to end, or --output another folder")
    assert sorted(p.name for p in run.iterdir()) == [MARKER, LOCK, "metrics.jsonl"]
    assert (run / "metrics.jsonl").read_text() == '{"step": 1}\n'


@needs_train
def test_an_unwritable_output_is_refused_before_anything_loads(tmp_path):
    """In a fresh process: refused with torch not even imported (the model loads seconds after that)."""
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "run"
    probe = ("import sys; from envkit.cli import main\ntry: main(['train', 'tiny', '--output', sys.argv[1]])\n"
             "except SystemExit as exc: print(exc.code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, str(target)], capture_output=True, text=True, timeout=120)
    assert done.stdout == "2 False\n"
    assert done.stderr.splitlines() == [f"envkit train: cannot write to {target}: Not a directory; "
                                        "make it writable, free space, or --output another folder"]
