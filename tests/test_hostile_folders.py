"""Class 3 of issue #29: envkit writes only into folders it made.  A run folder and a build context carry
envkit's marker; `train --output DIR` (with --resume too) and `build --output DIR` refuse a folder holding
anything else, in one line naming the folder and the fix, and a regenerated context never loses a file the
user added."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envkit.build.context import MARKER as CONTEXT_MARKER
from envkit.build.lock import Lock
from envkit.cli import main
from envkit.errors import OutputFolderError
from envkit.files import claim_folder
from envkit.train.rundir import MARKER, check_writable
from tests.conftest import needs_train

FAKE_LOCK = Lock("click==8.1.8 \\\n    --hash=sha256:" + "1" * 64 + "\n", seconds=0.1, online=False)


def users_folder(tmp_path) -> tuple[Path, dict]:
    """A folder of the user's that happens to hold the names a run writes."""
    folder = tmp_path / "thesis"
    (folder / "adapter").mkdir(parents=True)
    files = {"README.md": "# my thesis\n", "manifest.json": '{"schema": "envkit.build/1"}\n',
             "metrics.jsonl": '{"step": 1}\n', "adapter/notes.txt": "mine\n", "thesis.tex": "\\begin{document}\n"}
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder, files


def unchanged(folder: Path, files: dict) -> bool:
    found = {p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*") if p.is_file()}
    return found == files


def test_a_run_never_takes_a_folder_without_its_marker(tmp_path):
    folder, files = users_folder(tmp_path)
    with pytest.raises(OutputFolderError, match=f"holds files envkit train did not write \\(no {MARKER} in it\\)"):
        check_writable(folder)
    assert unchanged(folder, files)
    (folder / MARKER).touch()  # the fix the message names, for a run of an older envkit
    check_writable(folder)


@needs_train
def test_train_resume_into_a_users_folder_is_one_line_exit_2(tmp_path):
    folder, files = users_folder(tmp_path)
    result = CliRunner().invoke(main, ["train", "tiny", "--output", str(folder), "--resume"])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"envkit train: {folder} holds files envkit train did not write (no {MARKER} "
                                          f"in it): --output a new or empty folder (a run of an older envkit: touch "
                                          f"{folder / MARKER})"]
    assert unchanged(folder, files)


def build(output: Path, monkeypatch):
    monkeypatch.setattr("envkit.build.lock.lock", lambda *args, **kwargs: FAKE_LOCK)
    return CliRunner().invoke(main, ["build", "--recipe", "tiny", "--target", "cpu", "--emit-only",
                                     "--output", str(output)])


def test_build_never_replaces_a_folder_with_a_look_alike_manifest(tmp_path, monkeypatch):
    folder, files = users_folder(tmp_path)
    result = build(folder, monkeypatch)
    assert result.exit_code == 2 and unchanged(folder, files)
    [line] = result.stderr.splitlines()
    assert f"cannot write {folder}: it holds files envkit build did not write (README.md, adapter/notes.txt" in line
    assert line.endswith("move them out, or name a new or empty folder")


def test_regenerating_a_context_keeps_a_file_the_user_added(tmp_path, monkeypatch):
    out = tmp_path / "ctx"
    assert build(out, monkeypatch).exit_code == 0
    (out / "recipes" / "notes.md").write_text("mine\n")
    result = build(out, monkeypatch)
    assert result.exit_code == 2 and (out / "recipes" / "notes.md").read_text() == "mine\n"
    assert "it holds files envkit build did not write (recipes/notes.md)" in result.stderr
    (out / "recipes" / "notes.md").unlink()
    assert build(out, monkeypatch).exit_code == 0  # its own files alone: regenerated


NAMES = st.sampled_from(["README.md", "manifest.json", "adapter", "notes.txt", MARKER, ".hidden"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.tuples(NAMES, st.sampled_from(["file", "dir", "link"])), max_size=4,
                        unique_by=lambda e: e[0]))
def test_a_folder_is_claimed_only_when_empty_or_marked(tmp_path_factory, entries):
    folder = tmp_path_factory.mktemp("f")
    for name, kind in entries:
        path = folder / name
        if kind == "file":
            path.write_text("x")
        elif kind == "dir":
            path.mkdir()
        else:
            path.symlink_to(folder.parent)
    kinds = dict(entries)
    expected = not entries or kinds.get(MARKER) == "file"
    assert claim_folder(folder, MARKER) is expected
    assert os.path.lexists(folder / MARKER) is (MARKER in kinds or not entries)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(added=st.lists(st.sampled_from(["notes.md", "recipes/x.py", "envkit/evil.py", "wheels/a.whl"]), min_size=1,
                      max_size=3, unique=True))
def test_a_regenerated_context_never_loses_an_added_file(tmp_path_factory, monkeypatch, added):
    out = tmp_path_factory.mktemp("b") / "ctx"
    assert build(out, monkeypatch).exit_code == 0
    for name in added:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("mine")
    assert build(out, monkeypatch).exit_code == 2
    assert all((out / name).read_text() == "mine" for name in added)
    assert json.loads((out / CONTEXT_MARKER).read_text())  # the old context, whole
