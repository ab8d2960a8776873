import pytest

from envkit.rules import DOCTOR_CHECKS, Severity
from tests.conftest import COHERENT, make_facts


def check(rule_id, facts):
    return DOCTOR_CHECKS[rule_id].finding(facts)


@pytest.mark.parametrize("installed, expected, words", [
    ({"vllm": "0.12.0", "torch": "2.9.0"}, Severity.FAIL, "predates"),  # before the releases vllm#28129 calls stable
    ({"vllm": "0.13.0", "torch": "2.9.0"}, Severity.WARN, "FP8 checkpoints trap before vllm 0.22.0"),  # vllm#40758
    ({"vllm": "0.21.0", "torch": "2.11.0"}, Severity.WARN, "FP8"),
    ({"vllm": "0.22.0", "torch": "2.11.0"}, Severity.OK, "per-tensor FP8"),  # PR #41215, first in 0.22.0
    ({"vllm": "0.26.0", "torch": "2.11.0", "unsloth": "2026.10.9"}, Severity.WARN, "Unsloth turns fast_inference off"),
])
def test_gb10_vllm_by_version_feature_and_backend(installed, expected, words):
    finding = check("EK401", make_facts("gb10", installed))
    assert finding.severity is expected and words in finding.title
    assert "#28129" in finding.evidence and "#41215" in finding.evidence


def test_gb10_check_is_silent_elsewhere_and_without_vllm():
    assert check("EK401", make_facts("h100", {"vllm": "0.12.0", "torch": "2.9.0"})).severity is Severity.SKIP
    assert check("EK401", make_facts("gb10", {"torch": "2.11.0"})).severity is Severity.SKIP


def test_sm100_pdl():
    """vllm#30872: only switchable, from 0.15.0 by VLLM_LORA_DISABLE_PDL; TRITON_DISABLE_PDL is read by nothing."""
    old = {"vllm": "0.14.1", "torch": "2.9.1"}
    assert check("EK402", make_facts("b200", old)).severity is Severity.FAIL
    assert check("EK402", make_facts("b200", old, env={"TRITON_DISABLE_PDL": "1"})).severity is Severity.FAIL
    with_unsloth = check("EK402", make_facts("b200", old | {"unsloth": "2026.10.9"}))
    assert with_unsloth.severity is Severity.WARN and "Unsloth's own patch" in with_unsloth.title
    new = {"vllm": "0.26.0", "torch": "2.11.0"}
    unset = check("EK402", make_facts("b200", new))
    assert unset.severity is Severity.FAIL and "VLLM_LORA_DISABLE_PDL=1" in unset.title
    assert check("EK402", make_facts("b200", new, env={"VLLM_LORA_DISABLE_PDL": "1"})).severity is Severity.OK
    assert check("EK402", make_facts("h100", new)).severity is Severity.SKIP


def test_the_run_sets_the_pdl_switch_only_where_it_works(tmp_path):
    from envkit.recipe.load import parse_recipe
    from envkit.train.plan import build_plan

    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "q", "answer": "a"}\n')
    recipe = parse_recipe(f"version: 1\nmodel: {{name: m}}\ndataset: {{path: {data}}}\nrewards: [{{name: format}}]\n", "r.yaml")
    stack = {"torch": "2.11.0", "trl": "1.16.0", "transformers": "5.17.0", "peft": "0.21.0"}
    facts = make_facts("b200", stack | {"vllm": "0.26.0"})
    plan = build_plan(recipe, facts)
    assert plan.env.get("VLLM_LORA_DISABLE_PDL") == "1" and "EK402" not in {f.id for f in plan.blocking}
    facts = make_facts("b200", stack | {"vllm": "0.14.1", "torch": "2.9.1"})
    plan = build_plan(recipe, facts)
    assert "VLLM_LORA_DISABLE_PDL" not in plan.env and "TRITON_DISABLE_PDL" not in plan.env
    assert "EK402" in {f.id for f in plan.blocking}


def test_sm100_old_torch_is_unsloths_rule_only():
    """Only Unsloth claims vLLM on SM100 needs torch >= 2.9 (vllm#23724 ran B200 on torch 2.8 + vLLM 0.11.0)."""
    old = {"vllm": "0.10.2", "torch": "2.8.0"}
    assert check("EK403", make_facts("b200", old)).severity is Severity.SKIP
    assert check("EK403", make_facts("b200", old | {"unsloth": "2026.10.9"})).severity is Severity.FAIL
    assert check("EK403", make_facts("b200", {"vllm": "0.26.0", "torch": "2.11.0", "unsloth": "2026.10.9"})).severity is Severity.OK


def test_sleep_mode():
    assert check("EK404", make_facts("h100", {"vllm": "0.26.0"})).severity is Severity.OK
    assert check("EK404", make_facts("h100", {"vllm": "0.14.1"})).severity is Severity.WARN
    # vllm-project/vllm#32714: 0.14.0-0.16.x broken, fixed in 0.17.0; 0.10.2 is not (TRL's level-2 sleep)
    for version, expected in [("0.10.2", Severity.OK), ("0.13.0", Severity.OK), ("0.16.0", Severity.WARN), ("0.17.0", Severity.OK)]:
        assert check("EK404", make_facts("h100", {"vllm": version})).severity is expected, version
    # vLLM's CuMemAllocator asserts against expandable_segments up to 0.20.0; from 0.20.1 it turns them off itself
    alloc = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    for version, expected in [("0.13.0", Severity.WARN), ("0.20.0", Severity.WARN), ("0.20.1", Severity.OK),
                              ("0.26.0", Severity.OK)]:
        assert check("EK404", make_facts("h100", {"vllm": version}, env=alloc)).severity is expected, version


def test_sleep_mode_on_vllm_0_14_to_0_16_frees_the_kv_cache_not_the_weights():
    finding = check("EK404", make_facts("h100", {"vllm": "0.15.1"}))
    assert finding.severity is Severity.WARN and "KV cache only" in finding.title and "weights stay" in finding.title


@pytest.mark.parametrize("vllm, expected, unsloth_words", [
    ("0.14.1", Severity.WARN, True), ("0.14.0", Severity.WARN, True), ("0.10.2", Severity.WARN, True),
    ("0.15.1", Severity.WARN, False),  # Unsloth's standby runs there; vLLM's own window (#32714) still warns
    ("0.17.0", Severity.OK, False), ("0.13.0", Severity.OK, False),
])
def test_unsloth_standby_raises_on_vllm_0_10_and_0_14(vllm, expected, unsloth_words):
    """unsloth_zoo 2026.6.5-2026.10.9 patch_vllm raises on vLLM 0.10.x and 0.14.x with UNSLOTH_VLLM_STANDBY set."""
    finding = check("EK404", make_facts("h100", {"vllm": vllm}, installed={"unsloth-zoo": "2026.10.9"}))
    assert finding.severity is expected
    assert ("unsloth_zoo raises" in finding.title) is unsloth_words
    if unsloth_words:
        assert "vllm.sleep: false" in finding.fix and "cudaErrorIllegalAddress" in finding.evidence
    assert "unsloth" not in check("EK404", make_facts("h100", {"vllm": vllm})).title


def test_small_shm_in_container():
    finding = check("EK405", make_facts(container="docker", shm_mib=64))
    assert finding.severity is Severity.FAIL and "--ipc=host" in finding.fix
    assert check("EK405", make_facts(container="docker", shm_mib=16384)).severity is Severity.OK


def test_trl_sleep_sync_window_is_0_28_to_1_9():
    """huggingface/trl#5312: 0.28.0 (PR #4700) up to 1.9.x reload weights from disk after the sync; 1.10.0 fixed it."""
    stack = {"vllm": "0.26.0"}
    for trl, expected in [("0.27.2", Severity.OK), ("0.28.0", Severity.WARN), ("1.9.2", Severity.WARN),
                          ("1.10.0", Severity.OK), ("1.16.0", Severity.OK)]:
        finding = check("EK406", make_facts("h100", stack | {"trl": trl}))
        assert finding.severity is expected, trl
    stale = check("EK406", make_facts("h100", stack | {"trl": "1.9.2"}))
    assert "trl>=1.10.0" in stale.fix and "vllm.sleep: false" in stale.fix and "#5312" in stale.evidence
    assert check("EK406", make_facts("h100", {"trl": "1.9.2"})).severity is Severity.SKIP  # no vLLM: no sleep mode


def test_unsloth_vllm_pair_is_verified_or_an_untested_warning():
    verified = make_facts("h200", {"vllm": "0.26.0", "unsloth": "2026.10.9"})
    assert check("EK306", verified).severity is Severity.OK
    untested = check("EK306", make_facts("h200", {"vllm": "0.31.0", "unsloth": "2026.10.9"}))
    assert untested.severity is Severity.WARN and "unsloth 2026.10.9 + vllm 0.26.0" in untested.evidence
    assert check("EK306", make_facts("h200", {"vllm": "0.26.0"})).severity is Severity.SKIP


def test_pdl_without_a_switch_refuses_backend_trl_even_with_unsloth_installed(tmp_path):
    """EK402 only warns where unsloth is installed (Unsloth patches it itself), but a backend: trl run has no patch."""
    from envkit.recipe.load import parse_recipe
    from envkit.train.plan import build_plan

    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "q", "answer": "a"}\n')
    text = f"version: 1\nmodel: {{name: m}}\ndataset: {{path: {data}}}\nrewards: [{{name: format}}]\n"
    facts = make_facts("b200", {"torch": "2.9.1", "trl": "1.16.0", "vllm": "0.14.1", "unsloth": "2026.10.9"})
    blocking = {f.id: f for f in build_plan(parse_recipe(text, "r.yaml"), facts).blocking}
    assert blocking["EK402"].severity is Severity.FAIL
    unsloth = build_plan(parse_recipe("backend: unsloth\n" + text, "r.yaml"), facts)
    assert "EK402" not in {f.id for f in unsloth.blocking}


def test_ek403_blocks_only_backend_unsloth(tmp_path):
    from envkit.recipe.load import parse_recipe
    from envkit.train.plan import build_plan

    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "q", "answer": "a"}\n')
    text = f"version: 1\nmodel: {{name: m}}\ndataset: {{path: {data}}}\nrewards: [{{name: format}}]\n"
    facts = make_facts("b200", {"torch": "2.8.0", "trl": "1.16.0", "vllm": "0.10.2", "unsloth": "2026.10.9"})
    trl = build_plan(parse_recipe(text, "r.yaml"), facts)
    unsloth = build_plan(parse_recipe("backend: unsloth\n" + text, "r.yaml"), facts)
    assert "EK403" not in {f.id for f in trl.blocking} and "EK403" in {f.id for f in unsloth.blocking}


@pytest.mark.parametrize("backend, vllm, uses", [("trl", "0.26.0", True), ("unsloth", "0.26.0", False), ("trl", "0.12.0", False)])
def test_the_run_on_gb10_generates_with_vllm_where_the_backend_and_version_do(tmp_path, backend, vllm, uses):
    """envkit train keeps vLLM on GB10 for backend trl on a vLLM since 0.13.0; Unsloth turns it off itself."""
    from envkit.train.plan import build_plan
    from tests.test_patches import recipe

    facts = make_facts("gb10", COHERENT | {"trl": "1.16.0", "vllm": vllm} | ({"unsloth": "2026.10.9"} if backend == "unsloth" else {}))
    plan = build_plan(recipe(tmp_path, backend=backend), facts)
    assert plan.use_vllm is uses
    assert uses or any("EK401" in w or "predates" in w for w in plan.warnings)


@pytest.mark.parametrize("sleep, vllm, warned", [("true", "0.14.1", True), ("auto", "0.14.1", False),
                                                  ("true", "0.17.0", False)])
def test_a_sleep_true_unsloth_run_on_vllm_0_14_is_warned_before_loading(tmp_path, sleep, vllm, warned):
    """unsloth_zoo's patch_vllm raises on vLLM 0.14.x with standby on, which sleep: true turns on; auto never sleeps
    there (EK404 warns, so the plan keeps sleep off)."""
    from envkit.recipe.load import parse_recipe
    from envkit.train.plan import build_plan

    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "q", "answer": "a"}\n')
    text = (f"version: 1\nbackend: unsloth\nmodel: {{name: m}}\ndataset: {{path: {data}}}\n"
            f"rewards: [{{name: format}}]\nvllm: {{sleep: {sleep}}}\n")
    facts = make_facts("h100", {"torch": "2.9.1", "trl": "1.16.0", "vllm": vllm, "unsloth": "2026.10.9"},
                       installed={"unsloth-zoo": "2026.10.9"})
    plan = build_plan(parse_recipe(text, "r.yaml"), facts)
    assert any("unsloth_zoo raises" in w for w in plan.warnings) is warned, plan.warnings
    assert plan.sleep is (sleep == "true")
