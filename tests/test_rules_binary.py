"""Compiled packages against the system: glibc (EK308) and flash-attn's torch (EK309), from ELF reads and
manylinux tags.  Fixtures are real: the wheel tags vLLM published on PyPI, the GLIBC_2.34 that vllm#41103 found
in a manylinux_2_31 wheel, the torch of this venv and symbols flash-attn builds link."""

from __future__ import annotations

import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from envkit.facts import Package
from envkit.knowledge.matrix import Matrix, manylinux_glibc
from envkit.knowledge.refresh import glibc_by_arch
from envkit.probe.elf import dynamic_symbols, glibc_needed
from envkit.probe.packages import _extensions, _glibc_needed, _missing_torch_symbols, _wheel_glibc
from envkit.rules import DOCTOR_CHECKS, Severity
from tests.conftest import make_facts


@pytest.fixture(scope="module")
def torch_dist() -> metadata.Distribution:
    """The installed torch, whose wheel tag, libraries and exported symbols are the real fixtures here."""
    try:
        return metadata.distribution("torch")
    except metadata.PackageNotFoundError:
        pytest.skip("needs torch installed (pip install -e '.[train]')")


def facts_with(glibc: str, **needs: str):
    facts = make_facts("h100", {name: version for name, (version, _) in needs.items()})
    facts.host.glibc = glibc
    for name, (_, need) in needs.items():
        facts.packages[name].glibc_needed = need
    return facts


@pytest.mark.parametrize("host, needs, expected", [
    ("2.31", {"vllm": ("0.20.0", "2.35")}, Severity.FAIL),  # PyPI: vllm-0.20.0-cp38-abi3-manylinux_2_35_x86_64.whl
    ("2.31", {"vllm": ("0.20.0", "2.34")}, Severity.FAIL),  # vllm#41103: the manylinux_2_31 wheel asks GLIBC_2.34
    ("2.35", {"vllm": ("0.20.0", "2.35"), "torch": ("2.11.0", "2.28")}, Severity.OK),
    ("2.31", {"vllm": ("0.22.0", "2.28"), "torch": ("2.11.0", "2.28")}, Severity.OK),  # manylinux_2_28 from 0.22.0
])
def test_glibc_against_what_compiled_packages_ask(host, needs, expected):
    finding = DOCTOR_CHECKS["EK308"].finding(facts_with(host, **needs))
    assert finding.severity is expected
    if expected is Severity.FAIL:
        assert f"this system has {host}" in finding.title and "glibc >=" in finding.fix
        # the matrix's manylinux tags name a release that installs on 2.31 (0.22.0 on: manylinux_2_28)
        older = finding.fix.rpartition("vllm==")[2].partition("'")[0]
        assert Matrix.shipped().record("vllm", older)["glibc"]["x86_64"] <= "2.31"


def test_glibc_skips_without_a_compiled_package_or_glibc():
    assert DOCTOR_CHECKS["EK308"].finding(make_facts("h100", {"trl": "1.16.0"})).severity is Severity.SKIP


def test_manylinux_tags_and_the_matrix_records_of_real_releases():
    assert manylinux_glibc("manylinux_2_35_aarch64") == (manylinux_glibc("manylinux_2_35_x86_64")[0], "aarch64")
    assert str(manylinux_glibc("manylinux2014_x86_64")[0]) == "2.17" and manylinux_glibc("win_amd64") is None
    assert glibc_by_arch([{"filename": "vllm-0.20.0-cp38-abi3-manylinux_2_35_x86_64.whl"},
                          {"filename": "vllm-0.20.0-cp38-abi3-manylinux_2_35_aarch64.whl"},
                          {"filename": "vllm-0.20.0-py3-none-any.whl"}]) == {"aarch64": "2.35", "x86_64": "2.35"}
    shipped = Matrix.shipped()
    assert shipped.record("vllm", "0.20.0")["glibc"] == {"aarch64": "2.35", "x86_64": "2.35"}
    assert shipped.record("vllm", "0.22.0")["glibc"]["x86_64"] == "2.28"  # vLLM PR #41668: manylinux_2_28 base
    assert "glibc" not in shipped.record("trl", "1.16.0")  # pure Python


def test_the_probe_reads_torchs_tag_and_symbol_versions(torch_dist):
    tag = _wheel_glibc(torch_dist)
    assert tag is not None and _glibc_needed(torch_dist) >= tag
    objdump = shutil.which("objdump")
    library = next(p for p in _extensions(torch_dist) if p.endswith("libtorch_cpu.so"))
    if objdump:  # the loader's view, by binutils
        listed = subprocess.run([objdump, "-T", library], capture_output=True, text=True).stdout
        versions = {word.partition("GLIBC_")[2].rstrip(")") for word in listed.split() if "GLIBC_" in word}
        assert glibc_needed(library) == max(versions, key=lambda v: tuple(map(int, v.split("."))))
    undefined, defined = dynamic_symbols(library)
    assert len(defined) > 1000 and undefined and not undefined & defined


def test_non_elf_files_read_as_nothing(tmp_path):
    text = tmp_path / "x.so"
    text.write_text("not an ELF file")
    assert glibc_needed(str(text)) is None and dynamic_symbols(str(text)) == (set(), set())


PRESENT = "_ZN3c106detail14torchCheckFailEPKcS2_jS2_"  # c10::detail::torchCheckFail, exported by libc10
GONE = "_ZN3c104cuda9SetDeviceEi"  # c10::cuda::SetDevice(int): "undefined symbol" of flash-attn built for an older torch


def fake_flash_attn(tmp_path: Path, symbols: list[str]) -> metadata.Distribution:
    """A flash-attn dist whose extension links ``symbols`` (compiled here: C accepts Itanium-mangled names)."""
    source = tmp_path / "ext.c"
    source.write_text("".join(f"extern void {s}(void);\n" for s in symbols) + "void f(void) {" + "".join(f"{s}();" for s in symbols) + "}\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "flash_attn_2_cuda.cpython-312-x86_64-linux-gnu.so"), str(source)], check=True)
    info = tmp_path / "flash_attn-2.5.8.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flash_attn\nVersion: 2.5.8\n")
    (info / "RECORD").write_text("flash_attn_2_cuda.cpython-312-x86_64-linux-gnu.so,,\nflash_attn-2.5.8.dist-info/METADATA,,\n")
    return metadata.Distribution.at(info)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build a stand-in extension")
def test_flash_attn_symbols_missing_from_the_installed_torch(tmp_path, torch_dist):
    assert _missing_torch_symbols(fake_flash_attn(tmp_path, [PRESENT, GONE, "memcpy"]), torch_dist) == [GONE]
    (tmp_path / "again").mkdir()
    assert _missing_torch_symbols(fake_flash_attn(tmp_path / "again", [PRESENT]), torch_dist) == []


def test_flash_attn_check_on_both_sides():
    facts = make_facts("h100", {"torch": "2.13.0", "flash-attn": "2.8.3"})
    assert DOCTOR_CHECKS["EK309"].finding(facts).severity is Severity.OK
    facts.packages["flash-attn"] = Package("2.8.3", missing_torch_symbols=[GONE])
    broken = DOCTOR_CHECKS["EK309"].finding(facts)
    assert broken.severity is Severity.FAIL and GONE in broken.evidence and "--force-reinstall flash-attn" in broken.fix
    assert DOCTOR_CHECKS["EK309"].finding(make_facts("h100", {"torch": "2.13.0"})).severity is Severity.SKIP
