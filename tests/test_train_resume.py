"""`envkit train --resume` end to end on the CPU, on copies of one finished two-step tiny run: --max-steps
extends it, a torn latest checkpoint falls back to the one before."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.train.checkpoints import problem

MISSING = [name for name in ("torch", "trl") if importlib.util.find_spec(name) is None]
pytestmark = [
    pytest.mark.train,
    pytest.mark.skipif(bool(MISSING), reason=f"{' and '.join(MISSING)} not installed: pip install -e '.[train]'"),
]
TINY = Path(__file__).resolve().parents[1] / "recipes" / "tiny.yaml"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """(recipe, run): the tiny recipe cut to 2 steps, a checkpoint each, run once in a subprocess as a user runs it."""
    home = tmp_path_factory.mktemp("resume")
    text = TINY.read_text()
    for old, new in [("path: data/toy.jsonl", f"path: {TINY.parent / 'data' / 'toy.jsonl'}"), ("max_steps: 4", "max_steps: 2"),
                     ("save_steps: 2", "save_steps: 1")]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    recipe, run = home / "two.yaml", home / "run"
    recipe.write_text(text)
    done = subprocess.run([sys.executable, "-m", "envkit", "train", str(recipe), "--output", str(run)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    return recipe, run


@pytest.fixture
def run(finished, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished[1], copy)
    return copy


def train(recipe: Path, run: Path, *args: str):
    return CliRunner().invoke(main, ["train", str(recipe), "--output", str(run), "--resume", *args])


def files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_resume_with_a_larger_max_steps_extends_the_run(finished, run):
    recipe, _ = finished
    before = files(run)
    result = train(recipe, run, "--max-steps", "3")
    assert result.exit_code == 0, result.output
    assert "envkit train: resuming from checkpoint-2 to max_steps 3" in result.stderr
    after = rows(run)
    assert [r["step"] for r in after] == [1, 2, 3]
    assert after[:2] == [json.loads(line) for line in before["metrics.jsonl"].decode().splitlines()]
    # the schedule for 3 steps at step 2, not the 2-step run's final rate (0): HF restores that one
    assert after[2]["learning_rate"] == pytest.approx(1e-3 / 3)
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert manifest(run)["steps"] == 3 and manifest(run)["completed"] and manifest(run)["resumed_from"] == "checkpoint-2"
    adapter = (run / "adapter" / "adapter_model.safetensors").read_bytes()
    assert adapter == (run / "checkpoint-3" / "adapter_model.safetensors").read_bytes() != before["adapter/adapter_model.safetensors"]
    assert (run / "merged" / "model.safetensors").read_bytes() != before["merged/model.safetensors"]
    assert not (run / "adapter.partial").exists()


def test_a_torn_latest_checkpoint_falls_back_to_the_one_before(finished, run):
    recipe, _ = finished
    optimizer = run / "checkpoint-2" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:1000])
    first = rows(run)[0]
    result = train(recipe, run)
    assert result.exit_code == 0, result.output
    assert "envkit train: warning: skipping checkpoint-2: optimizer.pt: not a readable torch.save archive" in result.stderr
    assert "envkit train: resuming from checkpoint-1 to max_steps 2" in result.stderr
    assert "Traceback" not in result.output
    assert [r["step"] for r in rows(run)] == [1, 2] and rows(run)[0] == first
    assert manifest(run)["resumed_from"] == "checkpoint-1" and manifest(run)["steps"] == 2 and manifest(run)["completed"]
    assert problem(run / "checkpoint-2") is None  # saved again, whole
