"""One writer for every output path: files are replaced whole, what is not a file is never replaced by one,
and what cannot be written is one line from each command that writes."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.files import WriteError, write_atomic, write_owned

FACTS = Path(__file__).parent / "fixtures" / "facts" / "h100-vllm0.26-trl1.16.json"


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_new_file_gets_the_mode_open_would_give(tmp_path):
    write_atomic(tmp_path / "out.json", "new\n")
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "out.json").read_text() == "new\n"
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o666 & ~umask
    assert leftovers(tmp_path) == []


def test_regular_file_is_replaced_and_keeps_its_mode(tmp_path):
    out = tmp_path / "facts.json"
    out.write_text("old")
    out.chmod(0o600)  # a private file stays private
    write_atomic(out, "new")
    assert out.read_text() == "new" and stat.S_IMODE(out.stat().st_mode) == 0o600


def test_dash_is_stdout(capfdbinary, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_atomic("-", "to stdout\n")
    assert capfdbinary.readouterr().out == b"to stdout\n" and list(tmp_path.iterdir()) == []  # no file named "-"


def test_symlink_to_a_file_writes_its_target_and_stays_a_link(tmp_path):
    (tmp_path / "real.json").write_text("old")
    (tmp_path / "link.json").symlink_to("real.json")
    write_atomic(tmp_path / "link.json", "new")
    assert (tmp_path / "link.json").is_symlink() and (tmp_path / "real.json").read_text() == "new"
    assert leftovers(tmp_path) == []


def test_dangling_symlink_creates_its_target(tmp_path):
    (tmp_path / "link.json").symlink_to("made.json")
    write_atomic(tmp_path / "link.json", "new")
    assert (tmp_path / "link.json").is_symlink() and (tmp_path / "made.json").read_text() == "new"


def test_character_device_is_written_in_place(tmp_path):
    (tmp_path / "null").symlink_to("/dev/null")  # a rename would put a regular file here
    write_atomic(tmp_path / "null", "gone")
    assert (tmp_path / "null").is_symlink() and stat.S_ISCHR((tmp_path / "null").stat().st_mode)


def test_full_device_is_one_line_and_leaves_nothing(tmp_path):
    (tmp_path / "full").symlink_to("/dev/full")
    with pytest.raises(WriteError) as caught:
        write_atomic(tmp_path / "full", "x" * 100_000)
    assert str(caught.value) == f"cannot write {tmp_path / 'full'}: No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"] and (tmp_path / "full").is_symlink()


def test_disk_full_while_replacing_keeps_the_old_file(tmp_path, monkeypatch):
    out = tmp_path / "lock.txt"
    out.write_text("old")
    real_fdopen = os.fdopen

    class Full:  # the temporary file's writes fail as on a full disk
        def __init__(self, fd, mode):
            self.file = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdopen", Full)
    with pytest.raises(WriteError, match="No space left on device"):
        write_atomic(out, "new")
    assert out.read_text() == "old" and leftovers(tmp_path) == []


def test_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    write_atomic(fifo, "through the pipe")
    reader.join(5)
    assert got == ["through the pipe"] and stat.S_ISFIFO(fifo.lstat().st_mode)


@pytest.mark.parametrize("where, why", [
    ("", "it is a directory"),
    ("no/such/folder/out.json", "No such file or directory"),
])
def test_directory_or_missing_folder_is_a_write_error(tmp_path, where, why):
    with pytest.raises(WriteError, match=why):
        write_atomic(tmp_path / where, "x")
    assert tmp_path.is_dir() and leftovers(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_read_only_file_is_not_replaced(tmp_path):
    out = tmp_path / "ro.json"
    out.write_text("old")
    out.chmod(0o444)
    with pytest.raises(WriteError, match="permission denied"):
        write_atomic(out, "new")
    assert out.read_text() == "old"


@pytest.mark.parametrize("stdout_is", ["file", "pipe"])
def test_dev_stdout_keeps_the_report_after_the_facts(tmp_path, stdout_is):
    """`--dump-facts /dev/stdout > out.txt`: a rename over out.txt would send the report after it nowhere.
    (/proc/self/fd/1 through a link of our own: a writer that renames would replace only that link, not /dev/stdout.)"""
    (tmp_path / "stdout").symlink_to("/proc/self/fd/1")
    command = [sys.executable, "-m", "envkit", "doctor", "--facts", str(FACTS), "--dump-facts", str(tmp_path / "stdout")]
    if stdout_is == "file":
        with (tmp_path / "out.txt").open("w") as handle:
            subprocess.run(command, stdout=handle, check=False, timeout=60)
        text = (tmp_path / "out.txt").read_text()
    else:
        text = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60).stdout
    assert text.startswith("{") and '"schema": "envkit.facts/1"' in text and "checks passed" in text
    assert (tmp_path / "stdout").is_symlink()


# --- every command that writes turns a bad output path into one line ----------------------------------------

def _lock(monkeypatch, out):
    class Locked:
        text, seconds, online = "x==1\n", 0.0, False

        def pins(self):
            return ["x"]

    monkeypatch.setattr("envkit.build.cli._recipe_stack", lambda *a: (None, None, type("S", (), {"platform": "p", "python": "3"}), None))
    monkeypatch.setattr("envkit.build.lock.lock", lambda *a: Locked())
    return ["lock", "--recipe", "tiny", "--target", "cpu", "-o", out]


def _refresh(monkeypatch, out):
    monkeypatch.setattr("envkit.knowledge.refresh.refresh", lambda *a: {"packages": {}})
    return ["matrix", "refresh", "--package", "trl", "--output", out]


def _train(monkeypatch, out):  # as the runner writes manifest.json: a file envkit names itself (OwnFileError)
    monkeypatch.setattr("envkit.train.cli._train", lambda *a: write_owned(Path(out), json.dumps({})))
    return ["train", "tiny"]


@pytest.mark.parametrize("command, code", [
    (lambda mp, out: ["doctor", "--facts", str(FACTS), "--dump-facts", out], 2),
    (_lock, 2),
    (_refresh, 2),
    (_train, 1),  # the run is done and saved; its manifest.json is not
])
def test_each_command_says_a_directory_is_not_a_file_in_one_line(tmp_path, monkeypatch, command, code):
    result = CliRunner().invoke(main, command(monkeypatch, str(tmp_path)))
    assert result.exit_code == code, result.output
    assert f"cannot write {tmp_path}: it is a directory" in result.output
    lines = [line for line in result.output.strip().splitlines() if line != "reading release metadata"]  # refresh's progress
    assert "Traceback" not in result.output and len(lines) == 1
    assert tmp_path.is_dir() and leftovers(tmp_path) == []
