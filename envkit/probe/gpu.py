"""GPU and driver facts from NVML, with the kernel module's version file as fallback."""

from __future__ import annotations

import re
from pathlib import Path

from envkit.facts import Driver, Gpu
from envkit.knowledge import catalog_id_for

# Read when NVML is missing (no nvidia-ml-py, or libnvidia-ml.so not loadable).
DRIVER_VERSION_FILES = ("/sys/module/nvidia/version", "/proc/driver/nvidia/version")


def probe_gpus() -> tuple[Driver, list[Gpu]]:
    try:
        import pynvml
    except ImportError:
        return _driver_from_files("nvidia-ml-py is not installed"), []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return _driver_from_files(f"NVML: {exc}"), []
    try:
        return _driver_from_nvml(pynvml), [_gpu(pynvml, i) for i in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()


def _driver_from_nvml(nvml) -> Driver:
    cuda = nvml.nvmlSystemGetCudaDriverVersion()  # e.g. 13000 for 13.0
    return Driver(
        source="nvml",
        version=_text(nvml.nvmlSystemGetDriverVersion()),
        cuda_version=f"{cuda // 1000}.{cuda % 1000 // 10}",
    )


def _gpu(nvml, index: int) -> Gpu:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    try:
        mig = bool(nvml.nvmlDeviceGetMigMode(handle)[0])
    except nvml.NVMLError:  # not supported on consumer GPUs
        mig = None
    name = _text(nvml.nvmlDeviceGetName(handle))
    return Gpu(
        index=index,
        name=name,
        compute_capability=f"{major}.{minor}",
        memory_total_mib=memory.total // 2**20,
        memory_free_mib=memory.free // 2**20,
        mig_mode=mig,
        catalog_id=catalog_id_for(name),
    )


def _driver_from_files(error: str) -> Driver:
    for path in DRIVER_VERSION_FILES:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        match = re.search(r"(\d{3,}\.\d+(?:\.\d+)?)", text)
        if match:
            return Driver(source="procfs", version=match.group(1), error=error)
    return Driver(source="none", error=error)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
