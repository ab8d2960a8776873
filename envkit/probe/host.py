"""Host facts: OS, kernel, architecture, libc, container, memory and disk."""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

from envkit.facts import Host
from envkit.masking import mask_text


def probe_host(environ: dict[str, str]) -> Host:
    uname = platform.uname()
    memory = _meminfo()
    cache_dir = hf_home(environ)
    return Host(
        os=uname.system,
        kernel=uname.release,
        arch=uname.machine,
        glibc=_glibc(),
        python=platform.python_version(),
        wsl="microsoft" in uname.release.lower(),
        container=_container(),
        ram_total_mib=memory.get("MemTotal"),
        ram_available_mib=memory.get("MemAvailable"),
        cache_dir=mask_text(cache_dir),  # HF_HOME=https://user:token@mirror/... is masked in env: here too
        cache_free_mib=_free_mib(cache_dir),
        shm_total_mib=_total_mib("/dev/shm"),
    )


def hf_home(environ: dict[str, str]) -> str:
    """Where Hugging Face caches models: HF_HOME, else $XDG_CACHE_HOME/huggingface."""
    if environ.get("HF_HOME"):
        return environ["HF_HOME"]
    xdg = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "huggingface")


def _glibc() -> str | None:
    try:
        name, _, version = os.confstr("CS_GNU_LIBC_VERSION").partition(" ")
    except (AttributeError, ValueError, OSError):
        return None
    return version if name == "glibc" else None


def _container() -> str | None:
    if Path("/run/.containerenv").exists():
        return "podman"
    if Path("/.dockerenv").exists():
        return "docker"
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    try:
        cgroup = Path("/proc/1/cgroup").read_text()
    except OSError:
        return None
    for marker in ("kubepods", "docker", "containerd", "lxc"):
        if marker in cgroup:
            return marker
    return None


def _meminfo() -> dict[str, int]:
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return {}
    values = {}
    for line in lines:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) // 1024  # kB -> MiB
    return values


def _existing_parent(path: str) -> str | None:
    current = Path(path).expanduser()
    for candidate in (current, *current.parents):
        if candidate.exists():
            return str(candidate)
    return None


def _free_mib(path: str) -> int | None:
    existing = _existing_parent(path)
    return shutil.disk_usage(existing).free // 2**20 if existing else None


def _total_mib(path: str) -> int | None:
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_blocks * stat.f_frsize // 2**20
