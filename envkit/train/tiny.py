"""A tiny random-init Llama and a byte-level tokenizer, built in code and cached on disk.

No model hub needed: the tokenizer maps each byte to one token (no merges, nothing to train),
so any text round-trips; the model is a LlamaConfig of the given shape with seeded weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from envkit.probe.cache import cache_home
from envkit.recipe.tiny_model import TINY_SPECIAL_TOKENS, TinyLlamaConfig


def cache_root() -> Path:
    return (cache_home(dict(os.environ)) or Path.home() / ".cache") / "envkit" / "models"


def tiny_folder(shape: TinyLlamaConfig = TinyLlamaConfig(), seed: int = 0, root: Path | None = None) -> Path:
    """Where the tiny model of this shape and seed is saved (built or not): a plan names it before it is built."""
    key = hashlib.sha256(json.dumps([asdict(shape), seed]).encode()).hexdigest()[:12]
    return (root or cache_root()) / f"tiny-llama-{key}"


def build_tiny(shape: TinyLlamaConfig = TinyLlamaConfig(), seed: int = 0, root: Path | None = None) -> Path:
    """The folder of a saved tiny model + tokenizer of this shape and seed (built once)."""
    target = tiny_folder(shape, seed, root)
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return target
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_tokenizer()
    config = LlamaConfig(**asdict(shape), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process built it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target


def byte_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(TINY_SPECIAL_TOKENS + alphabet)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    pad, bos, eos = TINY_SPECIAL_TOKENS
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=pad, bos_token=bos, eos_token=eos)
