import pytest

from envkit.rules import DOCTOR_CHECKS, Severity
from tests.conftest import make_facts


def check(rule_id, facts):
    return DOCTOR_CHECKS[rule_id].finding(facts)


def test_driver_new_enough_for_torch_cuda():
    facts = make_facts("h100", {"torch": "2.11.0+cu130"}, driver="580.95.05", driver_cuda="13.0")
    assert check("EK201", facts).severity is Severity.OK


def test_driver_too_old_for_cuda13_fails_with_floor():
    facts = make_facts("h100", {"torch": "2.11.0+cu130"}, driver="570.133.20", driver_cuda="12.8")
    finding = check("EK201", facts)
    assert finding.severity is Severity.FAIL
    assert "580.65.06" in finding.fix


def test_minor_version_compatibility_warns():
    facts = make_facts("h100", {"torch": "2.7.0+cu128"}, torch_cuda="12.8", driver="550.54.15", driver_cuda="12.4")
    assert check("EK201", facts).severity is Severity.WARN


def test_cpu_torch_with_gpu_fails():
    facts = make_facts("h100", {"torch": "2.11.0+cpu"}, torch_cuda=None)
    assert check("EK201", facts).severity is Severity.FAIL


def test_target_mode_skips_driver_but_names_floor():
    facts = make_facts("b200", {"torch": "2.11.0"})
    facts.target = "b200"
    finding = check("EK201", facts)
    assert finding.severity is Severity.SKIP and "580.65.06" in finding.title


def test_torch_arch_kernels():
    assert check("EK202", make_facts("h100", {"torch": "2.11.0"})).severity is Severity.OK
    # cu126 has no sm_100 kernels: a B200 needs cu128+
    b200 = check("EK202", make_facts("b200", {"torch": "2.7.0+cu126"}, torch_cuda="12.6"))
    assert b200.severity is Severity.FAIL and "12.8" in b200.fix
    # CUDA 13 dropped Volta (sm_70)
    assert check("EK202", make_facts("v100", {"torch": "2.11.0"})).severity is Severity.FAIL
    # sm_121 (GB10) runs sm_120 kernels; sm_89 runs sm_86 kernels
    assert check("EK202", make_facts("gb10", {"torch": "2.11.0"})).severity is Severity.OK
    assert check("EK202", make_facts("l4", {"torch": "2.7.0+cu126"}, torch_cuda="12.6")).severity is Severity.OK


@pytest.mark.parametrize("torch, cuda, gpu, expected", [
    # torch 2.11 dropped sm_70 from its CUDA 12.8/12.9 builds (pytorch PR #172598, #175253): a V100 fails there
    ("2.11.0+cu128", "12.8", "v100", Severity.FAIL),
    ("2.11.0+cu129", "12.9", "v100", Severity.FAIL),
    ("2.10.0+cu128", "12.8", "v100", Severity.OK),  # 2.8-2.10 cu128 have sm_70 (read in PyPI's wheels)
    ("2.8.0+cu128", "12.8", "v100", Severity.OK),
    ("2.7.1+cu128", "12.8", "v100", Severity.FAIL),  # 2.7's cu128 did not have it yet
    ("2.11.0+cu126", "12.6", "v100", Severity.OK),
    ("2.11.0+cu128", "12.8", "t4", Severity.OK),  # sm_75 stays
    ("2.11.0+cu128", "12.8", "b200", Severity.OK),
    ("2.12.0+cu128", "12.8", "h100", Severity.WARN),  # no cu128 build of 2.12: unknown, not judged
    ("2.6.0+cu128", "12.8", "h100", Severity.WARN),  # before the first cu128 build
])
def test_torch_arch_kernels_by_torch_release_and_cuda_variant(torch, cuda, gpu, expected):
    assert check("EK202", make_facts(gpu, {"torch": torch}, torch_cuda=cuda)).severity is expected


def test_v100_with_torch_2_11_cu128_is_told_the_same_release_for_cuda_12_6():
    finding = check("EK202", make_facts("v100", {"torch": "2.11.0+cu128"}, torch_cuda="12.8"))
    assert "'torch==2.11.0' --index-url https://download.pytorch.org/whl/cu126" in finding.fix
    assert finding.requirements == ("torch==2.11.0+cu126",) and "sm_75" in finding.evidence
    unreachable = check("EK202", make_facts("v100", {"torch": "2.15.0"}, torch_cuda="13.2"))
    assert unreachable.severity is Severity.FAIL and unreachable.requirements == ()


def test_vllm_and_torch_cuda_major():
    same = make_facts("h100", {"torch": "2.11.0", "vllm": "0.26.0"}, vllm_cudart=["libcudart.so.13"])
    assert check("EK203", same).severity is Severity.OK
    mixed = make_facts("h100", {"torch": "2.9.0+cu128", "vllm": "0.12.0"}, torch_cuda="12.8", vllm_cudart=["libcudart.so.13"])
    finding = check("EK203", mixed)
    assert finding.severity is Severity.FAIL and "libcudart.so.13" in finding.evidence
    assert check("EK203", make_facts("h100", {"torch": "2.11.0", "vllm": "0.26.0"})).severity is Severity.SKIP


def test_cpu_torch_fix_is_a_command_that_works_when_pasted():
    """No <version> placeholder (issue #12); the index names the CUDA build, since torch==2.13.0 alone is also
    satisfied by 2.13.0+cpu."""
    from envkit.rules import DOCTOR_CHECKS

    finding = DOCTOR_CHECKS["EK201"].finding(make_facts("h100", {"torch": "2.13.0+cpu"}, torch_cuda=None))
    assert finding.fix.startswith("pip install --force-reinstall 'torch==2.13.0' --index-url https://download.pytorch.org/whl/cu13")
    assert "<" not in finding.fix.split("(")[0]


def test_torch_2_15_cuda_13_2_needs_driver_595():
    """torch 2.15.0's default Linux wheel is CUDA 13.2 (issue #12): its driver floor is 595.45.04."""
    from envkit.rules import DOCTOR_CHECKS, Severity

    torch = {"torch": "2.15.0"}
    old = DOCTOR_CHECKS["EK201"].finding(make_facts("h100", torch, torch_cuda="13.2", driver="590.48.01",
                                                    driver_cuda="13.1"))
    assert old.severity is not Severity.OK and "595.45.04" in old.title + old.evidence + old.fix
    new = DOCTOR_CHECKS["EK201"].finding(make_facts("h100", torch, torch_cuda="13.2", driver="595.58.03",
                                                    driver_cuda="13.2"))
    assert new.severity is Severity.OK
    assert DOCTOR_CHECKS["EK202"].finding(make_facts("b200", torch, torch_cuda="13.2")).severity is Severity.OK
