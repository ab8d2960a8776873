"""What `model.build: tiny` builds: a small random-init Llama on a byte-level vocabulary.

Defined here, beside the recipe option, so that the budget (its shape), the launch checks (its context length)
and the builder (envkit.train.tiny) read one definition without building the model.
"""

from __future__ import annotations

from dataclasses import dataclass

# The byte-level tokenizer's vocabulary is these specials, then the 256 bytes.
TINY_SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>"]


@dataclass(frozen=True)
class TinyLlamaConfig:
    """The LlamaConfig fields of the tiny model (its embeddings are tied)."""

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
