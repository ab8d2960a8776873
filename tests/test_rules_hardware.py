from envkit.facts import Driver
from envkit.rules import DOCTOR_CHECKS, Severity
from tests.conftest import make_facts


def check(rule_id, facts):
    return DOCTOR_CHECKS[rule_id].finding(facts)


def test_linux_ok_wsl_warn_other_fail():
    assert check("EK101", make_facts()).severity is Severity.OK
    wsl = make_facts()
    wsl.host.wsl = True
    assert check("EK101", wsl).severity is Severity.WARN
    mac = check("EK101", make_facts(os_name="Darwin"))
    assert mac.severity is Severity.FAIL and "Linux" in mac.fix


def test_driver_nvml_procfs_none():
    assert check("EK102", make_facts()).severity is Severity.OK
    procfs = make_facts()
    procfs.driver = Driver(source="procfs", version="580.95.05", error="NVML: Driver Not Loaded")
    assert check("EK102", procfs).severity is Severity.WARN
    none = check("EK102", make_facts(driver=None, gpus=None))
    assert none.severity is Severity.FAIL and "install the NVIDIA driver" in none.fix


def test_gpu_present_and_cuda_visible_devices():
    assert check("EK103", make_facts(["h100", "h100"])).title == "2 GPU(s) visible"
    assert check("EK103", make_facts(gpus=None)).severity is Severity.FAIL
    hidden = check("EK103", make_facts("h100", cuda_visible_devices=""))
    assert hidden.severity is Severity.FAIL and "CUDA_VISIBLE_DEVICES" in hidden.title
    # CUDA stops at the first invalid index: "1,-1,0" shows only GPU 1
    facts = make_facts(["h100", "h100"], cuda_visible_devices="1,-1,0")
    assert [g.index for g in facts.visible_gpus()] == [1]
    mig = make_facts("a100-80gb")
    mig.gpus[0].mig_mode = True
    assert check("EK103", mig).severity is Severity.WARN


def test_vllm_compute_capability():
    assert check("EK104", make_facts("v100")).severity is Severity.OK
    p100 = check("EK104", make_facts("p100"))
    assert p100.severity is Severity.FAIL and "vllm.enabled: false" in p100.fix
    assert check("EK104", make_facts(gpus=None)).severity is Severity.SKIP


def test_vllm_compute_capability_rises_to_7_5_with_vllm_0_20():
    """vLLM's docs and wheels: 7.0+ up to 0.19.1, 7.5+ from 0.20.0 (CUDA 13 builds, no sm_70)."""
    assert check("EK104", make_facts("v100", {"vllm": "0.19.1"})).severity is Severity.OK
    new = check("EK104", make_facts("v100", {"vllm": "0.20.0"}))
    assert new.severity is Severity.FAIL and "7.5" in new.title and "vllm<0.20.0" in new.fix
    assert check("EK104", make_facts("t4", {"vllm": "0.33.0"})).severity is Severity.OK
    assert "vllm.enabled: false" in check("EK104", make_facts("p100", {"vllm": "0.19.1"})).fix


def test_bf16_needs_ampere():
    assert check("EK105", make_facts("a100-40gb")).severity is Severity.OK
    t4 = check("EK105", make_facts("t4"))
    assert t4.severity is Severity.WARN and "fp16" in t4.fix


def test_mixed_gpus_use_the_weakest():
    assert check("EK105", make_facts(["h100", "t4"])).severity is Severity.WARN


def test_fp8_w8a8_needs_ada():
    assert check("EK106", make_facts("l4")).severity is Severity.OK
    assert check("EK106", make_facts("a100-80gb")).severity is Severity.WARN


def test_unsloth_fp8():
    assert check("EK107", make_facts("h100")).severity is Severity.SKIP
    ready = make_facts("h100", {"unsloth": "2026.10.9", "torch": "2.11.0", "torchao": "0.15.0"})
    assert check("EK107", ready).severity is Severity.OK
    old = check("EK107", make_facts("a100-80gb", {"unsloth": "2026.10.9", "torch": "2.8.0", "torchao": "0.13.0"}))
    assert old.severity is Severity.WARN
    assert "sm_90" in old.evidence and "torch >= 2.9" in old.evidence and "torchao >= 0.15" in old.evidence


def test_every_rule_is_documented_with_a_stable_id():
    for rule_id, rule in DOCTOR_CHECKS.items():
        assert rule_id.startswith("EK") and len(rule_id) == 5
        assert len(rule.doc.splitlines()) >= 2, rule_id
