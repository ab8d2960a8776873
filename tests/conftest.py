"""Shared test helpers: facts built in code, with package requirements from real metadata."""

from __future__ import annotations

import importlib.util
from email.parser import HeaderParser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from envkit.facts import Driver, Facts, Gpu, Host, Package
from envkit.knowledge import gpu_catalog

FIXTURES = Path(__file__).parent / "fixtures"
TRAIN_MISSING = [name for name in ("torch", "trl") if importlib.util.find_spec(name) is None]
# A test that needs the train extra (torch and trl, and what comes with them: transformers, peft, datasets) skips
# without it, as does every test marked `train` (pytest_collection_modifyitems); `envkit report` draws run.png
# with matplotlib, which comes with the extra too.
needs_train = pytest.mark.skipif(bool(TRAIN_MISSING),
                                 reason=f"{' and '.join(TRAIN_MISSING)} not installed: pip install -e '.[train]'")
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="matplotlib not installed: pip install -e '.[train]'")


def pytest_collection_modifyitems(config, items):
    """A test marked `train` skips where torch or trl is missing (a `.[test]`-only install), as the marker promises
    (pyproject.toml)."""
    for item in items:
        if item.get_closest_marker("train"):
            item.add_marker(needs_train)


def real_requires(name: str, version: str) -> list[str]:
    """Requires-Dist of a real release, recorded from the registry in tests/fixtures/metadata."""
    path = FIXTURES / "metadata" / f"{name.replace('-', '_')}-{Version(version).public}.METADATA"
    if not path.exists():
        return []
    return HeaderParser().parsestr(path.read_text()).get_all("Requires-Dist") or []


def catalog_gpu(key: str, index: int = 0) -> Gpu:
    entry = gpu_catalog()[key]
    memory = entry["memory_gib"] * 1024
    return Gpu(index, entry["name"], entry["compute_capability"], memory, memory, False, key)


def make_facts(
    gpus: list[str] | str | None = "h100",
    packages: dict[str, str] | None = None,
    installed: dict[str, str] | None = None,
    torch_cuda: str | None = "13.0",
    vllm_cudart: list[str] | None = None,
    driver: str | None = "580.95.05",
    driver_cuda: str | None = "13.0",
    env: dict[str, str] | None = None,
    os_name: str = "Linux",
    container: str | None = None,
    shm_mib: int | None = 32768,
    cuda_visible_devices: str | None = None,
) -> Facts:
    keys = [gpus] if isinstance(gpus, str) else list(gpus or [])
    built = {}
    for name, version in (packages or {}).items():
        package = Package(version=version, requires=real_requires(name, version))
        if name == "torch":
            package.cuda = torch_cuda
        if name == "vllm":
            package.cudart_needed = list(vllm_cudart or [])
        built[name] = package
    all_installed = {name.replace("_", "-"): version for name, version in (packages or {}).items()}
    all_installed.update(installed or {})
    return Facts(
        host=Host(os=os_name, kernel="6.8.0", arch="x86_64", glibc="2.36", python="3.12.3", container=container,
                  ram_total_mib=131072, shm_total_mib=shm_mib),
        driver=Driver(source="nvml", version=driver, cuda_version=driver_cuda) if driver else Driver(source="none", error="NVML: NVML Shared Library Not Found"),
        gpus=[catalog_gpu(k, i) for i, k in enumerate(keys)],
        packages=built,
        installed=all_installed,
        env=env or {},
        cuda_visible_devices=cuda_visible_devices,
        collected_at="2026-11-23T00:00:00+00:00",
        envkit_version="test",
    )


# The coherent set of the GPU test machine: torch 2.11.0+cu130, vLLM 0.26.0, TRL 1.16.0.
COHERENT = {"torch": "2.11.0+cu130", "vllm": "0.26.0", "trl": "1.16.0", "transformers": "5.17.0", "peft": "0.21.0",
            "accelerate": "1.13.0", "datasets": "5.2.0"}


@pytest.fixture
def coherent() -> Facts:
    """The GPU machine's set, with every declared requirement installed at a fitting version."""
    facts = make_facts("h100", COHERENT, vllm_cudart=["libcudart.so.13"])
    facts.installed["pyarrow"] = "25.0.1"  # the machine's
    wanted: dict[str, list[Requirement]] = {}
    for package in facts.packages.values():
        for line in package.requires:
            req = Requirement(line)
            if req.marker is None or "extra" not in str(req.marker):
                wanted.setdefault(canonicalize_name(req.name), []).append(req)
    for name, reqs in wanted.items():
        facts.installed.setdefault(name, _fitting(reqs))
    return facts


def _fitting(reqs: list[Requirement]) -> str:
    """A version inside every one of the requirements, from the bounds they mention."""
    bounds = {s.version.replace(".*", ".0") for r in reqs for s in r.specifier if s.operator in ("==", ">=", "~=")}
    for candidate in sorted(bounds | {"99.0"}, key=Version, reverse=True):
        if all(r.specifier.contains(candidate, prereleases=True) for r in reqs):
            return candidate
    raise AssertionError(f"no fitting version for {reqs}")


@pytest.fixture(autouse=True)
def no_probe_cache(monkeypatch):
    """Doctor runs in tests probe afresh: a cache under the user's home would carry facts from one test (or one
    checkout) to the next.  The cache's own tests turn it back on, in a temporary folder."""
    monkeypatch.setenv("ENVKIT_NO_CACHE", "1")


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    """An empty site folder first on sys.path: install_fake (tests/test_probe.py) puts dist-infos in it."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site
