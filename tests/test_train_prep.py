"""Before and around a run: the training dtype, the prompts that fit, and reading metrics.jsonl back."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.recipe.load import RecipeError, parse_recipe
from envkit.rules import DOCTOR_CHECKS
from envkit.train.decisions import training_dtype
from envkit.train.plan import build_plan
from tests.conftest import COHERENT, make_facts, needs_matplotlib

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TINY = (RECIPES / "tiny.yaml").read_text().replace("path: data/toy.jsonl", f"path: {RECIPES / 'data' / 'toy.jsonl'}")


def recipe_with_dtype(dtype: str):
    return parse_recipe(TINY.replace("build: tiny", f"build: tiny\n  dtype: {dtype}"), "tiny.yaml")


@pytest.mark.parametrize("gpu, dtype, expected, warns", [
    ("t4", "bf16", "fp16", True), ("v100", "bf16", "fp16", True), ("t4", "auto", "fp16", False),
    ("h100", "bf16", "bf16", False), ("h100", "auto", "bf16", False), ("h100", "fp32", "fp32", False),
    ("t4", "fp16", "fp16", False), (None, "bf16", "fp32", False),
])
def test_one_training_dtype_from_the_recipe_and_the_gpu(gpu, dtype, expected, warns):
    facts = make_facts(gpu)
    chosen, warning = training_dtype(recipe_with_dtype(dtype), facts, DOCTOR_CHECKS.run(facts))
    assert chosen == expected
    assert (warning is not None) == warns
    if warns:
        assert warning.startswith("model.dtype: bf16 trains in fp16 here: no bf16")


def test_bf16_on_a_t4_gives_fp16_weights_and_fp16_mixed_precision():
    facts = make_facts("t4")
    recipe = recipe_with_dtype("bf16")
    plan = build_plan(recipe, facts)
    kwargs = plan.grpo_config
    assert plan.dtype == "fp16" and not plan.bf16 and kwargs["fp16"] and not kwargs["bf16"]
    assert any(w.startswith("model.dtype: bf16 trains in fp16") for w in plan.warnings)


@pytest.fixture(scope="module")
def tokenizer():
    """The tiny model's tokenizer; building the model needs torch and transformers (the train extra)."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from envkit.train.tiny import build_tiny

    return transformers.AutoTokenizer.from_pretrained(str(build_tiny(seed=0)))


def test_prompts_longer_than_max_prompt_length_are_dropped_with_one_warning(tokenizer, capsys):
    from envkit.train.data import prepare_dataset, prompt_lengths

    recipe = parse_recipe(TINY.replace("max_prompt_length: 32", "max_prompt_length: 31"), "tiny.yaml")
    data, held_out = prepare_dataset(recipe, tokenizer)
    assert held_out is None
    lengths = prompt_lengths(list(data["prompt"]), tokenizer, chat=False)
    assert 0 < len(data) < 64 and max(lengths) <= 31
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("envkit")]  # not datasets' bars
    assert err == [(f"envkit train: warning: dropped {64 - len(data)} of 64 prompts longer than grpo.max_prompt_length "
                    "(31 tokens): vLLM's context is prompt + completion length")]
    assert len(prepare_dataset(parse_recipe(TINY, "tiny.yaml"), tokenizer)[0]) == 64  # all fit 32: no warning
    assert "envkit" not in capsys.readouterr().err


def test_no_prompt_left_is_a_recipe_error(tokenizer):
    from envkit.train.data import prepare_dataset

    recipe = parse_recipe(TINY.replace("max_prompt_length: 32", "max_prompt_length: 5"), "tiny.yaml")
    with pytest.raises(RecipeError, match="every one of the 64 prompts is longer than 5 tokens"):
        prepare_dataset(recipe, tokenizer)


def test_a_template_field_the_dataset_lacks_names_it_and_the_columns(tokenizer):
    from envkit.train.data import prepare_dataset

    recipe = parse_recipe(TINY, "tiny.yaml")
    recipe.dataset.prompt_template = "Q: {problem}"  # as a registry dataset would, past the loader's JSONL check
    with pytest.raises(RecipeError, match=r"dataset.prompt_template: dataset has no field 'problem' \(fields: question, answer\)"):
        prepare_dataset(recipe, tokenizer)


def test_chat_prompts_are_measured_through_the_chat_template(tokenizer):
    from envkit.train.data import prompt_lengths

    tokenizer.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<a>{% endif %}"
    try:
        lengths = prompt_lengths([[{"role": "user", "content": "hi"}]], tokenizer, chat=True)
    finally:
        tokenizer.chat_template = None
    assert lengths == [len(tokenizer("<user>hi<a>")["input_ids"])]


@needs_matplotlib
def test_report_skips_a_torn_last_line_and_non_object_lines(tmp_path):
    rows = [{"step": 1, "reward": 0.5}, {"step": 2, "reward": 0.7}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '[1, 2]\n"x"\n{"step": 3, "rew')
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "2 steps, reward 0.500 -> 0.700" in result.output
    assert [line.split() for line in result.stdout.splitlines()[1:]] == [["step", "reward"], ["1", "0.5"], ["2", "0.7"]]
    assert (tmp_path / "run.png").is_file()


def test_report_without_metrics_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "metrics.jsonl not found" in result.output


@pytest.mark.parametrize("trl, sleep, refused, sleeps", [
    ("1.9.2", "true", True, False),  # asked for, trains on stale weights: refused (EK406); --force runs without sleep
    ("1.9.2", "auto", False, False),  # auto never picks it there
    ("1.16.0", "true", False, True),
])
def test_sleep_mode_where_trl_trains_on_stale_weights_is_refused(trl, sleep, refused, sleeps):
    facts = make_facts("h100", COHERENT | {"trl": trl})
    recipe = parse_recipe(TINY.replace("enabled: auto", f"enabled: auto\n  sleep: {sleep}"), "tiny.yaml")
    plan = build_plan(recipe, facts)
    assert [f.id for f in plan.blocking] == (["EK406"] if refused else [])
    assert plan.sleep is sleeps
    if refused:
        assert "with --force: sleep off" in plan.blocking[0].fix


# --- the plan: resolved once, immutable (issue #15) ------------------------------------------------------------------

def test_the_plan_cannot_be_changed_after_it_is_resolved():
    """One that a later stage changed in place would make --dry-run, the run and manifest.json disagree."""
    import dataclasses

    facts = make_facts("h100")
    plan = build_plan(recipe_with_dtype("auto"), facts)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.sleep = True
    with pytest.raises(TypeError):
        plan.env["VLLM_LORA_DISABLE_PDL"] = "1"
    for name in ("warnings", "blocking", "patches", "patches_off"):
        with pytest.raises(AttributeError):
            getattr(plan, name).append("x")
    with pytest.raises(TypeError):
        dataclasses.replace(plan, grpo_config={"seed": 1}).grpo_config["seed"] = 2


def test_the_launch_layout_and_its_checks_are_part_of_the_one_plan():
    """build_plan lays the run out before it freezes the plan: the launch checks' warnings and failures join the
    plan's, and an in-process run's one training GPU joins its environment; a rank (no layout) has none."""
    from envkit.launch.checks import LaunchProbe
    from envkit.train.plan import LaunchOptions, PlanOptions

    facts = make_facts(["h100", "h100"], COHERENT)
    recipe = recipe_with_dtype("auto")
    rank = build_plan(recipe, facts)
    laid = build_plan(recipe, facts, PlanOptions(launch=LaunchOptions("tiny.yaml")))
    assert rank.launch is None and "CUDA_VISIBLE_DEVICES" not in rank.env
    assert laid.launch.in_process and laid.env == {**rank.env, "CUDA_VISIBLE_DEVICES": "0"}
    assert laid.warnings == rank.warnings and laid.blocking == rank.blocking  # EK5xx all pass here
    server = parse_recipe(TINY.replace("enabled: auto", "enabled: auto\n  mode: server")
                          + "resources: {generation_gpus: 1}\n", "tiny.yaml")
    busy = LaunchProbe(busy_ports=(server.vllm.server.port,))
    served = build_plan(server, facts, PlanOptions(launch=LaunchOptions("tiny.yaml", machine=busy, dry_run=True)))
    assert not served.launch.in_process and "CUDA_VISIBLE_DEVICES" not in served.env  # the processes get theirs
    assert [f.id for f in served.blocking] == ["EK503"] and "is in use" in served.blocking[0].title
    assert served.launch.processes[0].argv[served.launch.processes[0].argv.index("--gpu-memory-utilization") + 1] \
        == "0.9" == str(served.vllm_utilization)  # a server's auto share: TRL's vllm-serve default, resolved once


def test_dry_run_the_runner_and_the_manifest_read_one_plan(monkeypatch, tmp_path):
    """What --dry-run prints is what the runner is handed: one resolved plan, GRPOConfig's arguments in it."""
    import envkit.train.runner as runner
    from envkit.train.runner import _manifest

    handed = []
    monkeypatch.setattr(runner, "train", lambda plan, resume, verbose=False: handed.append((plan.recipe, plan)) or 0)
    args = ["train", "tiny", "--max-steps", "3", "--output", str(tmp_path / "run")]
    assert CliRunner().invoke(main, args).exit_code == 0
    dry = CliRunner().invoke(main, args + ["--dry-run"])
    assert dry.exit_code == 0, dry.output
    printed, (recipe, plan) = json.loads(dry.stdout), handed[0]
    assert printed["grpo_config"] == dict(plan.grpo_config) and plan.grpo_config["max_steps"] == 3
    assert recipe.grpo.max_steps == 3  # --max-steps: a new recipe value, the loaded one is not changed
    assert {k: printed["plan"][k] for k in ("use_vllm", "sleep", "gpu", "env", "patches", "patches_off")} == \
        {k: v for k, v in plan.to_dict().items() if k in ("use_vllm", "sleep", "gpu", "env", "patches", "patches_off")}
    from datetime import datetime, timezone

    manifest = _manifest(recipe, plan, dict(plan.grpo_config), [], 3, datetime.now(timezone.utc), 1.0, None, True,
                         chat=False)
    assert manifest["plan"] == plan.to_dict() and json.loads(json.dumps(manifest))["plan"] == plan.to_dict()


# --- what a check means to a run (issue #15; said on the train side, envkit.train.check_impact, issue #27) ---------

@pytest.mark.parametrize("gpus", [None, "t4", "h100", "b200", "gb10", ["h100", "h100"]])
@pytest.mark.parametrize("change", [("", ""), ("enabled: auto", "enabled: false"),
                                    ("build: tiny", "build: tiny\n  load_in_4bit: true")])
def test_every_finding_the_plan_reports_comes_from_a_registered_rule(gpus, change):
    from envkit.catalog import find

    facts = make_facts(gpus, {"vllm": "0.28.0", "trl": "1.16.0", "torch": "2.10.0", "transformers": "5.2.0"})
    text = TINY.replace(*change)
    plan = build_plan(parse_recipe(text, "tiny.yaml"), facts)
    for finding in plan.blocking:
        assert find(finding.id) is not None, finding  # so `envkit doctor --explain ID` documents it


@pytest.mark.parametrize("module", ["plan.py", "decisions.py"])
def test_the_plan_reads_rules_by_their_impact_not_by_id(module):
    """What a check means to a run is declared once, on the train side (envkit.train.check_impact), not listed by
    the plan's decisions."""
    source = (Path(__file__).parents[1] / "envkit" / "train" / module).read_text()
    code = "\n".join(line.split("#")[0] for line in source.splitlines())
    assert not re.findall(r"[\"']EK\d{3}[\"']", code)


def test_check_impact_decides_what_refuses_a_run():
    from envkit.launch.checks import LAUNCH_CHECKS
    from envkit.rules import DOCTOR_CHECKS
    from envkit.train.check_impact import blocks

    def refused(check_id: str, **changes) -> bool:
        return blocks(DOCTOR_CHECKS[check_id], **{"gpu": True, "use_vllm": True, "backend": "trl", **changes})

    assert refused("EK300", gpu=False, use_vllm=False)  # the Python stack: any run
    assert not refused("EK101", gpu=False) and refused("EK101")  # Linux: only where a GPU is used
    assert refused("EK301") and not refused("EK301", use_vllm=False)
    assert not refused("EK402")  # planned: the plan sets the variable or refuses itself
    assert not refused("EK403") and refused("EK403", backend="unsloth")
    assert blocks(LAUNCH_CHECKS["EK501"], gpu=False, use_vllm=False, backend="unsloth")  # a layout: any run
