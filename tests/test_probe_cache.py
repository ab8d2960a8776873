"""The package probe's cache: reused while the stack's dist-info folders are unchanged, re-probed otherwise."""

import json
import os
import shutil

import pytest

from envkit.probe import cache
from envkit.probe.cache import cached_packages
from envkit.probe.installed import dist_folders
from tests.test_probe import install_fake


@pytest.fixture
def environ(tmp_path, monkeypatch):
    monkeypatch.delenv("ENVKIT_NO_CACHE")
    return {"ENVKIT_CACHE_DIR": str(tmp_path / "cache"), "HF_TOKEN": "canary-hf-token"}


@pytest.fixture
def probes(monkeypatch):
    """Counts the real probe's runs."""
    from envkit.probe import packages

    calls = []
    real = packages.probe_packages
    monkeypatch.setattr(packages, "probe_packages", lambda: calls.append(1) or real())
    return calls


def test_second_run_reads_the_cache(fake_site, environ, probes):
    install_fake(fake_site, "trl", "1.16.0")
    first = cached_packages(environ, dist_folders())
    second = cached_packages(environ, dist_folders())
    assert len(probes) == 1 and second == first and second["trl"].version == "1.16.0"
    text = (cache.cache_file(environ)).read_text()
    assert "canary-hf-token" not in text and "HF_TOKEN" not in text


def test_an_upgrade_or_a_reinstall_probes_again(fake_site, environ, probes):
    install_fake(fake_site, "trl", "1.15.0")
    assert cached_packages(environ, dist_folders())["trl"].version == "1.15.0"
    shutil.rmtree(fake_site / "trl-1.15.0.dist-info")
    install_fake(fake_site, "trl", "1.16.0")
    assert cached_packages(environ, dist_folders())["trl"].version == "1.16.0" and len(probes) == 2
    # the same version reinstalled with other metadata: its folder is rewritten, so its mtime moves
    folder = fake_site / "trl-1.16.0.dist-info"
    (folder / "METADATA").write_text("Metadata-Version: 2.1\nName: trl\nVersion: 1.16.0\nRequires-Dist: vllm==0.26.0\n")
    stamp = os.stat(folder).st_mtime_ns + 10**9
    os.utime(folder, ns=(stamp, stamp))
    assert cached_packages(environ, dist_folders())["trl"].requires == ["vllm==0.26.0"] and len(probes) == 3


def test_a_removed_package_is_not_served_from_the_cache(fake_site, environ, probes):
    install_fake(fake_site, "unsloth", "2026.10.9")
    assert "unsloth" in cached_packages(environ, dist_folders())
    shutil.rmtree(fake_site / "unsloth-2026.10.9.dist-info")
    assert "unsloth" not in cached_packages(environ, dist_folders()) and len(probes) == 2


@pytest.mark.parametrize("content", ["{not json", '{"key": 1}', "[]", "[" * 100000, b"\xff\xfe"])
def test_a_damaged_cache_is_probed_over(fake_site, environ, probes, content):
    install_fake(fake_site, "trl", "1.16.0")
    cached_packages(environ, dist_folders())
    path = cache.cache_file(environ)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert cached_packages(environ, dist_folders())["trl"].version == "1.16.0" and len(probes) == 2


def test_a_cache_entry_of_the_wrong_shape_is_probed_over(fake_site, environ, probes):
    install_fake(fake_site, "trl", "1.16.0")
    cached_packages(environ, dist_folders())
    path = cache.cache_file(environ)
    data = json.loads(path.read_text())
    data["packages"]["trl"]["requires"] = "not a list"
    path.write_text(json.dumps(data))
    assert cached_packages(environ, dist_folders())["trl"].requires != "not a list" and len(probes) == 2


def test_off_or_unwritable_means_probing_every_time(fake_site, environ, probes, tmp_path):
    install_fake(fake_site, "trl", "1.16.0")
    off = {**environ, "ENVKIT_NO_CACHE": "1"}
    cached_packages(off, dist_folders()), cached_packages(off, dist_folders())
    assert len(probes) == 2 and not (tmp_path / "cache").exists()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    unwritable = {"ENVKIT_CACHE_DIR": str(blocked / "cache")}
    assert cached_packages(unwritable, dist_folders())["trl"].version == "1.16.0" and len(probes) == 3


def test_each_python_environment_keeps_its_own_file(monkeypatch):
    environ = {"ENVKIT_CACHE_DIR": "/c"}
    first = cache.cache_file(environ)
    monkeypatch.setattr("sys.prefix", "/another/venv")
    assert first.parent == cache.cache_file(environ).parent and first != cache.cache_file(environ)


def test_default_location_follows_xdg_then_home():
    assert str(cache.cache_dir({"XDG_CACHE_HOME": "/x", "HOME": "/h"})) == "/x/envkit"
    assert str(cache.cache_dir({"HOME": "/h"})) == "/h/.cache/envkit"
    assert cache.cache_dir({}) is None
    assert cache.cache_dir({"HOME": "/h", "ENVKIT_NO_CACHE": "0"}) is not None
