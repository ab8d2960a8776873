"""Model shapes from a local config.json or the shipped table; GPU memory from the catalog."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from envkit.budget.model import GIB, ModelShape
from envkit.errors import UsageError
from envkit.files import JSON_BYTES, read_regular
from envkit.knowledge import UnknownGpu, catalog_key, gpu_catalog, load


class UnknownName(UsageError, ValueError):
    """A model or GPU the tables do not know; the message names the closest."""


def known_shapes() -> dict[str, dict]:
    return load("model_shapes")["models"]


# The config.json fields a shape needs, and those it reads when given; each a positive integer.
SHAPE_FIELDS = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size")
OPTIONAL_FIELDS = ("num_key_value_heads", "head_dim")


def shape_from_config(config: dict, name: str) -> ModelShape:
    """A ModelShape from the fields of a Hugging Face config.json (multimodal: its text_config); UnknownName
    naming the field when one is missing or not a positive integer (a 0 or "32" of heads, a NaN width)."""
    vision = isinstance(config, dict) and "vision_config" in config
    config = config.get("text_config", config) if isinstance(config, dict) else config
    if not isinstance(config, dict):
        raise UnknownName(f"{name}: config.json (or its text_config) is not a JSON object; give a Llama/Qwen-style "
                          "decoder config")
    for key in SHAPE_FIELDS + OPTIONAL_FIELDS:
        value = config.get(key)
        if (value is not None or key in SHAPE_FIELDS) and not (type(value) is int and 0 < value <= 2**40):
            found = repr(value)[:40] if key in config else "missing"
            raise UnknownName(f"{name}: config.json's {key} is {found}, not a positive integer; give a "
                              "Llama/Qwen-style decoder config")
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
        vision=vision,
    )


def config_fields(shape: ModelShape) -> dict[str, int]:
    """The config.json sizes of a shape (SHAPE_FIELDS and OPTIONAL_FIELDS): a LlamaConfig of them has its shape,
    so a benchmark builds a random-init model of a known model's shape without the hub."""
    return dict(num_hidden_layers=shape.layers, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                num_attention_heads=shape.heads, vocab_size=shape.vocab, num_key_value_heads=shape.kv_heads,
                head_dim=shape.head_dim)


def resolve_model(name_or_path: str) -> ModelShape:
    """A config.json (or a directory holding one), else a known model by name.

    Hub ids and fine-tune suffixes match their base shape:
    "meta-llama/Llama-3.2-3B-Instruct" is Llama-3.2-3B.
    """
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        try:
            config = json.loads(read_regular(path, JSON_BYTES))
        except (OSError, ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested too deeply, a FIFO
            why = exc.strerror if isinstance(exc, OSError) else "nested too deeply" if isinstance(exc, RecursionError) \
                else "not JSON"
            raise UnknownName(f"{name_or_path}: cannot read {path.name}: {why}") from None
        return shape_from_config(config, str(name_or_path))
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
