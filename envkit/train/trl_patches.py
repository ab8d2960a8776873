"""The code of envkit's TRL patches (their data and selection: knowledge/patches.json, envkit.train.patches).

Imports trl when a patch is applied; the runner applies the Plan's patches after importing trl and before
building the trainer.  Each patch checks that the code it wraps is still there and says so when not,
instead of patching blind.
"""

from __future__ import annotations

import functools
import inspect
import itertools
from typing import Callable

from envkit.errors import UsageError


class PatchUnavailable(UsageError, RuntimeError):
    """The installed trl lacks what a patch wraps (its window in patches.json is wrong for this build).  A run
    that needs the patch stops before training (exit 2): --no-patch ID runs without it."""


def server_lora_sync() -> None:
    """EKP001: let vLLM's packer copy the merged weights before TRL's generator unmerges them.

    ``VLLMClient.update_named_params(metadata, iterator)`` streams ``iterator`` (TRL's
    ``_iter_named_params``: merge, yield views, unmerge after the last yield) into vLLM's packed
    broadcast, which exhausts it before copying.  Cut to ``len(metadata)`` items the iterator ends without
    resuming the generator; the epilogue runs once the server has answered, i.e. has received every
    tensor (the request returns after the NCCL broadcast, which follows the copy on the same stream).
    """
    import torch
    from trl.generation.vllm_client import VLLMClient

    original = VLLMClient.update_named_params
    if getattr(original, "envkit_patch", None) == "EKP001":
        return
    if "metadata" not in inspect.signature(original).parameters:
        raise PatchUnavailable("trl's VLLMClient.update_named_params takes no metadata argument")

    @functools.wraps(original)
    def update_named_params(self, metadata, named_params):
        iterator = iter(named_params)
        try:
            original(self, metadata, itertools.islice(iterator, len(metadata)))
        finally:  # also when the send fails: the adapter must not stay merged into the weights being trained
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            for _ in iterator:  # the generator's epilogue: unmerge_adapter, leave the gather context
                pass

    update_named_params.envkit_patch = "EKP001"
    VLLMClient.update_named_params = update_named_params


PATCHES: dict[str, Callable[[], None]] = {"EKP001": server_lora_sync}


def apply_patches(ids: list[str]) -> list[tuple[str, str]]:
    """Apply the patches by ID; (ID, why) for each one that could not be applied."""
    failed = []
    for patch_id in ids:
        if patch_id not in PATCHES:
            failed.append((patch_id, "envkit has no code for it (knowledge/patches.json names it)"))
            continue
        try:
            PATCHES[patch_id]()
        except (PatchUnavailable, ImportError, AttributeError) as exc:
            failed.append((patch_id, f"{type(exc).__name__}: {exc}"))
    return failed
