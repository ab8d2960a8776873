"""Class 2 of issue #29: the files envkit names itself inside a folder are never written through a link planted
at that name (envkit.files.write_owned / open_owned / fresh_dir): the link's target, the user's file or folder,
is left as it was."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envkit.cli import main
from envkit.files import WriteError, replace_dir
from envkit.train.rundir import LOCK, RunLock, check_writable
from tests.conftest import needs_matplotlib

PRECIOUS = "the user's thesis\n"


def precious(tmp_path) -> Path:
    mine = tmp_path / "mine.txt"
    mine.write_text(PRECIOUS)
    return mine


@pytest.mark.parametrize("link, why", [(os.symlink, "it is a symbolic link"), (os.link, "a hard link")])
def test_a_lock_file_planted_as_a_link_is_refused_and_its_target_kept(tmp_path, link, why):
    mine, run = precious(tmp_path), tmp_path / "run"
    run.mkdir()
    link(mine, run / LOCK)
    with pytest.raises(WriteError, match=why):
        RunLock(run)
    assert mine.read_text() == PRECIOUS


def test_the_writable_probe_never_writes_through_a_planted_name(tmp_path):
    mine, run = precious(tmp_path), tmp_path / "run"
    run.mkdir()
    (run / ".envkit-run").touch()  # a run folder of envkit's, where someone planted the link
    (run / f".envkit-probe-{os.getpid()}").symlink_to(mine)
    check_writable(run)
    assert mine.read_text() == PRECIOUS
    assert sorted(p.name for p in run.iterdir()) == [f".envkit-probe-{os.getpid()}", ".envkit-run"]  # its probe is gone


@needs_matplotlib
def test_report_never_writes_the_picture_through_a_planted_partial(tmp_path):
    mine, run = precious(tmp_path), tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward": 0.5}) + "\n")
    (run / ".run.png.partial").symlink_to(mine)
    result = CliRunner().invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert mine.read_text() == PRECIOUS
    assert (run / "run.png").read_bytes().startswith(b"\x89PNG") and not (run / "run.png").is_symlink()


def test_writers_of_one_name_at_once_never_share_a_temporary_file(tmp_path):
    """Concurrent reports of one run: each picture is written whole, none fails."""
    from envkit.files import write_owned

    target, errors = tmp_path / "run.png", []

    def write(i):
        try:
            for _ in range(20):
                write_owned(target, bytes([i]) * 100_000)
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    content = target.read_bytes()
    assert errors == [] and len(set(content)) == 1 and len(content) == 100_000
    assert [p.name for p in tmp_path.iterdir()] == ["run.png"]


def test_adapter_partial_planted_as_a_link_to_a_folder_leaves_that_folder(tmp_path):
    from envkit.train.runner import _copy_adapter

    theirs, run = tmp_path / "theirs", tmp_path / "run"
    theirs.mkdir()
    (theirs / "adapter_config.json").write_text(PRECIOUS)
    checkpoint = run / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_config.json").write_text("{}")
    (run / "adapter.partial").symlink_to(theirs)
    (run / "adapter").symlink_to(theirs)
    _copy_adapter(checkpoint, run / "adapter.partial")
    replace_dir(run / "adapter.partial", run / "adapter")
    assert (theirs / "adapter_config.json").read_text() == PRECIOUS
    assert os.listdir(theirs) == ["adapter_config.json"]
    assert not (run / "adapter").is_symlink() and (run / "adapter" / "adapter_config.json").read_text() == "{}"


@pytest.mark.parametrize("dangling", [False, True])
def test_the_probe_cache_never_writes_through_a_planted_link(fake_site, tmp_path, monkeypatch, dangling):
    from envkit.probe import cache
    from envkit.probe.installed import dist_folders
    from tests.test_probe import install_fake

    monkeypatch.delenv("ENVKIT_NO_CACHE", raising=False)
    environ = {"ENVKIT_CACHE_DIR": str(tmp_path / "cache")}
    (tmp_path / "cache").mkdir()
    target = tmp_path / "made-by-the-link.txt" if dangling else precious(tmp_path)
    cache.cache_file(environ).symlink_to(target)
    install_fake(fake_site, "trl", "1.16.0")
    cache.cached_packages(environ, dist_folders())
    assert (not target.exists()) if dangling else target.read_text() == PRECIOUS
    assert not cache.cache_file(environ).is_symlink()  # the cache is a file of its own now


PLANTS = ("file-link", "dir-link", "dangling-link", "hard-link")


def plant(folder: Path, name: str, how: str, victim_file: Path, victim_dir: Path) -> None:
    where = folder / name
    if how == "file-link":
        where.symlink_to(victim_file)
    elif how == "dir-link":
        where.symlink_to(victim_dir)
    elif how == "dangling-link":
        where.symlink_to(folder.parent / "created-through-a-link")
    else:
        os.link(victim_file, where)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=st.sampled_from(PLANTS), writer=st.sampled_from(["write_owned", "fresh_dir", "replace_dir"]),
       name=st.sampled_from(["manifest.json", "run.png", "adapter.partial", "packages-0.json"]))
def test_no_writer_of_an_owned_name_reaches_a_planted_links_target(tmp_path_factory, how, writer, name):
    from envkit.files import fresh_dir, write_owned

    base = tmp_path_factory.mktemp("plant")
    victim_file, victim_dir, folder = precious(base), base / "theirs", base / "run"
    victim_dir.mkdir()
    (victim_dir / "keep.txt").write_text(PRECIOUS)
    folder.mkdir()
    plant(folder, name, how, victim_file, victim_dir)
    if writer == "write_owned":
        write_owned(folder / name, "envkit's\n")
        assert (folder / name).read_text() == "envkit's\n"
    elif writer == "fresh_dir":
        fresh_dir(folder / name)
        assert os.listdir(folder / name) == []
    else:
        (folder / "new").mkdir()
        replace_dir(folder / "new", folder / name)
    assert not (folder / name).is_symlink()
    assert victim_file.read_text() == PRECIOUS and os.listdir(victim_dir) == ["keep.txt"]
    assert not (base / "created-through-a-link").exists()


def test_metrics_lines_are_never_appended_through_a_planted_link(tmp_path):
    """metrics.jsonl is appended to at every step and rewritten on resume: a link planted at its name is refused
    (an append) or replaced (the trim), its target kept."""
    pytest.importorskip("transformers")
    from envkit.train.callbacks import MetricsCallback, trim_metrics

    mine = precious(tmp_path)
    metrics = tmp_path / "metrics.jsonl"
    metrics.symlink_to(mine)
    with pytest.raises(WriteError, match="symbolic link"):
        MetricsCallback(metrics)._write({"step": 1, "reward": 0.5})
    assert mine.read_text() == PRECIOUS
    trim_metrics(metrics, last_step=0)
    assert mine.read_text() == PRECIOUS and not metrics.is_symlink()


def test_metrics_lines_append_to_envkits_own_file(tmp_path):
    pytest.importorskip("transformers")
    from envkit.train.callbacks import MetricsCallback

    metrics = tmp_path / "metrics.jsonl"
    callback = MetricsCallback(metrics)
    callback._write({"step": 1, "reward": 0.5})
    callback._write({"step": 2, "reward": 0.7})
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2]
