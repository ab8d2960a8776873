"""The VRAM budget: hand-computed terms, recommendations on t4/h100, the `envkit budget` CLI."""

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from envkit.budget.model import (
    GIB,
    MIB,
    BudgetInputs,
    ModelShape,
    activation_bytes,
    budget,
    kv_needed,
    logits_bytes,
    lora_params,
    weight_bytes,
)
from envkit.budget.recipe import budget_inputs, recommend_recipe
from envkit.budget.recommend import recommend
from envkit.budget.shapes import (
    UnknownName,
    config_fields,
    known_shapes,
    resolve_gpu,
    resolve_model,
    shape_from_config,
)
from envkit.cli import main
from envkit.recipe.library import find_recipe
from envkit.recipe.load import RecipeError, load_recipe, parse_recipe
from envkit.train.plan import build_plan
from tests.conftest import make_facts, needs_train

# grpo-llama3b: Llama-3.2-3B-Instruct, bf16, LoRA r=64 on every linear, 4 prompts x 8 generations, 512+256 tokens.
LLAMA3B = resolve_model("meta-llama/Llama-3.2-3B-Instruct")
ARGS = ["budget", "--model", "meta-llama/Llama-3.2-3B-Instruct", "--lora-r", "64", "--num-generations", "8",
        "--max-completion-length", "256"]


def on(gpu: str, **changes) -> BudgetInputs:
    return BudgetInputs(LLAMA3B, resolve_gpu(gpu)[1], **changes)


def test_kv_bytes_per_token_llama_3b():
    assert LLAMA3B.kv_bytes_per_token(2) == 2 * 28 * 8 * 128 * 2 == 114_688
    assert LLAMA3B.kv_bytes_per_token(1) == 114_688 / 2  # FP8 KV cache


def test_kv_needed_counts_every_sequence_in_whole_blocks():
    # 32 sequences x 768 tokens (48 blocks of 16) x 114,688 bytes
    assert kv_needed(on("h100")) == 32 * 768 * 114_688
    assert kv_needed(on("h100", max_completion_length=250)) == 32 * 768 * 114_688


def test_lora_params_small_hand_case():
    shape = ModelShape("tiny", layers=2, hidden=8, intermediate=16, heads=2, kv_heads=1, head_dim=4, vocab=32,
                       tied_embeddings=True)
    # q 8->8, v 8->4: r x (in + out) per layer = 2*(8+8) + 2*(8+4) = 56, two layers
    assert lora_params(shape, 2, ("q_proj", "v_proj")) == 112


def test_llama_1b_weights_are_two_bytes_per_param():
    shape = resolve_model("Llama-3.2-1B")
    assert shape.params() == 1_235_814_400
    assert abs(weight_bytes(shape, 2) - 2 * 1_235_814_400) <= 0.01 * 2 * 1_235_814_400
    assert weight_bytes(shape, 2, load_in_4bit=True) < 0.5 * weight_bytes(shape, 2)  # embeddings stay bf16


@pytest.mark.parametrize("name, params", [("Qwen2.5-0.5B", 494_032_768), ("Llama-3.1-8B", 8_030_261_248),
                                          ("Qwen2.5-7B", 7_615_616_512), ("Qwen3-8B", 8_190_735_360)])
def test_shipped_shapes_give_published_param_counts(name, params):
    assert resolve_model(name).params() == params


def test_every_shipped_shape_has_a_source():
    assert all(entry["source"].startswith("https://huggingface.co/") for entry in known_shapes().values())


def test_config_json_matches_shipped_shape(tmp_path):
    config = {"model_type": "qwen2", "num_hidden_layers": 24, "hidden_size": 896, "intermediate_size": 4864,
              "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert replace(resolve_model(str(tmp_path)), name="Qwen2.5-0.5B") == resolve_model("Qwen/Qwen2.5-0.5B-Instruct")


@pytest.mark.parametrize("name", ["Llama-3.2-1B", "Llama-3.2-3B", "Llama-3.1-8B"])
def test_a_shapes_config_fields_give_the_shape_back(name):
    """The benchmarks build random-init models of the shipped shapes from these fields (grpo_bench.SHAPES)."""
    shape = resolve_model(name)
    config = config_fields(shape) | {"tie_word_embeddings": shape.tied_embeddings}
    assert shape_from_config(config, name) == shape


def test_unknown_names_name_the_closest():
    with pytest.raises(UnknownName, match="closest: Qwen3-4B"):
        resolve_model("Qwen3-4")
    with pytest.raises(UnknownName, match="did you mean h100"):
        resolve_gpu("h1000")


def test_llama3b_bf16_does_not_fit_a_t4_and_4bit_does():
    rec = recommend(on("t4"))
    assert not rec.fits and rec.plan.sleep  # not even with sleep mode
    fixes = {f.name: f for f in rec.fixes}
    assert fixes["4-bit weights"].fits and fixes["4-bit weights"].saving > 3 * GIB
    assert rec.fixes[0].name == "4-bit weights"
    assert recommend(on("t4", load_in_4bit=True)).fits


def test_llama3b_fits_an_h100_without_sleep():
    rec = recommend(on("h100"))
    assert rec.fits and not rec.plan.sleep
    # vLLM sized to its weights + workspace + every sequence's KV cache with 10% margin: ~0.13 of 80 GiB
    assert 0.1 <= rec.plan.vllm.utilization <= 0.7
    assert rec.plan.vllm.kv_cache >= 1.1 * rec.plan.vllm.kv_needed


def test_sleep_is_recommended_when_only_sleep_fits():
    rec = recommend(on("a10g", load_in_4bit=True, grad_checkpointing=False))  # checkpointing pinned off
    assert rec.fits and rec.plan.sleep
    awake = replace(rec.plan, sleep=False)
    assert awake.headroom < rec.plan.headroom


def test_checkpointing_and_fp8_kv_shrink_their_terms():
    base = recommend(on("h100", grad_checkpointing=True)).plan
    assert recommend(on("h100", grad_checkpointing=False)).plan.training.activations > 5 * base.training.activations
    assert recommend(on("h100", kv_cache_dtype="fp8")).plan.vllm.utilization < base.vllm.utilization


@pytest.fixture
def runner():
    return CliRunner()


def test_cli_exit_codes(runner):
    assert runner.invoke(main, ARGS + ["--target", "h100"]).exit_code == 0
    result = runner.invoke(main, ARGS + ["--target", "t4"])
    assert result.exit_code == 1 and "load_in_4bit: true" in result.output
    assert runner.invoke(main, ARGS + ["--target", "t4", "--load-in-4bit"]).exit_code == 0


def test_cli_usage_errors_exit_two_with_one_line(runner):
    result = runner.invoke(main, ["budget", "--model", "Lama-3.2-3B", "--target", "h100"])
    assert result.exit_code == 2 and "closest: Llama-3.2-3B" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert runner.invoke(main, ["budget", "--model", "Llama-3.2-3B", "--target", "h10"]).exit_code == 2
    assert runner.invoke(main, ["budget", "--model", "Llama-3.2-3B"]).exit_code == 2


def test_cli_json_shape(runner):
    doc = json.loads(runner.invoke(main, ARGS + ["--target", "h100", "--json"]).output)
    assert doc["schema"] == "envkit.budget/1" and doc["fits"] is True
    assert set(doc["recommended"]) == {"vllm_mode", "vllm_gpu_memory_utilization", "vllm_enable_sleep_mode"}
    assert doc["model"]["params"] == 3_212_749_824 and doc["gpu"]["memory_gib"] == 80
    assert doc["breakdown_gib"]["headroom"] > 50 and doc["fixes"] == [] and doc["combined"] is None
    failing = json.loads(runner.invoke(main, ARGS + ["--target", "t4", "--json"]).output)
    assert failing["fits"] is False and failing["fixes"][0] == {
        "name": "4-bit weights", "setting": "model.load_in_4bit: true with backend: unsloth",
        "saving_gib": failing["fixes"][0]["saving_gib"], "fits": True}


# --- the budget of a recipe (`envkit budget RECIPE`), and the runner's `auto` settings ---------------------------

H100 = resolve_gpu("h100")[1]


def shipped(name: str):
    return load_recipe(find_recipe(name))


def recipe_with(**sections) -> str:
    """A minimal recipe text; each keyword is a YAML section written inline."""
    base = {"model": "{name: meta-llama/Llama-3.2-3B-Instruct, dtype: bf16}",
            "dataset": "{name: openai/gsm8k, config: main}", "rewards": "[{name: exact_answer}]"}
    return "version: 1\n" + "".join(f"{k}: {v}\n" for k, v in (base | sections).items())


def test_recipe_inputs_follow_trl_generation_batches():
    inputs = budget_inputs(shipped("grpo-llama3b"), H100)
    # per_device_train_batch_size 8 x gradient_accumulation_steps 4 = 32 completions = 4 prompts x 8 generations
    assert (inputs.prompts_per_step, inputs.num_generations, inputs.concurrent_sequences) == (4, 8, 32)
    assert (inputs.micro_batch, inputs.lora_r, inputs.max_prompt_length, inputs.max_completion_length) == (8, 64, 256, 512)
    assert inputs.shape == resolve_model("Llama-3.2-3B") and inputs.dtype == "bf16" and not inputs.server_mode


def test_tiny_recipe_uses_the_tiny_builders_shape():
    shape = budget_inputs(shipped("tiny"), H100).shape
    assert (shape.layers, shape.hidden, shape.vocab, shape.tied_embeddings) == (2, 64, 259, True)


def test_recipe_dtype_auto_follows_the_gpu_and_vllm_settings_map():
    text = recipe_with(model="{name: Llama-3.2-1B, dtype: auto}",
                       vllm="{mode: server, kv_cache_dtype: fp8}", lora="{r: 8, target_modules: [all-linear]}",
                       resources="{generation_gpus: [1], training_gpus: [0]}")
    inputs = budget_inputs(parse_recipe(text), H100, bf16=False)
    assert inputs.dtype == "fp16" and inputs.server_mode and inputs.kv_cache_dtype == "fp8"
    assert len(inputs.lora_targets) == 7 and inputs.lora_r == 8
    off = budget_inputs(parse_recipe(recipe_with(vllm="{enabled: false}")), H100)
    plan = recommend(off).plan
    assert not off.use_vllm and plan.vllm is None and plan.generate_kv == kv_needed(off)
    assert plan.generation_peak > plan.training.resident + plan.generate_kv  # model.generate's KV cache counted


def test_colocated_tensor_parallel_shards_vllms_weights_not_its_kv_cache():
    """Each GPU of a TP group holds 1/tp of the weights; the group generates the prompts of all its ranks
    over 1/tp of the KV heads, so the KV cache per GPU is one rank's batch, as without TP."""
    tp2 = budget_inputs(parse_recipe(recipe_with(vllm="{tensor_parallel_size: 2}", resources="{training_gpus: 2}")), H100)
    tp1 = replace(tp2, vllm_tensor_parallel=1)
    assert tp2.vllm_tensor_parallel == 2
    one, two = budget(tp1, 0.3, False).vllm, budget(tp2, 0.3, False).vllm
    assert two.weights == pytest.approx(one.weights / 2) and two.kv_needed == one.kv_needed
    assert recommend(tp2).plan.vllm.utilization < recommend(tp1).plan.vllm.utilization
    server = budget_inputs(parse_recipe(recipe_with(vllm="{mode: server, tensor_parallel_size: 2}",
                                                    resources="{generation_gpus: [0, 1], training_gpus: [2]}")), H100)
    assert server.vllm_tensor_parallel == 1  # the server's TP is on its own GPUs, outside this budget


def test_a_generation_batch_not_divisible_by_num_generations_is_a_recipe_error():
    recipe = parse_recipe(recipe_with(grpo="{num_generations: 8, per_device_train_batch_size: 8}"), "r.yaml")
    recipe.grpo.num_generations = 6  # past the loader, which refuses it too (tests/test_recipe.py)
    with pytest.raises(RecipeError, match="not a multiple of grpo.num_generations"):
        budget_inputs(recipe, H100)


def test_fused_lm_head_and_checkpointed_activations_hand_cases():
    # TRL 1.16's fused head: one 2048 x 32768 bf16 tile + the saved hidden states (2) and their fp32 grad (4)
    assert logits_bytes(LLAMA3B, 8, 256, 2) == 2048 * 32768 * 2 + 2048 * 3072 * 6
    # checkpointed: every layer's input + the recomputed layer's activations and their gradients (two copies)
    per_layer = 6 * 3072 + 2 * (24 + 8) * 128 + 4 * 8192 + 7 * 64
    assert activation_bytes(LLAMA3B, 100, 2, True, 64, 7) == 100 * (28 * 3072 + 2 * per_layer) * 2


def test_cli_recipe_on_t4_does_not_fit_in_fp16_and_names_what_does(runner):
    result = runner.invoke(main, ["budget", "grpo-llama3b", "--target", "t4"])
    assert result.exit_code == 1
    assert "does not fit in fp16" in result.output  # no bf16 on a T4: the run would train in fp16, so does the budget
    fixes = [line for line in result.output.splitlines() if line.strip().startswith("model.load_in_4bit: true")]
    assert fixes and "fits" in fixes[0] and "not enough" not in fixes[0]
    assert runner.invoke(main, ["budget", "grpo-llama3b", "--target", "t4", "--load-in-4bit"]).exit_code == 0


def test_cli_recipe_on_h100_fits_with_a_recommended_utilization(runner):
    doc = json.loads(runner.invoke(main, ["budget", "grpo-llama3b", "--target", "h100", "--json"]).output)
    assert doc["fits"] is True and doc["recommended"]["vllm_enable_sleep_mode"] is False
    utilization = doc["recommended"]["vllm_gpu_memory_utilization"]
    assert 0.05 < utilization < 0.3  # weights 6 GiB + KV for 32 x 768 tokens + workspace: far below TRL's 0.3
    assert utilization == recommend_recipe(shipped("grpo-llama3b"), H100).plan.vllm.utilization
    assert doc["inputs"]["prompts_per_step"] == 4 and doc["inputs"]["micro_batch"] == 8


def test_cli_recipe_errors_are_one_line_exit_two(runner, tmp_path):
    for args in (["budget", "no-such-recipe", "--target", "h100"], ["budget", "--target", "h100"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe_with(model="{name: Qwen3-4, dtype: bf16}"))
    result = runner.invoke(main, ["budget", str(bad), "--target", "h100"])
    assert result.exit_code == 2 and "closest: Qwen3-4B" in result.output and "Traceback" not in result.output


def test_cli_target_defaults_to_the_local_gpu(runner, monkeypatch):
    monkeypatch.setattr("envkit.probe.collect", lambda: make_facts("a10g"))
    result = runner.invoke(main, ["budget", "grpo-llama1b"])
    assert result.exit_code == 0 and "NVIDIA A10G (24 GiB)" in result.output
    monkeypatch.setattr("envkit.probe.collect", lambda: make_facts(None, driver=None))
    result = runner.invoke(main, ["budget", "grpo-llama1b"])
    assert result.exit_code == 2 and "pass --target" in result.output


def test_a_pinned_utilization_is_kept_and_auto_is_the_first_fix(tmp_path):
    recipe = parse_recipe(recipe_with(vllm="{gpu_memory_utilization: 0.95, sleep: false}"))
    rec = recommend_recipe(recipe, H100)
    assert rec.plan.vllm.utilization == 0.95 and not rec.fits
    assert rec.fixes[0].setting == "vllm.gpu_memory_utilization: auto, vllm.sleep: auto" and rec.fixes[0].fits


def plan_on(recipe, gpu="h100", vllm_version="0.26.0"):
    facts = make_facts(gpu, {"torch": "2.11.0+cu130", "vllm": vllm_version, "trl": "1.16.0"},
                       vllm_cudart=["libcudart.so.13"])
    plan = build_plan(recipe, facts)
    return plan, plan.grpo_config


def test_runner_auto_utilization_and_sleep_are_the_budgets():
    recipe = shipped("grpo-llama3b")
    plan, kwargs = plan_on(recipe, "h100")
    assert plan.use_vllm and plan.gpu_memory == 80 * 1024 * MIB
    expected = recommend_recipe(recipe, plan.gpu_memory).plan
    assert kwargs["vllm_gpu_memory_utilization"] == expected.vllm.utilization
    assert kwargs["vllm_enable_sleep_mode"] is expected.sleep is False  # fits awake: no sleep, no wake-up cost
    assert not any("memory budget" in w for w in plan.warnings)


def test_the_plan_warns_when_the_budget_does_not_fit():
    plan, _ = plan_on(shipped("grpo-llama3b"), "t4")
    assert plan.sleep  # sleep: auto, and only sleeping comes close
    assert any(w.startswith("memory budget: about") and "envkit budget" in w for w in plan.warnings)


def test_unknown_model_falls_back_to_trls_default_with_a_warning():
    plan, kwargs = plan_on(parse_recipe(recipe_with(model="{name: some-org/unknown-model, dtype: bf16}")))
    assert kwargs["vllm_gpu_memory_utilization"] == plan.vllm_utilization == 0.3  # TRL's GRPOConfig default
    assert any("no memory budget" in w for w in plan.warnings)


def test_budget_with_pinned_sleep_keeps_only_the_workspace_while_training():
    inputs = on("h100")
    awake, asleep = budget(inputs, 0.3, False), budget(inputs, 0.3, True)
    assert awake.training_peak - asleep.training_peak == pytest.approx(awake.vllm.share - awake.vllm.workspace)


def test_an_impossible_recipe_says_so_instead_of_an_absurd_share(tmp_path):
    """Issue #13: a 10^12-token completion printed gpu_memory_utilization=46997070.41."""
    from click.testing import CliRunner

    from envkit.cli import main
    from envkit.recipe.library import find_recipe

    source = find_recipe("grpo-llama3b")
    text = source.read_text().replace("path: data/", f"path: {source.parent / 'data'}/")
    text = "\n".join("  max_completion_length: 1000000000000" if line.strip().startswith("max_completion_length:") else line
                     for line in text.splitlines())
    recipe = tmp_path / "huge.yaml"
    recipe.write_text(text + "\n")
    result = CliRunner().invoke(main, ["budget", str(recipe), "--target", "h100"])
    assert "vllm_gpu_memory_utilization=more than the whole GPU" in result.output
    assert "46997070" not in result.output


def test_the_budget_is_computed_once_from_yaml_to_grpo_config(monkeypatch):
    """Issue #15: plan_run computed it (twice) and grpo_kwargs again; now the plan resolves the share once."""
    import envkit.budget.recipe as budget_recipe

    calls = []
    real_recommend = budget_recipe.recommend  # what every recommend_recipe call runs, whoever imported it
    monkeypatch.setattr(budget_recipe, "recommend", lambda *a, **k: calls.append(1) or real_recommend(*a, **k))
    real = recommend_recipe
    for sleep in ("auto", "true", "false"):
        calls.clear()
        recipe = shipped("grpo-llama3b")
        recipe.grpo.micro_batch = None  # as written: micro_batch auto searches (one budget per split it tries)
        recipe.vllm.sleep = {"auto": "auto", "true": True, "false": False}[sleep]
        plan, kwargs = plan_on(recipe, "h100")
        assert len(calls) == 1, sleep
        expected = real(recipe, plan.gpu_memory, True, plan.sleep).plan.vllm.utilization
        assert kwargs["vllm_gpu_memory_utilization"] == plan.budget_share == plan.vllm_utilization == expected


def test_every_fix_names_a_real_recipe_key_and_saves_something():
    """Issue #14: the fixes named keys no recipe has (load_in_4bit, micro_batch, vllm_mode), one saving 0.00 GiB."""
    import dataclasses
    import typing

    from envkit.budget.recommend import MIN_SAVING
    from envkit.recipe.schema import Recipe

    rec = recommend_recipe(shipped("grpo-llama3b"), on("t4").gpu_bytes, bf16=False)
    assert rec.fixes and all(f.saving >= MIN_SAVING or f.fits for f in rec.fixes)
    sections = typing.get_type_hints(Recipe)
    for fix in rec.fixes:
        for part in fix.setting.split(" (")[0].split(", "):
            section, _, field = part.split(":")[0].partition(".")
            assert field in {f.name for f in dataclasses.fields(sections[section])}, fix.setting


def test_gradient_checkpointing_auto_is_off_where_the_activations_fit_and_on_where_they_do_not():
    """Issue #16: recomputing every layer's forward costs each step; the budget turns it on only when needed."""
    roomy, _ = plan_on(shipped("grpo-llama3b"), "h200")
    assert roomy.gradient_checkpointing is False
    tight_plan, tight_kwargs = plan_on(shipped("grpo-llama3b"), "a10g")  # 24 GiB: 19 GiB of activations do not fit
    assert tight_plan.gradient_checkpointing is True and tight_kwargs["gradient_checkpointing"] is True
    unknown, _ = plan_on(parse_recipe(recipe_with(model="{name: some-org/unknown-model, dtype: bf16}")), "h200")
    assert unknown.gradient_checkpointing is True  # no budget: TRL's default


def test_a_pinned_gradient_checkpointing_is_kept_and_budgeted_as_pinned():
    recipe = shipped("grpo-llama3b")
    recipe.grpo.gradient_checkpointing = True
    plan, kwargs = plan_on(recipe, "h200")
    assert plan.gradient_checkpointing is True and kwargs["gradient_checkpointing"] is True
    assert recommend_recipe(recipe, 141 * 1024 * MIB).plan.inputs.grad_checkpointing is True


def test_the_budget_tries_awake_before_asleep_and_no_checkpointing_before_checkpointing(monkeypatch):
    """Sleep costs more per step than recomputation: the first candidate that fits, in that order."""
    import envkit.budget.recommend as recommend_module

    tried = []
    monkeypatch.setattr(recommend_module, "fits", lambda b: tried.append((b.sleep, b.inputs.grad_checkpointing)) or False)
    chosen = recommend_module.cheapest_budget(on("h100"), 0.3)
    assert tried == [(False, False), (False, True), (True, False), (True, True)]
    assert (chosen.sleep, chosen.inputs.grad_checkpointing) == (True, True)  # nothing fits: the last
    tried.clear()
    recommend_module.cheapest_budget(on("h100", grad_checkpointing=True), 0.3, sleep=False)
    assert tried == [(False, True)]


def test_colocated_trl_generation_skips_vllms_detokenizing_and_nothing_else_does():
    """Issue #16: TRL reads token ids back and decodes them itself; server mode and Unsloth keep vLLM's default."""
    _, colocate = plan_on(shipped("grpo-llama3b"), "h100")
    assert colocate["generation_kwargs"] == {"detokenize": False}
    server = shipped("grpo-llama3b")
    server.vllm.mode = "server"
    assert "generation_kwargs" not in plan_on(server, "h100")[1]
    off = shipped("grpo-llama3b")
    off.vllm.enabled = False
    assert "generation_kwargs" not in plan_on(off, "h100")[1]



def test_the_recipes_own_generation_kwargs_join_the_detokenize_setting_and_win():
    """grpo.generation_kwargs (a TRL field, passed through, #14) keeps its keys next to envkit's detokenize: false."""
    recipe = shipped("grpo-llama3b")
    recipe.grpo.trl = {"generation_kwargs": {"min_tokens": 4, "detokenize": True}}
    assert plan_on(recipe, "h100")[1]["generation_kwargs"] == {"detokenize": True, "min_tokens": 4}
    recipe.grpo.trl = {"generation_kwargs": {"min_tokens": 4}}
    assert plan_on(recipe, "h100")[1]["generation_kwargs"] == {"detokenize": False, "min_tokens": 4}
    recipe.grpo.trl = {"generation_kwargs": '{"min_tokens": 4}'}  # TRL's JSON-string form: passed as written
    assert plan_on(recipe, "h100")[1]["generation_kwargs"] == '{"min_tokens": 4}'


@needs_train
def test_trls_timed_spans_are_summed_per_step_for_metrics():
    from trl.extras.profiling import ProfilingContext

    from envkit.train import phases

    assert phases.install() and phases.install()  # twice: wrapped once
    phases.take()
    for _ in range(2):
        with ProfilingContext("vLLM.generate", report_to=[]):
            pass
    taken = phases.take()
    assert list(taken) == ["vLLM.generate"] and taken["vLLM.generate"] >= 0
    assert phases.take() == {}


def test_micro_batch_auto_runs_the_steps_completions_in_the_largest_pass_that_costs_nothing_else():
    """Issue #16: 32 completions as 8 x 4 -> 32 x 1 on an H200 (same optimizer step, fewer passes); on a 24 GiB
    GPU the larger passes would need checkpointing or sleep the written split avoids, so the split stays."""
    recipe = shipped("grpo-llama3b")
    assert recipe.grpo.micro_batch == "auto"  # the shipped recipe opts in
    plan, kwargs = plan_on(recipe, "h200")
    assert plan.micro_batch == 32
    assert (kwargs["per_device_train_batch_size"], kwargs["gradient_accumulation_steps"]) == (32, 1)
    written = recommend_recipe(shipped("grpo-llama3b"), plan.gpu_memory)
    assert not written.plan.sleep and written.plan.inputs.grad_checkpointing is False  # as cheap as the written split
    small, small_kwargs = plan_on(recipe, "a10g")
    assert small.micro_batch == 8 and small_kwargs["gradient_accumulation_steps"] == 4
    as_written = shipped("grpo-llama3b")
    as_written.grpo.micro_batch = None  # the shipped recipe sets auto; unset, the split is the recipe's
    plain, plain_kwargs = plan_on(as_written, "h200")
    assert plain.micro_batch is None and plain_kwargs["per_device_train_batch_size"] == 8


def test_backend_unsloth_is_budgeted_with_its_own_checkpointing():
    """Issue #18: Unsloth always checkpoints (use_gradient_checkpointing="unsloth"); budgeted without, its 4-bit
    run on an H200 was predicted at 4.55 GiB of torch memory against 2.92 GiB measured (3.31 GiB with)."""
    recipe = shipped("grpo-llama3b")
    recipe.backend = "unsloth"
    assert budget_inputs(recipe, 141 * 1024 * MIB).grad_checkpointing is True
    recipe.grpo.gradient_checkpointing = False  # not Unsloth's choice to make: it checkpoints anyway
    assert recommend_recipe(recipe, 141 * 1024 * MIB).plan.inputs.grad_checkpointing is True


def test_backend_unsloth_holds_the_policy_weights_once_in_vllms_share():
    """Issue #18: Unsloth's fast_inference loads the base weights into vLLM (4-bit with load_in_4bit) and the policy
    uses them; a budget with a second copy predicted 3.60 GiB of torch memory for its bf16 run on an H200 against
    2.90 GiB measured (3.21 GiB now; benchmarks/results/2026-11-30-h200-unsloth.md)."""
    gpu = 141 * 1024 * MIB
    trl = shipped("grpo-llama3b")
    unsloth = shipped("grpo-llama3b")
    unsloth.backend = "unsloth"
    ours, theirs = budget(budget_inputs(unsloth, gpu), 0.3, False), budget(budget_inputs(trl, gpu), 0.3, False)
    assert ours.training.weights == 0 and ours.vllm.weights == theirs.vllm.weights == theirs.training.weights
    unsloth.model.load_in_4bit = trl.model.load_in_4bit = True
    four_bit = budget(budget_inputs(unsloth, gpu), 0.3, True)
    trl_four_bit = budget(budget_inputs(trl, gpu), 0.3, True)
    assert four_bit.vllm.weights == trl_four_bit.training.weights < trl_four_bit.vllm.weights  # quantized, once
    assert four_bit.vllm.asleep == four_bit.vllm.workspace + four_bit.vllm.weights  # standby keeps them
    assert trl_four_bit.vllm.asleep == trl_four_bit.vllm.workspace


def test_backend_unsloth_never_budgets_sleep_for_a_vision_language_model(tmp_path):
    """unsloth_zoo 2026.6.6+ load_vllm turns its standby off for a model whose config has a vision_config (issue #25):
    the budget of such a run keeps vLLM's whole share through the training step, even with vllm.sleep: true."""
    text = {"model_type": "qwen2", "num_hidden_layers": 28, "hidden_size": 1536, "intermediate_size": 8960,
            "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True}
    for name, config in (("text", text), ("vlm", {"model_type": "qwen2_vl", "text_config": text,
                                                  "vision_config": {"depth": 32}})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config))
    assert resolve_model(str(tmp_path / "vlm")).vision and not resolve_model(str(tmp_path / "text")).vision
    gpu = 24 * 1024 * MIB
    for backend, name, sleeps in (("unsloth", "vlm", False), ("unsloth", "text", True), ("trl", "vlm", True)):
        recipe = shipped("grpo-llama3b")
        recipe.backend, recipe.model.name, recipe.vllm.sleep = backend, str(tmp_path / name), True
        assert recommend_recipe(recipe, gpu).plan.sleep is sleeps, (backend, name)
