"""What a run shows while and after it trains (issue #28): `envkit report --samples` (best and worst of a group side
by side), `--follow` (redrawn as metrics arrive, ended with the run) and report.html (one offline file) checked in a
real headless browser where one is installed."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.runs.samples import pick_step, read_samples, render_step
from envkit.train.live import follow, run_active
from envkit.train.rundir import LOCK, RunLock

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
BROWSER = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "chrome"))), None)


def completion(text: str, exact: float, digits: float) -> dict:
    return {"completion": text, "reward": exact + digits, "rewards": {"exact_answer": exact, "digits": digits},
            "advantage": 0.0}


def write_run(run: Path, steps: int = 3) -> None:
    run.mkdir(exist_ok=True)
    rows = [{"step": s, "reward": 0.2 * s, "rewards/exact_answer/mean": 0.1 * s, "rewards/digits/mean": 0.3,
             "step_time": 1.5, "tokens_per_s": 100.0 + s} for s in range(1, steps + 1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = [{"step": s, "groups": [{"prompt": "Question: What is 7+11?\nAnswer:", "answer": "18", "completions": [
        completion("eighteen, I think", 0.0, 0.0), completion(f" 18 (step {s})", 1.0, 1.0),
        completion("7", 0.0, 0.5)]}]} for s in (1, steps)]
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples) + "{torn")


def test_samples_show_the_best_and_worst_side_by_side(tmp_path):
    write_run(tmp_path)
    rows = read_samples(tmp_path)
    assert [r["step"] for r in rows] == [1, 3]  # the torn last line is left out
    text = render_step(pick_step(rows, None), width=100)
    assert text.splitlines()[0] == "step 3: 1 prompt"
    assert "answer: 18" in text and "3 completions, reward 0.000 .. 2.000, mean 0.833" in text
    side = next(line for line in text.splitlines() if line.startswith("best:"))
    assert " | worst: reward 0.000 (exact_answer 0, digits 0)" in side
    assert side.startswith("best: reward 2.000 (exact_answer 1, digits 1)")
    assert any(" 18 (step 3)" in line and "| eighteen, I think" in line for line in text.splitlines())


def test_samples_of_a_step_through_the_cli(tmp_path):
    write_run(tmp_path)
    result = CliRunner().invoke(main, ["report", str(tmp_path), "--samples", "1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("step 1: 1 prompt") and "18 (step 1)" in result.stdout
    assert not (tmp_path / "run.png").exists()  # printing samples redraws nothing
    missing = CliRunner().invoke(main, ["report", str(tmp_path), "--samples", "2"])
    assert missing.exit_code == 2 and "no samples of step 2" in missing.stderr
    assert "logged steps: 1, 3" in missing.stderr
    assert CliRunner().invoke(main, ["report", str(tmp_path), "--samples", "x"]).exit_code == 2


def test_samples_that_are_not_groups_or_completions_are_left_out(tmp_path):
    (tmp_path / "samples.jsonl").write_text(
        '{"step": 1, "groups": [5, {"completions": [1, "x", {"reward": "NaN", "completion": 7}]}, {"prompt": 1}]}\n'
        '{"step": 2, "groups": "x"}\n[]\n')
    result = CliRunner().invoke(main, ["report", str(tmp_path), "--samples"])
    assert result.exit_code == 0 and result.stdout.startswith("step 1: 1 prompt")
    assert "best: reward -" in result.stdout and "    1 completion\n" in result.stdout
    empty = CliRunner().invoke(main, ["report", str(tmp_path / "none"), "--samples"])
    assert empty.exit_code == 2  # click: no such folder


def test_samples_text_cannot_steer_the_terminal(tmp_path):
    row = {"step": 1, "groups": [{"prompt": "p\x1b]0;title\x07", "answer": "\x1b[2J", "completions": [
        completion("\x1b[31mred", 1.0, 0.0), completion("x", 0.0, 0.0)]}]}
    assert "\x1b" not in render_step(row) and "\x07" not in render_step(row)


def test_run_active_follows_the_trains_lock(tmp_path):
    assert not run_active(tmp_path)
    lock = RunLock(tmp_path)
    try:
        assert run_active(tmp_path)
    finally:
        lock.release()
    assert not run_active(tmp_path) and not (tmp_path / LOCK).exists()


def test_follow_redraws_as_metrics_grow_and_ends_with_the_run(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    said, polls = [], iter([True, True, True, False])

    def sleep(_):  # the run logs a step between two polls, then nothing, then ends
        if len(said) == 1:
            with (tmp_path / "metrics.jsonl").open("a") as out:
                out.write('{"step": 2}\n')
            os.utime(tmp_path / "metrics.jsonl", ns=(0, 10**18))

    assert follow(tmp_path, lambda: f"steps: {(tmp_path / 'metrics.jsonl').read_text().count('step')}",
                  echo=said.append, active=lambda _: next(polls), sleep=sleep)
    assert [s.split("\n")[0] for s in said] == ["steps: 1", "steps: 2", "steps: 2"]  # the last one as the run ended
    assert "following" in said[0] and "following" not in said[-1]


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="needs matplotlib")
def test_follow_of_an_ended_run_draws_once(tmp_path):
    write_run(tmp_path)
    result = CliRunner().invoke(main, ["report", str(tmp_path), "--follow"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{tmp_path / 'run.png'} and report.html: 3 steps")
    assert (tmp_path / "report.html").is_file() and (tmp_path / "run.png").is_file()
    (tmp_path / "metrics.jsonl").unlink()  # no run and no metrics: said, not waited for
    nothing = CliRunner().invoke(main, ["report", str(tmp_path), "--follow"])
    assert nothing.exit_code == 2 and "no envkit train is running in" in nothing.stderr


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="needs matplotlib")
def test_report_html_is_one_file_that_escapes_the_runs_text(tmp_path):
    write_run(tmp_path)
    group = {"prompt": "</script><b>x", "answer": 1, "completions": [completion("<i>", 1, 0)]}
    (tmp_path / "samples.jsonl").write_text(json.dumps({"step": 1, "groups": [group]}))
    assert CliRunner().invoke(main, ["report", str(tmp_path)]).exit_code == 0
    page = (tmp_path / "report.html").read_text()
    assert "</script><b>x" not in page and "&lt;/script&gt;&lt;b&gt;x" in page and "&lt;i&gt;" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "src=" not in page  # nothing fetched


@pytest.mark.skipif(BROWSER is None or not HAVE_MATPLOTLIB, reason="no headless browser (apt-get install chromium)")
def test_report_html_renders_its_charts_in_a_real_browser(tmp_path):
    """Chromium runs the page's script offline: every panel becomes an SVG chart with the run's points, and the
    samples table is there; a screenshot is kept beside it for a person to look at."""
    write_run(tmp_path, steps=6)
    assert CliRunner().invoke(main, ["report", str(tmp_path)]).exit_code == 0
    page = (tmp_path / "report.html").as_uri()
    flags = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(flags + ["--dump-dom", page], capture_output=True, text=True, timeout=120, check=False).stdout
    assert "4 charts drawn" in dom, dom[-2000:]  # reward, per function, step time, tokens/s
    assert dom.count('class="series"') == 5 and 'data-label="digits" data-points="6"' in dom
    assert "<th>best</th><th>worst</th>" in dom and "18 (step 6)" in dom
    shot = tmp_path / "report.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1400,1100", page], capture_output=True,
                   timeout=120, check=False)
    assert shot.stat().st_size > 10_000
    if os.environ.get("ENVKIT_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["ENVKIT_KEEP_SCREENSHOT"])


def test_resume_drops_the_samples_of_steps_that_run_again(tmp_path):
    pytest.importorskip("transformers")
    from envkit.train.samples_log import trim_samples

    write_run(tmp_path, steps=3)  # samples of steps 1 and 3, and a torn line
    trim_samples(tmp_path, 2)
    assert [r["step"] for r in read_samples(tmp_path)] == [1]
    assert (tmp_path / "samples.jsonl").read_text().count("\n") == 1  # the torn line gone too
