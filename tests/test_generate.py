"""envkit generate without a model: which folder it reads, and one line when there is nothing to sample from."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.runs.generate import GenerateError, find_trained, sample


def run_folder(tmp_path, manifest: dict | None = None, base: str = "org/base"):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base, "r": 8}))
    if manifest is not None:
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


def test_the_run_says_how_it_was_prompted_and_sampled(tmp_path):
    manifest = {"generate": {"chat_template": True, "system_prompt": "Think.", "trust_remote_code": False},
                "grpo_config": {"temperature": 0.7, "top_p": 0.9, "max_completion_length": 64}, "plan": {"dtype": "bf16"}}
    trained = find_trained(run_folder(tmp_path, manifest))
    assert trained.model == "org/base" and trained.adapter == tmp_path / "adapter"
    assert trained.chat is True and trained.system_prompt == "Think." and trained.dtype == "bf16"
    assert trained.sampling == {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 64}
    assert find_trained(tmp_path / "adapter") == trained  # an adapter folder: the manifest beside it


def test_a_run_without_a_manifest_falls_back_to_the_tokenizer_and_trl_defaults(tmp_path):
    trained = find_trained(run_folder(tmp_path))
    assert trained.chat is None and trained.sampling == {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 256}


@pytest.mark.parametrize("args, message", [
    ([], "adapter not found: the run has not completed (envkit train --resume finishes it)"),
    (["--merged"], "merged not found: the recipe did not say output.merge: true"),
])
def test_nothing_to_sample_from_is_one_line_exit_2(tmp_path, args, message):
    pytest.importorskip("peft")
    result = CliRunner().invoke(main, ["generate", str(tmp_path), "hello", *args])
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr
    with pytest.raises(GenerateError):
        find_trained(tmp_path, merged=bool(args))


def test_greedy_gives_one_completion(tmp_path):
    pytest.importorskip("peft")
    result = CliRunner().invoke(main, ["generate", str(run_folder(tmp_path)), "hi", "--temperature", "0", "-n", "2"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "envkit generate: -n above 1 needs sampling: --temperature 0 (greedy) gives one completion"


def test_engine_vllm_without_vllm_or_a_gpu_is_refused_not_swapped(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from envkit.runs import generate as module

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(GenerateError, match="--engine vllm: vllm is not installed"):
        module.pick_engine("vllm")
    assert module.pick_engine("auto") == "transformers"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(GenerateError, match="--engine vllm: no CUDA GPU visible"):
        module.pick_engine("vllm")


def test_the_adapter_rank_is_read_once_with_the_config(tmp_path):
    """vLLM's max_lora_rank comes from the adapter_config.json find_trained already read (its largest rank)."""
    folder = run_folder(tmp_path)
    config = folder / "adapter" / "adapter_config.json"
    config.write_text(json.dumps({"base_model_name_or_path": "org/base", "r": 8, "rank_pattern": {"q_proj": 32}}))
    assert find_trained(folder).lora_rank == 32


@pytest.mark.parametrize("fields", [{"r": "8"}, {"r": 8, "rank_pattern": {"q_proj": 1.5}}, {"r": -1}])
def test_an_adapter_rank_that_is_not_a_whole_number_is_one_line(tmp_path, fields):
    folder = run_folder(tmp_path)
    (folder / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "b", **fields}))
    with pytest.raises(GenerateError, match="r and rank_pattern must be whole numbers"):
        find_trained(folder)


def test_a_base_model_left_in_an_image_points_to_the_merged_model(tmp_path):
    """A run trained in the image names its base at the image's /cache path; on the host that path is not there:
    one line before anything loads, pointing to merged/ when the run has it."""
    (tmp_path / "run").mkdir()
    folder = run_folder(tmp_path / "run", base=str(tmp_path / "cache" / "tiny-llama"))
    with pytest.raises(GenerateError, match="is not on this machine .*; copy it to that path"):
        find_trained(folder)
    (folder / "merged").mkdir()
    (folder / "merged" / "config.json").write_text("{}")
    with pytest.raises(GenerateError, match=f"merged model: envkit generate {folder} --merged"):
        find_trained(folder)
    assert find_trained(folder, merged=True).model == str(folder / "merged")


def test_a_model_the_loader_cannot_find_is_a_generate_error_naming_it(tmp_path, monkeypatch):
    """transformers and the hub say "not there" with an OSError (moved, offline, no access): one line, exit 2."""
    def offline(*args):
        raise OSError("\nWe couldn't connect to 'https://huggingface.co' to load the files\nmore detail")

    monkeypatch.setattr("envkit.runs.generate._with_transformers", offline)
    trained = find_trained(run_folder(tmp_path))
    with pytest.raises(GenerateError, match=r"^cannot load org/base: We couldn't connect to .* reach the hub"):
        sample(trained, ["hi"], 1, trained.sampling, 0, "transformers")


@pytest.mark.parametrize("cause, code", [(ValueError("No available memory for the cache blocks"), 2),
                                         (ZeroDivisionError("not a GPU-side failure envkit knows"), None)])
def test_a_vllm_engine_that_does_not_start_is_one_line_when_known(tmp_path, monkeypatch, cause, code):
    pytest.importorskip("peft")
    from envkit.runs.generate import EngineFailed

    def engine_failed(*args):
        raise EngineFailed("vLLM's engine did not start") from cause

    monkeypatch.setattr("envkit.runs.generate.sample", engine_failed)
    monkeypatch.setattr("envkit.runs.generate.pick_engine", lambda wanted: "vllm")
    result = CliRunner().invoke(main, ["generate", str(run_folder(tmp_path)), "hi", "--engine", "vllm"])
    if code is None:  # not ours to explain: the engine's own exception, as it is
        assert result.exception is cause
        return
    assert result.exit_code == code
    last = result.stderr.splitlines()[-1]
    assert last.startswith("envkit generate: vLLM's share of the GPU (vLLM's default) leaves no room for its KV cache")
    assert "--engine transformers samples without vLLM (traceback: " in last
