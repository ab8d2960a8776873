"""Knowledge shipped as data: GPU catalog, CUDA/driver tables, curated facts, version matrix.

Every table is a JSON file beside this module with its source and date; code
reads them through these accessors and never spells a version in a branch.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

HERE = Path(__file__).parent

# The packages of the RL training stack: probed with their metadata, and the
# ones whose mutual version conflicts break imports.
STACK = (
    "torch",
    "vllm",
    "trl",
    "transformers",
    "peft",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "triton",
    "torchao",
    "flashinfer-python",
    "xformers",
    "deepspeed",
    "unsloth",
    "unsloth_zoo",
)


@cache
def load(name: str) -> dict:
    return json.loads((HERE / f"{name}.json").read_text())


def gpu_catalog() -> dict[str, dict]:
    return load("gpus")["gpus"]


def catalog_id_for(gpu_name: str) -> str | None:
    """Catalog key of a GPU by its NVML name ("NVIDIA H100 80GB HBM3" -> "h100")."""
    for key, entry in gpu_catalog().items():
        if re.search(entry["match"], gpu_name, re.IGNORECASE):
            return key
    return None


def curated(key: str) -> dict:
    return load("curated")[key]


def cuda_table() -> dict:
    return load("cuda")
