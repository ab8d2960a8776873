"""EK506: server mode's packed weight sync against sharded layouts (issue #25 item 4; review of trl PR #6765).
trl 1.11-1.16 buffer views of FSDP1's summoned parameters past their summon; envkit's own layouts (LoRA under
ZeRO-3, FSDP2) are not affected, only a recipe's own accelerate config with FSDP version 1."""

from __future__ import annotations

import pytest

from envkit.launch.checks import LAUNCH_CHECKS, LaunchInputs, LaunchProbe
from envkit.launch.machine import fsdp_version, probe_launch
from envkit.recipe.load import load_recipe
from envkit.rules import Severity
from tests.conftest import make_facts
from tests.test_launch import GOLDEN, layout_for, resolved_layout

ACCELERATE = "compute_environment: LOCAL_MACHINE\ndistributed_type: {kind}\n{extra}num_processes: 3\n"


def server_recipe(tmp_path, kind: str | None, extra: str = ""):
    """The golden 1+3 server recipe, with its ZeRO-3 backend or an accelerate config of ``kind`` instead."""
    text = (GOLDEN / "server-1+3-zero3.yaml").read_text()
    data = GOLDEN.parents[2] / "recipes" / "data" / "toy.jsonl"
    text = text.replace("path: ../../../recipes/data/toy.jsonl", f"path: {data}")
    if kind is not None:
        (tmp_path / "accelerate.yaml").write_text(ACCELERATE.format(kind=kind, extra=extra))
        text = text.replace("backend: deepspeed-zero3", "accelerate_config: accelerate.yaml")
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return load_recipe(path)


@pytest.mark.parametrize("kind, extra, version", [
    ("FSDP", "", 1),  # accelerate's default FSDP version
    ("FSDP", "fsdp_config:\n  fsdp_version: 1\n", 1),
    ("FSDP", "fsdp_config:\n  fsdp_version: 2\n", 2),
    ("DEEPSPEED", "", None),
    (None, "", None),  # envkit's own deepspeed-zero3 backend
])
def test_the_fsdp_version_is_read_from_the_recipes_accelerate_config(tmp_path, kind, extra, version):
    assert fsdp_version(server_recipe(tmp_path, kind, extra)) == version


@pytest.mark.parametrize("trl, version, expected", [
    ("1.16.0", 1, Severity.WARN), ("1.11.0", 1, Severity.WARN), ("1.13.0rc1", 1, Severity.WARN),
    ("1.10.0", 1, Severity.OK),  # TRL's own server sent each tensor before leaving the summon
    ("1.16.0", 2, Severity.OK),  # FSDP2 yields full_tensor() copies
    ("1.16.0", None, Severity.OK),  # LoRA under envkit's ZeRO-3: the whole model is gathered once
])
def test_fsdp1_with_server_mode_warns_inside_trls_window(trl, version, expected):
    recipe = load_recipe(GOLDEN / "server-1+3-zero3.yaml")
    inputs = LaunchInputs(recipe, layout_for("server-1+3-zero3", 4), True, LaunchProbe(fsdp_version=version))
    finding = LAUNCH_CHECKS["EK506"].finding(make_facts(["h100"] * 4, {"trl": trl}), inputs)
    assert finding.severity is expected
    if expected is Severity.WARN:
        assert "#6765" in finding.evidence and "fsdp_version: 2" in finding.fix


def test_colocate_and_no_vllm_are_not_its_business():
    recipe = load_recipe(GOLDEN / "colocate-2gpu.yaml")
    inputs = LaunchInputs(recipe, layout_for("colocate-2gpu", 2), True, LaunchProbe(fsdp_version=1))
    assert LAUNCH_CHECKS["EK506"].finding(make_facts(["h100"] * 2, {"trl": "1.16.0"}), inputs).severity is Severity.SKIP


def test_the_warning_reaches_the_launch_findings(tmp_path):
    recipe = server_recipe(tmp_path, "FSDP")
    plan = resolved_layout(recipe, str(tmp_path / "recipe.yaml"), 4, "1.16.0")
    found = {f.id: f for f in LAUNCH_CHECKS.run(make_facts(["h100"] * 4, {"trl": "1.16.0"}),
                                                    LaunchInputs(recipe, plan, True, probe_launch(recipe)))}
    assert found["EK506"].severity is Severity.WARN and "FSDP1" in found["EK506"].title
