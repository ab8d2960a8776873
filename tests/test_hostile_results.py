"""Class 8 of issue #29, wrong results: what a recipe reads reaches the image, Ctrl-C is 130 from every
command, a relative XDG_CACHE_HOME is ignored, the printed build command survives a space, and
``doctor --fix --yes`` acts only on this machine (tests/test_cli.py:
test_fix_yes_never_acts_on_another_machines_facts)."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from envkit.build.lock import Lock
from envkit.cli import main
from envkit.probe.cache import cache_dir, cache_home

RECIPES = Path(__file__).parents[1] / "recipes"
FAKE_LOCK = Lock("click==8.1.8 \\\n    --hash=sha256:" + "1" * 64 + "\n", seconds=0.1, online=False)


@pytest.fixture
def fake_lock(monkeypatch):
    monkeypatch.setattr("envkit.build.lock.lock", lambda *args, **kwargs: FAKE_LOCK)


def recipe_with_eval(folder: Path, eval_path: str) -> Path:
    shutil.copytree(RECIPES / "data", folder / "data")
    (folder / "data" / "eval.jsonl").write_text((RECIPES / "data" / "toy.jsonl").read_text())
    recipe = folder / "mine.yaml"
    text = (RECIPES / "tiny.yaml").read_text()
    recipe.write_text(text.replace("  path: data/toy.jsonl\n", f"  path: data/toy.jsonl\n  eval_path: {eval_path}\n"))
    return recipe


def build(recipe: Path, output: Path):
    return CliRunner().invoke(main, ["build", "--recipe", str(recipe), "--target", "cpu", "--emit-only",
                                     "--output", str(output)])


def test_the_eval_file_is_copied_into_the_build_context(tmp_path, fake_lock):
    recipe = recipe_with_eval(tmp_path / "r", "data/eval.jsonl")
    result = build(recipe, tmp_path / "ctx")
    assert result.exit_code == 0, result.output
    copied = tmp_path / "ctx" / "recipes" / "data" / "eval.jsonl"
    assert copied.read_text() == (recipe.parent / "data" / "eval.jsonl").read_text()


def test_an_eval_file_outside_the_recipe_folder_is_refused(tmp_path, fake_lock):
    (tmp_path / "elsewhere.jsonl").write_text((RECIPES / "data" / "toy.jsonl").read_text())
    recipe = recipe_with_eval(tmp_path / "r", str(tmp_path / "elsewhere.jsonl"))
    result = build(recipe, tmp_path / "ctx")
    assert result.exit_code == 2 and "dataset.eval_path" in result.stderr
    assert "lies outside the recipe's folder" in result.stderr


def test_the_printed_build_command_quotes_a_context_with_a_space(tmp_path, fake_lock):
    out = tmp_path / "my contexts" / "ctx"
    result = build(RECIPES / "tiny.yaml", out)
    assert result.exit_code == 0
    [line] = [line for line in result.stderr.splitlines() if "docker buildx build" in line]
    assert shlex.split(line.partition("build it with: ")[2])[-1] == str(out)


@pytest.mark.parametrize("command", [["lock", "--recipe", "tiny", "--target", "cpu"],
                                     ["build", "--recipe", "tiny", "--target", "cpu", "--emit-only"]])
def test_ctrl_c_exits_130_from_lock_and_build(tmp_path, monkeypatch, command):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("envkit.build.lock.lock", interrupted)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 130 and result.stderr == f"envkit {command[0]}: interrupted\n"


@pytest.mark.parametrize("xdg", ["relcache", "", "./x", "~/cache"])
def test_a_relative_or_empty_xdg_cache_home_is_ignored(xdg):
    assert cache_dir({"XDG_CACHE_HOME": xdg, "HOME": "/h"}) == Path("/h/.cache/envkit")


def test_the_tiny_models_cache_is_never_relative(monkeypatch, tmp_path):
    from envkit.train.tiny import cache_root

    monkeypatch.setenv("XDG_CACHE_HOME", "relcache")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root() == tmp_path / ".cache" / "envkit" / "models"


@given(xdg=st.text(max_size=12), home=st.text(max_size=12))
def test_the_cache_is_absolute_or_none(xdg, home):
    found = cache_home({"XDG_CACHE_HOME": xdg, "HOME": home})
    assert found is None or found.is_absolute()


def test_metadata_edited_in_place_is_probed_again(fake_site, tmp_path, monkeypatch):
    """The folder's and RECORD's times unchanged, METADATA rewritten: the cached verdict must not stand."""
    import os

    from envkit.probe.cache import cached_packages
    from envkit.probe.installed import dist_folders
    from tests.test_probe import install_fake

    monkeypatch.delenv("ENVKIT_NO_CACHE", raising=False)
    environ = {"ENVKIT_CACHE_DIR": str(tmp_path / "cache")}
    install_fake(fake_site, "trl", "1.16.0")
    assert cached_packages(environ, dist_folders())["trl"].requires != ["vllm==0.26.0"]
    folder = fake_site / "trl-1.16.0.dist-info"
    kept = os.stat(folder).st_mtime_ns
    (folder / "METADATA").write_text("Metadata-Version: 2.1\nName: trl\nVersion: 1.16.0\nRequires-Dist: vllm==0.26.0\n")
    os.utime(folder / "METADATA", ns=(kept + 10**9, kept + 10**9))
    os.utime(folder, ns=(kept, kept))
    assert cached_packages(environ, dist_folders())["trl"].requires == ["vllm==0.26.0"]
