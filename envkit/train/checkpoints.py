"""The checkpoint-N folders of a run: which one `--resume` can start from.

A kill during a save, a full disk or a copy cut short leaves a checkpoint whose files are torn; the Trainer
then fails deep in torch.load or safetensors minutes after the model loaded.  Each file the Trainer reads on
resume is checked here cheaply (headers and sizes, no tensor is read), newest first, and a torn one is
skipped with a warning naming what is wrong, so the run resumes from the previous complete checkpoint.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from envkit.files import JSON_BYTES, read_regular


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int  # trainer_state.json's global_step
    max_steps: int  # the max_steps of the run that saved it


def last_checkpoint(output_dir: Path, warn: Callable[[str], None] = lambda _: None) -> Checkpoint | None:
    """The newest checkpoint-N that ``problem`` finds nothing wrong with; each newer one skipped is warned about."""
    numbered = sorted(((int(m.group(1)), p) for p in output_dir.glob("checkpoint-*")
                       if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and p.is_dir()), reverse=True)
    for _, path in numbered:
        wrong = problem(path)
        if wrong is None:
            state = json.loads(read_regular(path / "trainer_state.json", JSON_BYTES))
            planned = state.get("max_steps")  # a hand-edited "x" or -1: the step itself, as when it is missing
            planned = planned if type(planned) is int and planned > 0 else state["global_step"]
            return Checkpoint(path, state["global_step"], planned)
        warn(f"skipping {path.name}: {wrong}")
    return None


def problem(checkpoint: Path) -> str | None:
    """What makes this checkpoint unusable for a resume, in a few words, or None.

    trainer_state.json (written last by the Trainer) must parse and name the folder's step; every
    ``*.safetensors`` (the adapter) must hold exactly the bytes its header declares; every ``*.pt`` and
    ``*.pth`` (optimizer, scheduler, scaler, RNG state: torch.save writes zip archives) must end in a
    readable zip directory, which a truncated file does not.
    """
    state = checkpoint / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json (its save was interrupted)"
    try:
        step = json.loads(read_regular(state, JSON_BYTES)).get("global_step")
    except (OSError, ValueError, AttributeError, RecursionError):
        return "trainer_state.json is not a JSON object"
    if type(step) is not int or checkpoint.name != f"checkpoint-{step}":
        return f"trainer_state.json names global_step {step!r}, not this folder's step"
    weights = sorted(checkpoint.glob("*.safetensors"))
    if not weights:
        return "no *.safetensors weights"
    for path in [*weights, *checkpoint.glob("*.pt"), *checkpoint.glob("*.pth")]:
        if not path.is_file():  # a FIFO would hang the reads below, a device never end them
            return f"{path.name}: not a regular file"
    for path in weights:
        if wrong := _safetensors_problem(path):
            return f"{path.name}: {wrong}"
    for path in sorted([*checkpoint.glob("*.pt"), *checkpoint.glob("*.pth")]):
        try:
            with zipfile.ZipFile(path):
                pass
        except (OSError, zipfile.BadZipFile) as exc:
            return f"{path.name}: not a readable torch.save archive ({exc})"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file is an 8-byte little-endian header length, a JSON header whose tensors give
    ``data_offsets`` into the data that follows, and that data: its size is known from the header alone."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > size - 8:
                return f"truncated ({size} bytes, the header alone declares {8 + length})"
            header = json.loads(handle.read(length))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, struct.error, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return "header unreadable"
    declared = 8 + length + end
    if size != declared:
        return f"{'truncated' if size < declared else 'oversized'} ({size} bytes, the header declares {declared})"
    return None
