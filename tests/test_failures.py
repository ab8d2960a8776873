"""GPU-side failures in one line (issue #23): each known failure is named with the part that failed, the share
in use and the fix; anything else is left to raise."""

import importlib.util
import textwrap

import pytest

from envkit.knowledge import load
from envkit.train.failures import explain, save_traceback


def raised_in(folder, code: str) -> BaseException:
    """The exception ``code`` raises from a module file under ``folder`` (a fake package path)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "fake.py"
    source.write_text(textwrap.dedent(f"def boom():\n    {code}\n"))
    spec = importlib.util.spec_from_file_location("fake_" + folder.name, source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.boom()
    except BaseException as exc:  # noqa: BLE001 - the test wants whatever it raised
        return exc
    raise AssertionError("did not raise")


def test_training_oom_names_training_the_share_and_the_budget(tmp_path):
    exc = raised_in(tmp_path / "trainer", "raise RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB')")
    failure = explain(exc, 0.6, "my.yaml")
    assert failure.title == "CUDA out of memory in training while vLLM holds 0.6 of the GPU"
    assert "vllm.sleep: true" in failure.fix and "envkit budget my.yaml" in failure.fix


def test_oom_raised_inside_vllm_is_vllms(tmp_path):
    exc = raised_in(tmp_path / "site" / "vllm" / "worker", "raise RuntimeError('CUDA out of memory. Tried 1 GiB')")
    assert explain(exc, 0.9, "r.yaml").title == "CUDA out of memory in vLLM while it started, with a share of 0.9"


def test_no_kv_room_through_a_cause_chain(tmp_path):
    inner = raised_in(tmp_path / "vllm", "raise ValueError('No available memory for the cache blocks. Try increasing')")
    outer = RuntimeError("Engine core initialization failed. See root cause above.")
    outer.__cause__ = inner
    failure = explain(outer, 0.01, "tiny.yaml")
    # the first matching row in the table order wins: the specific KV-cache row over the engine's generic one
    assert failure.title.startswith("vLLM's share of the GPU (0.01) leaves no room for its KV cache")
    assert "envkit budget tiny.yaml" in failure.fix


def test_nccl_and_engine_start_and_free_memory(tmp_path):
    nccl = RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1970, invalid usage\nncclInvalidUsage")
    assert explain(nccl, None, "r").title.startswith("NCCL failed (NCCL error in: ProcessGroupNCCL.cpp:1970")
    engine = RuntimeError("Engine core initialization failed. See root cause above. Failed core proc(s): {}")
    assert explain(engine, 0.3, "r").title.startswith("vLLM's engine died while it started")
    free = ValueError("Free memory on device (3.2/79.1 GiB) on startup is less than desired GPU memory utilization "
                      "(0.9, 71.2 GiB).")
    failure = explain(free, 0.9, "r.yaml")
    assert "vLLM asked for 0.9 of the GPU" in failure.title and "3.2/79.1 GiB" in failure.title


def test_vllm_off_is_said(tmp_path):
    exc = RuntimeError("CUDA out of memory.")
    assert "no share: vLLM is off" in explain(exc, None, "r").title


@pytest.mark.parametrize("exc", [ValueError("bad recipe"), KeyError("x"), RuntimeError("CUDA error: illegal address")])
def test_other_failures_are_not_ours(exc):
    assert explain(exc, 0.3, "r") is None


def test_every_row_formats_without_leftover_placeholders():
    for row in load("gpu_failures")["failures"]:
        failure = explain(RuntimeError(row["match"][0]), 0.3, "r.yaml")
        assert failure is not None, row["id"]
        assert "{" not in str(failure), row["id"]
        assert row["source"] and row["checked"], row["id"]


def test_traceback_is_kept_in_a_new_file(tmp_path):
    exc = raised_in(tmp_path / "x", "raise RuntimeError('CUDA out of memory.')")
    path = save_traceback(exc, "envkit-test")
    try:
        text = open(path).read()
        assert "Traceback (most recent call last)" in text and "CUDA out of memory" in text
    finally:
        import os

        os.unlink(path)


def test_envkit_train_says_a_gpu_failure_in_one_line_and_exits_1(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from envkit.cli import main
    from envkit.train import runner

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(runner, "train", out_of_memory)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    result = CliRunner().invoke(main, ["train", "tiny", "--output", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("envkit train: CUDA out of memory in training while vLLM holds no share: vLLM is off")
    assert "Traceback" not in result.stderr
    assert list(tmp_path.glob("envkit-train-*.log"))  # the traceback is kept, not printed


def test_envkit_train_lets_other_failures_raise(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from envkit.cli import main
    from envkit.train import runner

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug of ours")

    monkeypatch.setattr(runner, "train", bug)
    result = CliRunner().invoke(main, ["train", "tiny", "--output", str(tmp_path / "run")])
    assert isinstance(result.exception, ZeroDivisionError)
