"""Which checkpoint `--resume` starts from: torn files are found from headers and sizes, and the newest
complete checkpoint wins.  Checkpoints here are built in the formats the Trainer writes (a safetensors
header + data, zip archives as torch.save writes them); one test checks against torch's own files."""

from __future__ import annotations

import importlib.util
import json
import struct
import zipfile
from pathlib import Path

import pytest

from envkit.train.checkpoints import Checkpoint, last_checkpoint, problem


def safetensors_bytes(n_floats: int = 4) -> bytes:
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "lora_A": {"dtype": "F32", "shape": [n_floats], "data_offsets": [0, 4 * n_floats]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(4 * n_floats)


def make_checkpoint(run: Path, step: int, max_steps: int = 4) -> Path:
    folder = run / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(safetensors_bytes())
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        with zipfile.ZipFile(folder / name, "w") as archive:
            archive.writestr("archive/data.pkl", b"\x80\x02}q\x00." * 50)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": max_steps, "log_history": []}))
    return folder


def truncate(path: Path, keep: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if keep is None else keep])


CORRUPTIONS = {
    "state-not-json": (lambda c: (c / "trainer_state.json").write_text('{"global_step": 4, "max_st'),
                       "trainer_state.json is not a JSON object"),
    "state-missing": (lambda c: (c / "trainer_state.json").unlink(), "no trainer_state.json (its save was interrupted)"),
    "state-other-step": (lambda c: (c / "trainer_state.json").write_text('{"global_step": 3}'),
                         "trainer_state.json names global_step 3, not this folder's step"),
    "adapter-truncated": (lambda c: truncate(c / "adapter_model.safetensors", -1 + len(safetensors_bytes())),
                          "adapter_model.safetensors: truncated"),
    "adapter-header-cut": (lambda c: truncate(c / "adapter_model.safetensors", 20), "adapter_model.safetensors: truncated"),
    "adapter-header-garbage": (lambda c: (c / "adapter_model.safetensors").write_bytes(b"\x10" + bytes(7) + b"not json" * 3),
                               "adapter_model.safetensors: header unreadable"),
    "adapter-oversized": (lambda c: (c / "adapter_model.safetensors").write_bytes(safetensors_bytes() + b"\0"),
                          "adapter_model.safetensors: oversized"),
    "adapter-missing": (lambda c: (c / "adapter_model.safetensors").unlink(), "no *.safetensors weights"),
    "optimizer-truncated": (lambda c: truncate(c / "optimizer.pt"), "optimizer.pt: not a readable torch.save archive"),
    "scheduler-empty": (lambda c: truncate(c / "scheduler.pt", 0), "scheduler.pt: not a readable torch.save archive"),
    "rng-truncated": (lambda c: truncate(c / "rng_state.pth"), "rng_state.pth: not a readable torch.save archive"),
}


def test_a_complete_checkpoint_has_no_problem(tmp_path):
    assert problem(make_checkpoint(tmp_path, 4)) is None


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_each_torn_file_is_named(tmp_path, name):
    corrupt, said = CORRUPTIONS[name]
    folder = make_checkpoint(tmp_path, 4)
    corrupt(folder)
    assert problem(folder).startswith(said)


@pytest.mark.parametrize("name", ["state-not-json", "adapter-truncated", "optimizer-truncated"])
def test_a_torn_latest_checkpoint_falls_back_to_the_previous_one_with_a_warning(tmp_path, name):
    make_checkpoint(tmp_path, 2)
    corrupt, said = CORRUPTIONS[name]
    corrupt(make_checkpoint(tmp_path, 4))
    (tmp_path / "checkpoint-9x").mkdir()  # not a checkpoint name: ignored
    warnings = []
    found = last_checkpoint(tmp_path, warnings.append)
    assert found == Checkpoint(tmp_path / "checkpoint-2", 2, 4)
    assert len(warnings) == 1 and warnings[0].startswith(f"skipping checkpoint-4: {said}")


def test_the_newest_complete_checkpoint_is_taken_by_number_not_by_name(tmp_path):
    for step in (2, 10, 4):
        make_checkpoint(tmp_path, step, max_steps=12)
    warnings = []
    assert last_checkpoint(tmp_path, warnings.append) == Checkpoint(tmp_path / "checkpoint-10", 10, 12)
    assert warnings == []


def test_no_complete_checkpoint_is_none_and_every_one_skipped_is_said(tmp_path):
    for step in (2, 4):
        CORRUPTIONS["optimizer-truncated"][0](make_checkpoint(tmp_path, step))
    warnings = []
    assert last_checkpoint(tmp_path, warnings.append) is None
    assert [w.split(":")[0] for w in warnings] == ["skipping checkpoint-4", "skipping checkpoint-2"]
    assert last_checkpoint(tmp_path / "absent") is None


@pytest.mark.skipif(not all(importlib.util.find_spec(n) for n in ("torch", "safetensors")), reason="needs torch and safetensors")
def test_the_checks_hold_for_the_files_torch_and_safetensors_write(tmp_path):
    import torch
    from safetensors.torch import save_file

    folder = make_checkpoint(tmp_path, 4)
    save_file({"lora_A": torch.ones(3, 5), "lora_B": torch.zeros(5, 2, dtype=torch.bfloat16)}, folder / "adapter_model.safetensors")
    torch.save({"state": {0: {"exp_avg": torch.ones(64)}}, "param_groups": [{"lr": 1e-3}]}, folder / "optimizer.pt")
    assert problem(folder) is None
    truncate(folder / "optimizer.pt", (folder / "optimizer.pt").stat().st_size - 1)
    assert problem(folder).startswith("optimizer.pt: not a readable torch.save archive")
    torch.save({}, folder / "optimizer.pt")
    truncate(folder / "adapter_model.safetensors", (folder / "adapter_model.safetensors").stat().st_size - 1)
    assert problem(folder).startswith("adapter_model.safetensors: truncated")
