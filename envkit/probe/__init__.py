"""Probe: gather facts about this machine without importing torch, vllm or trl."""

from __future__ import annotations

import os
from datetime import datetime, timezone

from envkit import __version__
from envkit.facts import Driver, Facts
from envkit.probe.cache import cached_packages
from envkit.probe.environ import probe_env
from envkit.probe.gpu import probe_gpus
from envkit.probe.host import probe_host
from envkit.probe.installed import dist_folders, installed_versions, outside_site_packages


def collect(environ: dict[str, str] | None = None, gpus: bool = True) -> Facts:
    """All facts of this machine; ``gpus=False`` skips NVML (image builds, ``--no-gpu``)."""
    environ = dict(os.environ if environ is None else environ)
    if gpus:
        driver, gpu_list = probe_gpus()
    else:
        driver, gpu_list = Driver(source="none", error="GPU probing disabled (--no-gpu)"), []
    folders = dist_folders()
    return Facts(
        host=probe_host(environ),
        driver=driver,
        gpus=gpu_list,
        packages=cached_packages(environ, folders),
        installed=installed_versions(folders),
        outside_site_packages=outside_site_packages(folders),
        env=probe_env(environ),
        cuda_visible_devices=environ.get("CUDA_VISIBLE_DEVICES"),
        collected_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        envkit_version=__version__,
    )
