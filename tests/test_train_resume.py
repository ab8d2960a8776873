"""`envkit train --resume` end to end on the CPU, on copies of one finished two-step tiny run: a finished run
is left alone, --max-steps extends it, a torn latest checkpoint falls back to the one before, a run that reached
max_steps without writing its adapter gets it from the checkpoint.  Semantics: envkit.train.runner.train."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.train.checkpoints import problem
from envkit.train.rundir import LOCK

pytestmark = pytest.mark.train  # tests/conftest.py: skipped without torch and trl
TINY = Path(__file__).resolve().parents[1] / "recipes" / "tiny.yaml"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """(recipe, run): the tiny recipe cut to 2 steps, a checkpoint each, run once in a subprocess as a user runs it."""
    home = tmp_path_factory.mktemp("resume")
    text = TINY.read_text()
    constant = next(line for line in text.splitlines(keepends=True) if "lr_scheduler_type: constant" in line)
    for old, new in [("path: data/toy.jsonl", f"path: {TINY.parent / 'data' / 'toy.jsonl'}"), ("max_steps: 20", "max_steps: 2"),
                     ("save_steps: 10", "save_steps: 1"),
                     (constant, "")]:  # TRL's linear decay: the schedule resuming must keep
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


def test_resuming_a_finished_run_does_nothing_and_says_so(finished, run):
    """Also over a crashed run's lock file: the flock died with its process, the text alone locks nothing."""
    recipe, _ = finished
    (run / LOCK).write_text(f"pid {2**22 + 1} on elsewhere, started 2026-11-30T00:00:00+00:00\n")
    before = files(run)
    for extra in ([], ["--max-steps", "1"], ["--max-steps", "2"]):
        result = train(recipe, run, *extra)
        assert result.exit_code == 0, result.output
        assert result.stderr.splitlines() == [f"envkit train: {run} is finished (step 2, manifest.json completed): "
                                              "nothing to do; --resume --max-steps N, N > 2, extends it"]
        assert files(run) == {k: v for k, v in before.items() if k != LOCK}  # nothing trained, nothing rewritten


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
    assert after[2]["learning_rate"] == pytest.approx(2e-2 / 3)
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert manifest(run)["steps"] == 3 and manifest(run)["completed"] and manifest(run)["resumed_from"] == "checkpoint-2"
    adapter = (run / "adapter" / "adapter_model.safetensors").read_bytes()
    assert adapter == (run / "checkpoint-3" / "adapter_model.safetensors").read_bytes() != before["adapter/adapter_model.safetensors"]
    assert (run / "merged" / "model.safetensors").read_bytes() != before["merged/model.safetensors"]
    assert not (run / "adapter.partial").exists() and not (run / LOCK).exists()


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


def test_a_run_at_max_steps_without_its_adapter_gets_it_from_the_checkpoint(finished, run):
    """SIGKILL while writing adapter/ or merged/ (or Ctrl-C during the last step): no step left to train."""
    recipe, _ = finished
    shutil.rmtree(run / "adapter")
    shutil.rmtree(run / "merged")
    (run / "manifest.json").unlink()
    before = files(run)
    result = train(recipe, run)
    assert result.exit_code == 0, result.output
    assert "envkit train: checkpoint-2 is at max_steps: nothing left to train; writing adapter/ and merged/ from it" in result.stderr
    assert [r["step"] for r in rows(run)] == [1, 2]
    assert {k: v for k, v in files(run).items() if k.startswith("checkpoint-")} == \
        {k: v for k, v in before.items() if k.startswith("checkpoint-")}  # no step trained
    assert (run / "adapter" / "adapter_model.safetensors").read_bytes() == before["checkpoint-2/adapter_model.safetensors"]
    assert not (run / "adapter" / "optimizer.pt").exists() and (run / "merged" / "model.safetensors").exists()
    assert manifest(run)["steps"] == 2 and manifest(run)["completed"] and manifest(run)["resumed_from"] == "checkpoint-2"


def test_a_checkpoint_past_max_steps_of_an_unfinished_run_is_refused(finished, run):
    recipe, _ = finished
    (run / "manifest.json").write_text(json.dumps({**manifest(run), "completed": False}))
    before = files(run)
    result = train(recipe, run, "--max-steps", "1")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"envkit train: {run / 'checkpoint-2'} is past max_steps 1 and its run did not "
                                          "complete: --max-steps 2 ends it at that step"]
    assert files(run) == before
