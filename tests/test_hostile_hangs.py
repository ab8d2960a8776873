"""Class 4 of issue #29: nothing a user, a folder or an index supplies makes envkit wait without end or work
for minutes: YAML aliases expand against a budget, numbers are bounded at the schema, every file is checked
to be a regular file of bounded size before it is read, every network read has a time and size limit, and
what a run's metrics name is drawn and tabulated up to a bound."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envkit.cli import main
from envkit.recipe.load import RecipeError, parse_recipe, read_recipe
from tests.conftest import needs_matplotlib

RECIPES = Path(__file__).parents[1] / "recipes"
TINY = (RECIPES / "tiny.yaml").read_text()


def bomb(levels: int = 9, width: int = 10) -> str:
    lines = ["version: 1", f"a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def within(seconds: float, function, *args):
    """``function(*args)``'s result, failing the test (instead of hanging it) when it takes longer."""
    result, raised = [], []

    def run():
        try:
            result.append(function(*args))
        except Exception as exc:  # handed to the test's thread
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if raised:
        raise raised[0]
    return result[0]


@pytest.fixture
def recipe_dir(tmp_path):
    shutil.copytree(RECIPES / "data", tmp_path / "data")
    return tmp_path


@pytest.mark.parametrize("command", [["train", "{}", "--dry-run"], ["budget", "{}", "--target", "h100"],
                                     ["lock", "--recipe", "{}", "--target", "cpu"],
                                     ["build", "--recipe", "{}", "--target", "cpu", "--emit-only"]])
def test_an_alias_bomb_is_one_line_not_a_hang(tmp_path, command):
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(bomb())
    assert len(recipe.read_bytes()) < 1300  # a billion values from about a kilobyte
    started = time.monotonic()
    result = CliRunner().invoke(main, [a.format(recipe) for a in command])
    assert result.exit_code == 2 and time.monotonic() - started < 20
    assert "once its YAML aliases are expanded" in result.stderr and len(result.stderr.splitlines()) == 1


@settings(max_examples=30, deadline=None)
@given(levels=st.integers(1, 12), width=st.integers(1, 12))
def test_aliases_never_expand_past_the_budget(levels, width):
    started = time.monotonic()
    try:
        parse_recipe(bomb(levels, width), "bomb.yaml")
    except RecipeError as exc:
        sizes = [1 + width]  # a0's list and its scalars; each next level: a list of the one before, width times
        for _ in range(1, levels):
            sizes.append(1 + width * sizes[-1])
        expanded = 2 + sum(sizes)  # the document, its version and every level
        assert ("once its YAML aliases are expanded" in str(exc)) is (expanded > 100_000)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("extra, message", [
    ("resources:\n  training_gpus: " + "1" * 50 + "\n", "(50 digits) is beyond ±2**63"),
    ("resources:\n  generation_gpus: 100000\n", "must be in [0, 1024]"),
])
def test_huge_counts_are_refused_by_the_schema(recipe_dir, extra, message):
    recipe = recipe_dir / "big.yaml"
    recipe.write_text(TINY + extra)
    result = within(30, CliRunner().invoke, main, ["train", str(recipe), "--dry-run"])
    assert result.exit_code == 2 and message in result.stderr


def test_a_gigabyte_format_width_is_refused_by_dry_run(recipe_dir):
    recipe = recipe_dir / "wide.yaml"
    recipe.write_text(TINY.replace("Question: {question}", "{question:>2000000000}"))
    result = CliRunner().invoke(main, ["train", str(recipe), "--dry-run"])
    assert result.exit_code == 2 and "a width or precision above 10000" in result.stderr


@pytest.fixture
def fifo(tmp_path):
    """A named pipe no one writes to: opening it for reading the usual way waits forever."""
    made = []

    def make(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        made.append(path)
        return path

    yield make
    for path in made:  # release any reader a failed test left waiting
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def test_a_fifo_as_the_facts_file_is_refused(tmp_path, fifo):
    result = within(20, CliRunner().invoke, main, ["doctor", "--facts", str(fifo(tmp_path / "facts.json"))])
    assert result.exit_code == 2 and "not a regular file" in result.stderr


def test_a_fifo_or_dev_zero_as_a_recipe_is_refused(tmp_path, fifo):
    for recipe in (fifo(tmp_path / "r.yaml"), Path("/dev/zero")):
        result = within(20, CliRunner().invoke, main, ["train", str(recipe), "--dry-run"])
        assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    with pytest.raises(RecipeError, match="not a regular file"):  # the reader itself, for any caller
        within(20, read_recipe, tmp_path / "r.yaml")


def test_a_fifo_as_the_probe_cache_is_probed_over(fake_site, tmp_path, monkeypatch, fifo):
    from envkit.probe import cache
    from envkit.probe.installed import dist_folders

    monkeypatch.delenv("ENVKIT_NO_CACHE", raising=False)
    environ = {"ENVKIT_CACHE_DIR": str(tmp_path / "cache")}
    fifo(cache.cache_file(environ))
    assert isinstance(within(20, cache.cached_packages, environ, dist_folders()), dict)


def test_fifos_in_a_run_folder_are_refused(tmp_path, fifo):
    from envkit.train.checkpoints import problem
    from envkit.runs.generate import GenerateError, find_trained

    run = tmp_path / "run"
    fifo(run / "manifest.json")
    fifo(run / "adapter" / "adapter_config.json")
    with pytest.raises(GenerateError, match="not readable JSON"):
        within(20, find_trained, run)
    checkpoint = run / "checkpoint-2"
    checkpoint.mkdir()
    fifo(checkpoint / "trainer_state.json")
    assert within(20, problem, checkpoint) == "no trainer_state.json (its save was interrupted)"
    (checkpoint / "trainer_state.json").unlink()
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    (checkpoint / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    fifo(checkpoint / "optimizer.pt")
    assert within(20, problem, checkpoint) == "optimizer.pt: not a regular file"


@needs_matplotlib
def test_report_on_ten_thousand_reward_keys_is_quick(tmp_path):
    rows = [{"step": s, "reward": 0.5, **{f"rewards/r{i}/mean": 0.1 * s for i in range(10_000)}} for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    started = time.monotonic()
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 0 and time.monotonic() - started < 20  # 92 s before
    assert "(9988 more reward functions not shown)" in result.output and len(result.output) < 5000


def test_an_index_that_accepts_and_never_answers_is_given_up_on_at_once(monkeypatch):
    from envkit.knowledge import refresh

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # accepted by the kernel, never answered
    monkeypatch.setattr(refresh, "TIMEOUT_S", 1)
    started = time.monotonic()
    try:
        with pytest.raises(refresh.RefreshError, match="no answer from .* within 1 s"):
            refresh.release_files(f"http://127.0.0.1:{server.getsockname()[1]}/simple", "trl")
    finally:
        server.close()
    assert time.monotonic() - started < 4  # no retry of silence (5 x 30 s before)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(listing=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                                st.sampled_from(["files", "filename", "url", "size", "yanked", "upload-time"]), inner,
                                max_size=4), max_leaves=12))
def test_a_hostile_index_listing_is_refused_or_read_never_a_traceback(monkeypatch, listing):
    from envkit.knowledge import refresh

    monkeypatch.setattr(refresh, "_get", lambda url, **headers: json.dumps(listing).encode())
    try:
        releases = refresh.release_files("https://index.example/simple", "trl")
    except refresh.RefreshError:
        return
    assert all(isinstance(f, dict) for files in releases.values() for f in files)


def test_yaml_module_is_not_the_recipe_loader_path():
    """The budget holds because recipes are composed, never yaml.load'ed (which expands aliases unbounded)."""
    recipe = Path(__file__).parents[1] / "envkit" / "recipe"
    assert "yaml.compose(" in (recipe / "compose.py").read_text()
    for module in recipe.glob("*.py"):
        source = module.read_text()
        assert "yaml.load(" not in source and "yaml.safe_load(" not in source, module.name
    assert yaml.__name__ == "yaml"
