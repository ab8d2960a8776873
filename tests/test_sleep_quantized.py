"""EK507: a colocated vLLM that may sleep, loading FP8/NVFP4 checkpoint weights (issue #25 item 4; vllm#48680):
sleep mode loads and post-processes them inside its pool, which strands about one copy.  A warning."""

from __future__ import annotations

import json

import pytest

from envkit.launch.checks import LAUNCH_CHECKS, LaunchInputs, LaunchProbe
from envkit.launch.machine import local_config, quant_method, probe_launch
from envkit.recipe.load import parse_recipe
from envkit.rules import Severity
from tests.conftest import make_facts
from tests.test_launch import GOLDEN, layout_for, resolved_layout

FP8 = {"max_position_embeddings": 4096, "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}


def recipe_with(tmp_path, config: dict, vllm: str = "vllm: {sleep: true}\n"):
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text(json.dumps(config))
    text = (GOLDEN / "colocate-1gpu.yaml").read_text().replace("Qwen/Qwen3-0.6B", str(model))
    data = GOLDEN.parents[2] / "recipes" / "data" / "toy.jsonl"
    text = text.replace("path: ../../../recipes/data/toy.jsonl", f"path: {data}")
    return parse_recipe(text + vllm, str(tmp_path / "r.yaml"))


@pytest.mark.parametrize("config, method", [
    (FP8, "fp8"), ({"quantization_config": {"quant_method": "modelopt"}}, "modelopt"),
    ({"quantization_config": "fp8"}, None), ({}, None),
])
def test_the_checkpoints_quantization_is_read_from_its_config(tmp_path, config, method):
    assert quant_method(local_config(recipe_with(tmp_path, config))) == method


@pytest.mark.parametrize("vllm, method, expected", [
    ("vllm: {sleep: true}\n", "fp8", Severity.WARN),
    ("vllm: {sleep: auto}\n", "modelopt", Severity.WARN),  # auto may sleep where the budget needs it
    ("vllm: {sleep: false}\n", "fp8", Severity.SKIP),
    ("vllm: {sleep: true}\n", "bitsandbytes", Severity.OK),
    ("vllm: {sleep: true}\n", None, Severity.OK),
])
def test_sleep_with_fp8_or_nvfp4_checkpoint_weights_warns(tmp_path, vllm, method, expected):
    recipe = recipe_with(tmp_path, {}, vllm)
    inputs = LaunchInputs(recipe, layout_for("colocate-1gpu", 1), True, LaunchProbe(quant_method=method))
    finding = LAUNCH_CHECKS["EK507"].finding(make_facts("h100"), inputs)
    assert finding.severity is expected
    if expected is Severity.WARN:
        assert "#48680" in finding.evidence and "vllm.sleep: false" in finding.fix


def test_the_warning_reaches_the_launch_findings(tmp_path):
    recipe = recipe_with(tmp_path, FP8)
    plan = resolved_layout(recipe, str(tmp_path / "r.yaml"), 1, "1.16.0")
    inputs = LaunchInputs(recipe, plan, True, probe_launch(recipe))
    found = {f.id: f for f in LAUNCH_CHECKS.run(make_facts("h100"), inputs)}
    assert found["EK507"].severity is Severity.WARN and found["EK505"].severity is not Severity.SKIP
    finding = LAUNCH_CHECKS["EK507"].finding(make_facts("h100"), LaunchInputs(recipe, plan, False))
    assert finding.severity is Severity.SKIP
