"""The probe reads metadata, files and the environment; it never imports the stack."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from envkit.probe import collect
from envkit.probe.elf import needed_libraries
from envkit.probe.environ import probe_env
from envkit.probe.gpu import probe_gpus
from envkit.probe.installed import dist_folders, installed_versions
from envkit.probe.packages import probe_packages
from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]


def install_fake(site: Path, name: str, version: str, files: dict[str, str | bytes] | None = None) -> None:
    """A dist-info with the real METADATA of that release, plus the given package files."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    fixture = FIXTURES / "metadata" / f"{name}-{version.split('+')[0]}.METADATA"
    text = fixture.read_text() if fixture.exists() else f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    (info / "METADATA").write_text(text.replace(f"Version: {version.split('+')[0]}", f"Version: {version}", 1))
    record = []
    for rel, content in (files or {}).items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        record.append(f"{rel},,")
    (info / "RECORD").write_text("\n".join(record) + "\n")




def test_packages_from_metadata_and_torch_cuda_from_its_files(fake_site):
    install_fake(fake_site, "torch", "2.11.0+cu130", {"torch/version.py": "__version__ = '2.11.0+cu130'\ncuda: Optional[str] = '13.0'\n"})
    install_fake(fake_site, "trl", "1.16.0")
    found = probe_packages()
    assert found["torch"].version == "2.11.0+cu130" and found["torch"].cuda == "13.0"
    assert "vllm<=0.31.0,>=0.22.0; extra == \"vllm\"" in found["trl"].requires
    installed = installed_versions(dist_folders([str(fake_site)]))
    assert installed == {"torch": "2.11.0+cu130", "trl": "1.16.0"}


def test_cpu_torch_has_no_cuda(fake_site):
    install_fake(fake_site, "torch", "2.11.0+cpu", {"torch/version.py": "cuda: Optional[str] = None\n"})
    assert probe_packages()["torch"].cuda is None


def _build_so(tmp_path: Path, soname: str) -> Path:
    """A shared object that links a stub library named ``soname`` (as vllm/_C.abi3.so links libcudart)."""
    stub = tmp_path / soname
    subprocess.run(["cc", "-shared", "-fPIC", "-x", "c", "-", "-o", str(stub), f"-Wl,-soname,{soname}"],
                   input=b"int cudart_stub(void){return 0;}", check=True)
    out = tmp_path / "ext.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-x", "c", "-", "-o", str(out), "-x", "none", str(stub)],
                   input=b"int cudart_stub(void); int f(void){return cudart_stub();}", check=True)
    return out


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to build an ELF fixture")
def test_vllm_cudart_read_from_elf_needed(fake_site, tmp_path):
    ext = _build_so(tmp_path, "libcudart.so.12")
    assert "libcudart.so.12" in needed_libraries(str(ext))
    install_fake(fake_site, "vllm", "0.12.0", {"vllm/_C.abi3.so": ext.read_bytes(), "vllm/__init__.py": ""})
    assert probe_packages()["vllm"].cudart_needed == ["libcudart.so.12"]


def test_elf_reader_on_non_elf(tmp_path):
    path = tmp_path / "x.so"
    path.write_bytes(b"not an elf")
    assert needed_libraries(str(path)) == []
    assert needed_libraries(str(tmp_path / "missing.so")) == []
    # a real system library parses
    libc = next((p for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/lib/aarch64-linux-gnu/libm.so.6") if os.path.exists(p)), None)
    if libc:
        assert any(name.startswith("libc.so") for name in needed_libraries(libc))


def test_env_records_settings_and_hides_secrets():
    env = probe_env({"TRITON_DISABLE_PDL": "1", "VLLM_LOGGING_LEVEL": "WARNING", "HF_TOKEN": "canary-hf",
                     "VLLM_API_KEY": "canary-vllm", "PATH": "/usr/bin"})
    assert env["TRITON_DISABLE_PDL"] == "1" and env["VLLM_LOGGING_LEVEL"] == "WARNING"
    assert env["HF_TOKEN"] == "<set>" and env["WANDB_API_KEY"] == "<unset>" and env["VLLM_API_KEY"] == "<set>"
    assert "PATH" not in env


def test_no_nvml_falls_back_to_driver_version_file(tmp_path, monkeypatch):
    version = tmp_path / "version"
    version.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build\n")
    monkeypatch.setattr("envkit.probe.gpu.DRIVER_VERSION_FILES", (str(tmp_path / "absent"), str(version)))
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as if nvidia-ml-py were missing
    driver, gpus = probe_gpus()
    assert driver.source == "procfs" and driver.version == "580.95.05" and gpus == []
    monkeypatch.setattr("envkit.probe.gpu.DRIVER_VERSION_FILES", ())
    driver, _ = probe_gpus()
    assert driver.source == "none" and "nvidia-ml-py" in driver.error


def test_collect_this_machine():
    facts = collect(environ={"HF_HOME": "/nonexistent/hf", "CUDA_VISIBLE_DEVICES": "0"}, gpus=False)
    assert facts.host.os and facts.host.python.count(".") == 2
    assert facts.host.cache_dir == "/nonexistent/hf" and facts.host.cache_free_mib is not None
    assert facts.cuda_visible_devices == "0"
    assert "click" in facts.installed


HEAVY_GUARD = textwrap.dedent("""
    import sys
    from envkit.cli import main
    try:
        main(["doctor", "--json"])
    except SystemExit:
        pass
    heavy = sorted(m for m in ("torch", "vllm", "trl", "transformers") if m in sys.modules)
    print("HEAVY", heavy)
""")


def test_doctor_never_imports_torch_vllm_or_trl(fake_site, tmp_path):
    # installed packages whose import would blow up: the doctor must read their metadata only
    for name, version in (("torch", "2.11.0"), ("vllm", "0.26.0"), ("trl", "1.16.0"), ("transformers", "5.17.0")):
        install_fake(fake_site, name, version, {f"{name}/__init__.py": "raise SystemExit('imported!')\n", f"{name}/version.py": "cuda = '13.0'\n"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake_site), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", HEAVY_GUARD], capture_output=True, text=True, env=env, timeout=60)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
    assert '"vllm"' in result.stdout or "vllm 0.26.0" in result.stdout  # it did see them
