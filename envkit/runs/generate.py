"""`envkit generate`: sample from a trained run, prompted the way it was trained.

The run folder holds ``adapter/`` (its ``adapter_config.json`` names the base model), ``merged/`` when the
recipe said ``output.merge``, and ``manifest.json``, whose ``generate`` record says how prompts reached the
model in training (chat template, system prompt) and whose ``grpo_config`` gives the sampling defaults
(temperature, top_p, max_completion_length).  A ``checkpoint-N`` folder is an adapter too.

Engines: vLLM with the adapter as a LoRA request (or the merged model) where vllm is installed and a GPU is
visible; transformers + peft ``generate`` otherwise.  torch, transformers, peft and vllm load in here only.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from envkit.errors import Failure, UsageError
from envkit.files import JSON_BYTES, read_regular

DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 256}  # a run without a manifest (TRL's own defaults)


class EngineFailed(Failure, RuntimeError):
    """vLLM's engine failed to start (the exception is its ``__cause__``): `envkit generate` says a known GPU-side
    failure in one line (envkit.train.failures) and re-raises any other."""


class GenerateError(UsageError, ValueError):
    """The run folder cannot be sampled from: one line, naming what is missing and what to do."""


@dataclass(frozen=True)
class Trained:
    """What to load and how to prompt it."""

    model: str  # the base model (with ``adapter``) or a full model folder (merged/)
    adapter: Path | None
    chat: bool | None  # None: not recorded (an older run); the tokenizer's chat template decides
    system_prompt: str | None
    trust_remote_code: bool
    dtype: str  # the run's training dtype: fp32, bf16 or fp16
    sampling: dict  # temperature, top_p, max_new_tokens: the run's
    lora_rank: int = 0  # the adapter's largest LoRA rank (vLLM's max_lora_rank); 0 for a merged model


def find_trained(run_dir: Path, merged: bool = False, trust_remote_code: bool = False) -> Trained:
    """The model in ``run_dir``: a run folder (its adapter/, or merged/ with ``merged``), or an adapter folder
    itself (a checkpoint-N, an adapter/ copied elsewhere).

    ``trust_remote_code`` comes from the command line only: a run folder may come from anyone, and its
    manifest saying ``trust_remote_code: true`` would run the Python files its model folder ships (an
    ``auto_map`` in merged/config.json).  Such a manifest without the flag is refused, naming the flag."""
    run_dir = Path(run_dir)
    is_adapter = (run_dir / "adapter_config.json").is_file()
    manifest = _manifest(run_dir.parent if is_adapter else run_dir)
    record, grpo, plan = (manifest.get(key) if isinstance(manifest.get(key), dict) else {}
                          for key in ("generate", "grpo_config", "plan"))
    if record.get("trust_remote_code") is True and not trust_remote_code:
        raise GenerateError(f"{run_dir} was trained with model.trust_remote_code: true; pass --trust-remote-code "
                            "to run the Python code its model ships (only for a run and model you trust)")
    sampling = {"temperature": grpo.get("temperature", DEFAULTS["temperature"]),
                "top_p": grpo.get("top_p", DEFAULTS["top_p"]),
                "max_new_tokens": grpo.get("max_completion_length", DEFAULTS["max_new_tokens"])}
    common = {"chat": record.get("chat_template") if isinstance(record.get("chat_template"), bool) else None,
              "system_prompt": record.get("system_prompt") if isinstance(record.get("system_prompt"), str) else None,
              "trust_remote_code": trust_remote_code,
              "dtype": plan.get("dtype", "fp32"), "sampling": sampling}
    if merged:
        folder = run_dir / "merged"
        if not (folder / "config.json").is_file():
            raise GenerateError(f"{folder} not found: the recipe did not say output.merge: true, or the run has not "
                                "completed; leave out --merged to sample from the adapter")
        return Trained(str(folder), None, **common)
    adapter = run_dir if is_adapter else run_dir / "adapter"
    try:
        config = json.loads(read_regular(adapter / "adapter_config.json", JSON_BYTES))
    except FileNotFoundError:
        raise GenerateError(f"{adapter} not found: the run has not completed (envkit train --resume finishes it), "
                            f"or pass a checkpoint-N folder of {run_dir}") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise GenerateError(f"{adapter / 'adapter_config.json'}: not readable JSON ({exc})") from None
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(base, str) or not base:
        raise GenerateError(f"{adapter / 'adapter_config.json'} names no base_model_name_or_path")
    if Path(base).is_absolute() and not Path(base).exists():  # trained elsewhere: in an image, on another machine
        merged_here = (run_dir / "merged" / "config.json").is_file() and not is_adapter
        raise GenerateError(f"the base model {base} that {adapter} was trained on is not on this machine (a run from "
                            "an image keeps it in the image's /cache)" + ("; sample from the run's merged model: "
                            f"envkit generate {run_dir} --merged" if merged_here else "; copy it to that path"))
    pattern = config.get("rank_pattern")
    ranks = [config.get("r") or 0, *(pattern.values() if isinstance(pattern, dict) else ())]
    if not all(type(r) is int and 0 <= r <= 2**16 for r in ranks):
        raise GenerateError(f"{adapter / 'adapter_config.json'}: r and rank_pattern must be whole numbers")
    return Trained(base, adapter, **common, lora_rank=max(ranks))


def _manifest(run_dir: Path) -> dict:
    try:
        manifest = json.loads(read_regular(run_dir / "manifest.json", JSON_BYTES))
    except (OSError, ValueError, RecursionError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


MAX_SAMPLES, MAX_NEW_TOKENS = 1024, 2**20  # bounds of -n and --max-new-tokens (a 2**40 -n allocated without end)


def check_sampling(sampling: dict, run_dir: Path) -> None:
    """The sampling values, the manifest's included (a hand-edited temperature: "hot"), within what the options
    accept; else a GenerateError naming the option that overrides it."""
    checks = {"temperature": lambda v: 0 <= v <= 1e6, "top_p": lambda v: 0 < v <= 1,
              "max_new_tokens": lambda v: type(v) is int and 0 < v <= MAX_NEW_TOKENS}
    for key, fits in checks.items():
        value = sampling[key]
        if type(value) not in (int, float) or value != value or not fits(value):
            raise GenerateError(f"{key} {str(value)[:40]!r} from {run_dir / 'manifest.json'} is out of range: "
                                f"pass --{key.replace('_', '-')}")


def pick_engine(wanted: str) -> str:
    """"vllm" or "transformers" for ``auto`` or a name; vLLM needs the vllm package and a CUDA GPU.

    The GPU is counted through NVML (PYTORCH_NVML_BASED_CUDA_CHECK): torch's plain check initialises the CUDA
    driver in this process, and vLLM's engine process forked after it dies with "Cannot re-initialize CUDA in
    forked subprocess" (issue #23)."""
    if wanted == "transformers":
        return "transformers"
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch

    has_vllm, gpu = importlib.util.find_spec("vllm") is not None, torch.cuda.is_available()
    if has_vllm and gpu:
        return "vllm"
    if wanted == "vllm":
        raise GenerateError(f"--engine vllm: {'vllm is not installed' if gpu else 'no CUDA GPU visible'}; "
                            "--engine transformers samples without it")
    return "transformers"


def messages(trained: Trained, prompt: str) -> list[dict]:
    system = [{"role": "system", "content": trained.system_prompt}] if trained.system_prompt else []
    return system + [{"role": "user", "content": prompt}]


def text_prompt(trained: Trained, prompt: str) -> str:
    """A prompt of a run trained without the chat template: as the dataset built it (envkit.train.data)."""
    return f"{trained.system_prompt}\n\n{prompt}" if trained.system_prompt else prompt


def sample(trained: Trained, prompts: list[str], n: int, sampling: dict, seed: int, engine: str) -> list[list[str]]:
    """``n`` completions of each prompt, with ``sampling`` (temperature 0: greedy)."""
    run = _with_vllm if engine == "vllm" else _with_transformers
    try:
        return run(trained, prompts, n, sampling, seed)
    except OSError as exc:  # transformers' and the hub's way to say a model is not there (moved, offline, no access)
        reason = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise GenerateError(f"cannot load {trained.model}: {reason[:300]}; copy the run with its base model, "
                            "or reach the hub (HF_HUB_OFFLINE unset)") from None


def _with_transformers(trained: Trained, prompts: list[str], n: int, sampling: dict, seed: int) -> list[list[str]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float32
    if device == "cuda":
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(trained.dtype, torch.float32)
    remote = trained.trust_remote_code
    model = AutoModelForCausalLM.from_pretrained(trained.model, dtype=dtype, trust_remote_code=remote)
    if trained.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(trained.adapter))
    model.to(device).eval()
    # the trainer saved the tokenizer beside the adapter; a merged folder has its own
    tokenizer = AutoTokenizer.from_pretrained(str(trained.adapter or trained.model), trust_remote_code=remote)
    chat = trained.chat if trained.chat is not None else bool(tokenizer.chat_template)
    greedy = sampling["temperature"] == 0
    options = {"max_new_tokens": sampling["max_new_tokens"], "do_sample": not greedy, "num_return_sequences": n,
               "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id}
    if not greedy:
        options.update(temperature=sampling["temperature"], top_p=sampling["top_p"])
    torch.manual_seed(seed)
    results = []
    for prompt in prompts:
        if chat:
            inputs = tokenizer.apply_chat_template(messages(trained, prompt), add_generation_prompt=True,
                                                   return_tensors="pt", return_dict=True)
        else:
            inputs = tokenizer(text_prompt(trained, prompt), return_tensors="pt")
        inputs = {k: v.to(device) for k, v in inputs.items()}
        with torch.no_grad():
            output = model.generate(**inputs, **options)
        results.append(tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
    return results


def _with_vllm(trained: Trained, prompts: list[str], n: int, sampling: dict, seed: int) -> list[list[str]]:
    # vLLM forks its engine process unless told otherwise; spawn holds whatever touched CUDA before it.
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    from vllm import LLM, SamplingParams

    engine = {"model": trained.model, "trust_remote_code": trained.trust_remote_code, "seed": seed,
              "dtype": {"bf16": "bfloat16", "fp16": "float16"}.get(trained.dtype, "auto")}
    request = None
    if trained.adapter is not None:
        from vllm.lora.request import LoRARequest

        engine.update(enable_lora=True, max_lora_rank=vllm_lora_rank(trained.lora_rank))
        request = LoRARequest("adapter", 1, str(trained.adapter))
    try:
        llm = LLM(**engine)
    except Exception as exc:  # the command says a known start-up failure in one line; any other as it is
        raise EngineFailed("vLLM's engine did not start") from exc
    params = SamplingParams(n=n, temperature=sampling["temperature"], top_p=sampling["top_p"],
                            max_tokens=sampling["max_new_tokens"], seed=seed)
    chat = trained.chat if trained.chat is not None else bool(llm.get_tokenizer().chat_template)
    if chat:
        outputs = llm.chat([messages(trained, p) for p in prompts], params, lora_request=request)
    else:
        outputs = llm.generate([text_prompt(trained, p) for p in prompts], params, lora_request=request)
    return [[choice.text for choice in output.outputs] for output in outputs]


def vllm_lora_rank(rank: int) -> int:
    """The smallest max_lora_rank the installed vLLM accepts that holds ``rank``: vLLM takes only the values of
    its ``MaxLoRARanks`` (vllm/config/lora.py: 1, 8, 16, 32, ... in 0.26); an older vLLM without it: ``rank``."""
    try:
        from vllm.config.lora import MaxLoRARanks
    except ImportError:
        return rank
    allowed = sorted(get_args(MaxLoRARanks))
    fitting = [r for r in allowed if r >= rank]
    if not fitting:
        raise GenerateError(f"the adapter's LoRA rank {rank} is above the installed vLLM's largest, {allowed[-1]}; "
                            "--engine transformers samples from it")
    return fitting[0]
