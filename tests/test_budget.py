"""The VRAM budget: hand-computed terms, recommendations on t4/h100, the `envkit budget` CLI."""

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from envkit.budget.model import GIB, BudgetInputs, ModelShape, kv_needed, lora_params, weight_bytes
from envkit.budget.recommend import recommend
from envkit.budget.shapes import UnknownName, known_shapes, resolve_gpu, resolve_model
from envkit.cli import main

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


def test_unknown_names_name_the_closest():
    with pytest.raises(UnknownName, match="closest: Qwen3-4B"):
        resolve_model("Qwen3-4")
    with pytest.raises(UnknownName, match="closest: h100"):
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
    rec = recommend(on("a10g", load_in_4bit=True, grad_checkpointing=False))
    assert rec.fits and rec.plan.sleep
    awake = replace(rec.plan, sleep=False)
    assert awake.headroom < rec.plan.headroom


def test_checkpointing_and_fp8_kv_shrink_their_terms():
    base = recommend(on("h100")).plan
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
        "name": "4-bit weights", "setting": "load_in_4bit: true", "saving_gib": failing["fixes"][0]["saving_gib"],
        "fits": True}
