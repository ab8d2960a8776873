"""GPU-side failures said in one line: which part failed (training or vLLM), why, and the fix.

A CUDA OOM, a vLLM share that leaves no KV cache, a vLLM engine dying at start or NCCL failing surface as a
library's traceback of dozens of lines; the user needs the part that failed, the share in use and the setting to
change.  The texts that identify each failure are data (knowledge/gpu_failures.json, with their sources); an
exception matching none of them is not ours to explain and is raised as it is.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from dataclasses import dataclass

from envkit.knowledge import load

VLLM_PATH = f"{os.sep}vllm{os.sep}"


@dataclass(frozen=True)
class KnownFailure:
    """A known GPU-side failure: what failed and why (``title``), and what to change (``fix``)."""

    title: str
    fix: str

    def __str__(self) -> str:
        return f"{self.title}: {self.fix}"


def explain(exc: BaseException, share: float | str | None, recipe: str) -> KnownFailure | None:
    """A known GPU-side failure (``share``: vLLM's gpu_memory_utilization, None when vLLM is off); None for any
    other exception."""
    chain = _chain(exc)
    text = "\n".join(f"{type(e).__name__}: {e}" for e in chain)
    for row in load("gpu_failures")["failures"]:
        if any(marker in text for marker in row["match"]):
            where = "vllm" if any(_raised_in_vllm(e) for e in chain) else "training"
            lines = [line.strip() for e in chain for line in str(e).splitlines() if line.strip()]
            values = {"share": "no share: vLLM is off" if share is None else share, "recipe": recipe,
                      "detail": (lines[0] if lines else type(exc).__name__)[:200]}
            title, fix = (row[key].get(where) or row[key]["any"] for key in ("title", "fix"))
            return KnownFailure(title.format(**values), fix.format(**values))
    return None


def save_traceback(exc: BaseException, prefix: str) -> str:
    """The full traceback in a new file of the temporary folder (the one line replaces it on the terminal, and the
    run's own folder stays as the run left it); its path."""
    handle, path = tempfile.mkstemp(prefix=f"{prefix}-", suffix=".log")
    with os.fdopen(handle, "w") as log:
        log.write("".join(traceback.format_exception(exc)))
    return path


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes / contexts, each once."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _raised_in_vllm(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if VLLM_PATH in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False
