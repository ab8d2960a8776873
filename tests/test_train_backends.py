"""backend: unsloth and 4-bit with vLLM >= 0.28, without unsloth, vLLM or a GPU: facts built in code, the CLI's dry run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.knowledge import curated
from envkit.recipe.load import RecipeError, parse_recipe
from envkit.train.config import unsloth_model_kwargs, unsloth_peft_kwargs
from envkit.train.decisions import check_packages, vllm_utilization
from envkit.train.plan import Plan, build_plan
from tests.conftest import COHERENT, make_facts

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TINY = (RECIPES / "tiny.yaml").read_text().replace("path: data/toy.jsonl", f"path: {RECIPES / 'data' / 'toy.jsonl'}")
UNSLOTH = ("backend: trl\n", "backend: unsloth\n")
FOUR_BIT = ("  build: tiny\n", "  build: tiny\n  load_in_4bit: true\n")


def tiny(*replacements: tuple[str, str]) -> str:
    text = TINY
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def with_vllm(*lines: str) -> tuple[str, str]:
    return "vllm:\n  enabled: auto\n", "vllm:\n  enabled: auto\n" + "".join(f"  {line}\n" for line in lines)


def plan_for(text: str, facts) -> Plan:
    return build_plan(parse_recipe(text, "recipe.yaml"), facts)


def dry_run_on(monkeypatch, tmp_path: Path, text: str, facts):
    monkeypatch.setattr("envkit.probe.collect", lambda: facts)
    path = write(tmp_path, text)
    return path, CliRunner().invoke(main, ["train", str(path), "--dry-run"])


# backend: unsloth

@pytest.mark.parametrize("args", [["--dry-run"], []], ids=["dry-run", "run"])
def test_missing_unsloth_is_one_line_naming_the_install_and_exit_2(tmp_path, args):
    path = write(tmp_path, tiny(UNSLOTH))
    result = CliRunner().invoke(main, ["train", str(path), "--output", str(tmp_path / "run"), *args])
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    expected = f"envkit train: {path}: backend: unsloth needs unsloth, which is not installed here: pip install unsloth (or use backend: trl)"
    assert result.stderr.splitlines() == [expected]
    assert not (tmp_path / "run").exists()


def test_check_packages_reads_the_probed_packages():
    recipe = parse_recipe(tiny(UNSLOTH), "recipe.yaml")
    with pytest.raises(RecipeError, match="pip install unsloth"):
        check_packages(recipe, make_facts("h100", COHERENT))
    check_packages(recipe, make_facts("h100", {**COHERENT, "unsloth": "2026.9.1"}))
    check_packages(parse_recipe(TINY, "recipe.yaml"), make_facts("h100", COHERENT))  # backend: trl needs no unsloth


def test_unsloth_dry_run_shows_the_backend_and_fast_language_model_arguments(monkeypatch, tmp_path):
    facts = make_facts("h100", {**COHERENT, "unsloth": "2026.9.1"})
    _, result = dry_run_on(monkeypatch, tmp_path, tiny(UNSLOTH, with_vllm("sleep: true", "max_lora_rank: 16")), facts)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["plan"]["backend"] == "unsloth" and out["plan"]["use_vllm"] is True and out["plan"]["sleep"] is True
    # Unsloth's sleep mode, set before it is imported, with the budget's share kept (not Unsloth's standby 0.88)
    assert out["plan"]["env"] == {"UNSLOTH_VLLM_STANDBY": "1", "UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE": "1"}
    assert out["plan"]["env"] == curated("unsloth_vllm_standby")["env"]
    loaded = out["unsloth"]["from_pretrained"]
    assert loaded["fast_inference"] is True and loaded["max_lora_rank"] == 16 and loaded["load_in_4bit"] is False
    assert loaded["gpu_memory_utilization"] == out["grpo_config"]["vllm_gpu_memory_utilization"]  # the TRL path's share
    assert out["unsloth"]["get_peft_model"]["r"] == 8


def test_trl_backend_gets_no_unsloth_standby(monkeypatch, tmp_path):
    _, result = dry_run_on(monkeypatch, tmp_path, tiny(with_vllm("sleep: true")), make_facts("h100", COHERENT))
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["plan"]["backend"] == "trl" and out["plan"]["sleep"] is True and out["plan"]["env"] == {}
    assert "unsloth" not in out


def test_fast_language_model_arguments():
    recipe = parse_recipe(tiny(UNSLOTH, FOUR_BIT), "recipe.yaml")
    plan = Plan(recipe, Path("out"), use_vllm=True, sleep=False, gpu="NVIDIA H100", bf16=True,
                vllm_utilization=vllm_utilization(recipe, None))  # no budget (no GPU memory known): TRL's default
    assert unsloth_model_kwargs(recipe, plan, "meta-llama/Llama-3.2-1B-Instruct") == {
        "model_name": "meta-llama/Llama-3.2-1B-Instruct", "max_seq_length": 256, "load_in_4bit": True,
        "fast_inference": True, "max_lora_rank": 8, "gpu_memory_utilization": 0.3,
        "trust_remote_code": False}
    assert unsloth_peft_kwargs(recipe) == {
        "r": 8, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "lora_alpha": 16, "lora_dropout": 0.0,
        "use_gradient_checkpointing": "unsloth", "random_state": 0}
    pinned = parse_recipe(tiny(UNSLOTH, with_vllm("gpu_memory_utilization: 0.55", "max_lora_rank: 32")), "recipe.yaml")
    off = Plan(pinned, Path("out"), use_vllm=False, sleep=False, gpu="NVIDIA H100", bf16=True,
               vllm_utilization=vllm_utilization(pinned, None))
    loaded = unsloth_model_kwargs(pinned, off, "m")
    assert (loaded["fast_inference"], loaded["max_lora_rank"], loaded["gpu_memory_utilization"]) == (False, 32, 0.55)


def test_max_lora_rank_below_the_lora_rank_is_a_one_line_error(tmp_path):
    text = tiny(with_vllm("max_lora_rank: 4"))
    path = write(tmp_path, text)
    result = CliRunner().invoke(main, ["train", str(path), "--dry-run"])
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "max_lora_rank" in row)
    assert result.exit_code == 2 and result.stdout == ""
    expected = f"envkit train: {path}:{line}: vllm.max_lora_rank: must be at least lora.r (8), got 4: vLLM cannot load a LoRA adapter of a higher rank"
    assert result.stderr.splitlines() == [expected]
    assert parse_recipe(tiny(with_vllm("max_lora_rank: 8")), "recipe.yaml").vllm.max_lora_rank == 8


def test_unsloth_with_a_vllm_server_is_refused_by_the_loader():
    with pytest.raises(RecipeError, match=r"recipe.yaml:\d+: vllm.mode: backend: unsloth generates with its own vLLM"):
        parse_recipe(tiny(UNSLOTH, with_vllm("mode: server")), "recipe.yaml")


# 4-bit with vLLM >= 0.28: the bitsandbytes plugin

BNB = curated("vllm_bnb_plugin")
NEW_VLLM = {**COHERENT, "vllm": BNB["vllm_min"]}


def test_4bit_on_a_vllm_without_bitsandbytes_refuses_and_turns_vllm_off():
    plan = plan_for(tiny(FOUR_BIT), make_facts("h100", NEW_VLLM))
    refusal = [f for f in plan.blocking if f.id == "EK407"]
    assert len(refusal) == 1 and refusal[0].requirements == (BNB["package"],)
    assert refusal[0].fix.startswith(f"pip install {BNB['package']}  (with --force: no vLLM")
    assert plan.use_vllm is False and plan.sleep is False  # what --force runs: model.generate, never vLLM's crash
    assert plan.vllm_off == f"{refusal[0].title} (--force)"


@pytest.mark.parametrize("recipe, packages, installed", [
    (tiny(UNSLOTH, FOUR_BIT), NEW_VLLM, {BNB["package"]: "0.0.3"}),  # the plugin is there (backend trl: EK408)
    (tiny(UNSLOTH, FOUR_BIT), {**COHERENT, "vllm": "0.27.1"}, {}),  # bitsandbytes still in tree
    (tiny(), NEW_VLLM, {}),  # not 4-bit
], ids=["plugin-installed", "vllm-0.27", "not-4bit"])
def test_no_refusal_where_vllm_can_load_the_model(recipe, packages, installed):
    plan = plan_for(recipe, make_facts("h100", {**packages, "unsloth": "2026.9.1"}, installed=installed))
    assert plan.use_vllm is True and not [f for f in plan.blocking if f.id == "EK407"]
    assert plan.vllm_off is None


@pytest.mark.parametrize("recipe, gpus", [
    (tiny(FOUR_BIT, ("vllm:\n  enabled: auto\n", "vllm:\n  enabled: false\n")), "h100"),  # generation without vLLM
    (tiny(FOUR_BIT), None),  # no GPU: no vLLM anyway
], ids=["vllm-disabled", "cpu"])
def test_no_refusal_where_vllm_is_not_used(recipe, gpus):
    plan = plan_for(recipe, make_facts(gpus, NEW_VLLM))
    assert plan.use_vllm is False and not plan.blocking
    assert plan.vllm_off == ("vllm.enabled: false" if gpus else "no GPU visible")  # said by envkit train (summary.py)


def test_the_dry_run_prints_the_refusal_and_the_fix(monkeypatch, tmp_path):
    _, result = dry_run_on(monkeypatch, tmp_path, tiny(FOUR_BIT), make_facts("h100", NEW_VLLM))
    assert result.exit_code == 1, result.output  # the run would be refused
    assert json.loads(result.stdout)["plan"]["use_vllm"] is False
    assert f"refused: EK407 4-bit generation with vllm {BNB['vllm_min']} needs {BNB['package']}" in result.stderr
    assert f"fix: pip install {BNB['package']}" in result.stderr


# 4-bit on backend trl: TRL's merge/unmerge sync re-quantizes the NF4 weights every step (EK408)

def test_4bit_on_backend_trl_with_vllm_is_refused_and_runs_without_vllm_when_forced():
    plan = plan_for(tiny(FOUR_BIT), make_facts("h100", COHERENT))
    refusal = [f for f in plan.blocking if f.id == "EK408"]
    assert len(refusal) == 1 and "re-quantizes a 4-bit policy" in refusal[0].title
    assert "model.load_in_4bit: false" in refusal[0].fix and "backend: unsloth" in refusal[0].fix
    assert plan.use_vllm is False and plan.vllm_off == f"{refusal[0].title} (--force)"


@pytest.mark.parametrize("recipe", [tiny(), tiny(UNSLOTH, FOUR_BIT),
                                    tiny(FOUR_BIT, ("vllm:\n  enabled: auto\n", "vllm:\n  enabled: false\n"))],
                         ids=["bf16", "unsloth-4bit", "4bit-without-vllm"])
def test_no_4bit_sync_refusal_where_trls_vllm_sync_does_not_merge_into_nf4(recipe):
    plan = plan_for(recipe, make_facts("h100", {**COHERENT, "unsloth": "2026.9.1"}))
    assert not [f for f in plan.blocking if f.id == "EK408"]


@pytest.mark.parametrize("report_to, installed, error", [
    ("[wandb]", {}, "output.report_to: wandb needs wandb, which is not installed: pip install wandb"),
    ("[wandb]", {"wandb": "0.22.0"}, None),
    ("[tensorboard]", {"tensorboardx": "2.6"}, None),
    ("[none]", {}, None),
    ("[all]", {}, None),
    ("[dagshub]", {"dagshub": "0.6"}, "output.report_to: dagshub needs dagshub+mlflow, which is not installed: pip install dagshub mlflow"),
    ("[dagshub]", {"dagshub": "0.6", "mlflow": "3.0"}, None),
    ("[wandbb]", {}, "output.report_to: unknown integration 'wandbb'"),
])
def test_report_to_is_checked_before_anything_loads(report_to, installed, error):
    """Issue #14: report_to: [wandb] passed --dry-run, then crashed after the model had loaded."""
    recipe = parse_recipe(TINY.replace("  keep: 2", f"  keep: 2\n  report_to: {report_to}"), "recipe.yaml")
    facts = make_facts("h100", COHERENT, installed=installed)
    if error is None:
        check_packages(recipe, facts)
    else:
        with pytest.raises(RecipeError, match=re.escape(error)):
            check_packages(recipe, facts)
