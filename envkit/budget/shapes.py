"""Model shapes from a local config.json or the shipped table; GPU memory from the catalog."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

from envkit.budget.model import GIB, ModelShape
from envkit.knowledge import UnknownGpu, catalog_key, gpu_catalog, load


# `model.build: tiny` (envkit.train.tiny builds it): a byte-level tokenizer's vocabulary plus these specials.
TINY_SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>"]


@dataclass(frozen=True)
class TinyShape:
    """The LlamaConfig fields of the tiny model; the budget and the launch checks read them without building it."""

    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 128
    vocab_size: int = 256 + len(TINY_SPECIAL_TOKENS)  # bytes + specials; larger pads the embedding
    max_position_embeddings: int = 2048
    # Weights 15x larger than Llama's 0.02: at 0.02 the tied embeddings give near-uniform logits that a LoRA
    # cannot move, and the tiny run learnt nothing (issue #24: a reward GRPO raised from 0.08 to 0.9 at 0.3
    # stayed flat at 0.02)
    initializer_range: float = 0.3


class UnknownName(ValueError):
    """A model or GPU the tables do not know; the message names the closest."""


def known_shapes() -> dict[str, dict]:
    return load("model_shapes")["models"]


def shape_from_config(config: dict, name: str) -> ModelShape:
    """A ModelShape from the fields of a Hugging Face config.json (multimodal: its text_config)."""
    config = config.get("text_config", config)
    heads = config["num_attention_heads"]
    model_type = config.get("model_type", "")
    return ModelShape(
        name=name,
        layers=config["num_hidden_layers"],
        hidden=config["hidden_size"],
        intermediate=config["intermediate_size"],
        heads=heads,
        kv_heads=config.get("num_key_value_heads") or heads,
        head_dim=config.get("head_dim") or config["hidden_size"] // heads,
        vocab=config["vocab_size"],
        tied_embeddings=config.get("tie_word_embeddings", False),
        # Qwen2's q/k/v biases are built in; config.json has no attention_bias for them.
        attention_bias=config.get("attention_bias", model_type == "qwen2"),
        qk_norm=model_type.startswith("qwen3"),
    )


def resolve_model(name_or_path: str) -> ModelShape:
    """A config.json (or a directory holding one), else a known model by name.

    Hub ids and fine-tune suffixes match their base shape:
    "meta-llama/Llama-3.2-3B-Instruct" is Llama-3.2-3B.
    """
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return shape_from_config(json.loads(path.read_text()), str(name_or_path))
    shapes = known_shapes()
    wanted = name_or_path.rsplit("/", 1)[-1].lower()
    for key in sorted(shapes, key=len, reverse=True):
        if wanted == key.lower() or wanted.startswith(key.lower() + "-"):
            entry = {k: v for k, v in shapes[key].items() if k != "source"}
            return ModelShape(name=key, **entry)
    raise UnknownName(f"unknown model {name_or_path!r} (no config.json there, not a known shape){_closest(wanted, shapes)}")


def resolve_gpu(key: str) -> tuple[str, int]:
    """(catalog name, memory in bytes) of a catalog GPU key."""
    try:
        entry = gpu_catalog()[catalog_key(key)]
    except UnknownGpu as err:
        raise UnknownName(str(err)) from None
    return entry["name"], entry["memory_gib"] * GIB


def _closest(wanted: str, table: dict) -> str:
    by_lower = {k.lower(): k for k in table}
    close = difflib.get_close_matches(wanted, list(by_lower), n=1, cutoff=0.3)
    hint = f"; closest: {by_lower[close[0]]}" if close else ""
    return f"{hint}. Known: {', '.join(table)}"
