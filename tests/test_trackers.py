"""output.report_to's trackers (issue #28): the check before the model loads (EK701), where each writes, and a
tiny CPU run writing real TensorBoard, Trackio, W&B (offline) and MLflow files with the reward, each reward
function and the step time in them, the samples table beside, and no secret anywhere in the run folder."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envkit.launch.checks import LAUNCH_CHECKS, LaunchInputs
from envkit.launch.tracking import TrackerFacts, mlflow_folder, tracker_env, tracker_facts
from envkit.recipe.load import parse_recipe
from envkit.rules.base import Severity
from envkit.train.rundir import LOCK
from tests.conftest import make_facts

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TINY = (RECIPES / "tiny.yaml").read_text().replace("path: data/toy.jsonl", f"path: {RECIPES / 'data' / 'toy.jsonl'}")
INSTALLED_PACKAGES = {"wandb": "0.31.0", "tensorboard": "2.21.0"}  # what "all" finds in the unit tests
MODULES = {"tensorboard": "tensorboard", "trackio": "trackio", "wandb": "wandb", "mlflow": "mlflow"}
INSTALLED = [name for name, module in MODULES.items() if importlib.util.find_spec(module) is not None]
SECRETS = {"WANDB_API_KEY": "canary-wandb-key-28", "HF_TOKEN": "canary-hf-token-28",
           "MLFLOW_TRACKING_PASSWORD": "canary-mlflow-pass-28", "MLFLOW_TRACKING_TOKEN": "canary-mlflow-token-28"}


def recipe_with(report_to: list[str], extra: str = ""):
    text = TINY.replace("  keep: 2", f"  keep: 2\n  report_to: [{', '.join(report_to)}]")
    return parse_recipe(text.replace("  temperature: 1.0", f"  temperature: 1.0{extra}"), "recipe.yaml")


def check(report_to: list[str], environ: dict, home: Path, extra: str = ""):
    recipe = recipe_with(report_to, extra)
    trackers = tracker_facts(report_to, environ, INSTALLED_PACKAGES, home)
    inputs = LaunchInputs(recipe, None, False, trackers=trackers)
    return LAUNCH_CHECKS["EK701"].finding(make_facts(gpus=None), inputs), trackers


def test_wandb_without_a_key_logs_offline_into_the_run(tmp_path):
    finding, trackers = check(["wandb"], {}, tmp_path)
    assert finding.severity is Severity.WARN and "wandb logs offline" in finding.title
    env = tracker_env(trackers, tmp_path / "run")
    assert env == {"WANDB_DIR": str((tmp_path / "run").resolve()), "WANDB_MODE": "offline"}


@pytest.mark.parametrize("environ, netrc", [({"WANDB_API_KEY": "sekrit-28"}, ""),
                                            ({}, "machine api.wandb.ai login user password sekrit-28\n")])
def test_wandb_with_a_key_or_a_login_is_online_and_says_no_secret(tmp_path, environ, netrc):
    if netrc:
        (tmp_path / ".netrc").write_text(netrc)
        (tmp_path / ".netrc").chmod(0o600)
    finding, trackers = check(["wandb"], environ, tmp_path)
    assert finding.severity is Severity.OK
    assert "WANDB_MODE" not in tracker_env(trackers, tmp_path)
    assert "sekrit-28" not in json.dumps(finding.to_dict()) + repr(trackers)
    assert ("WANDB_API_KEY=<set>" in finding.evidence) is not bool(netrc)


def test_wandb_online_without_a_key_is_refused_in_one_line_naming_the_field(tmp_path):
    finding, _ = check(["wandb"], {"WANDB_MODE": "online"}, tmp_path)
    assert finding.severity is Severity.FAIL
    assert finding.title.startswith("output.report_to: wandb: WANDB_MODE=online") and "\n" not in finding.title
    assert "WANDB_API_KEY" in finding.fix


@pytest.mark.parametrize("tracker, variable", [("wandb", "WANDB_DIR"), ("trackio", "TRACKIO_DIR"),
                                               ("tensorboard", "TENSORBOARD_LOGGING_DIR"),
                                               ("mlflow", "MLFLOW_TRACKING_URI")])
def test_a_folder_of_the_users_that_cannot_be_written_is_refused(tmp_path, tracker, variable):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    value = f"sqlite:///{blocked / 'sub' / 'mlflow.db'}" if tracker == "mlflow" else str(blocked / "sub")
    finding, trackers = check([tracker], {variable: value, "WANDB_API_KEY": "k"}, tmp_path)
    assert finding.severity is Severity.FAIL and f"cannot write to {variable}=" in finding.title
    assert variable not in tracker_env(trackers, tmp_path)  # the user's place is kept, never replaced


@pytest.mark.parametrize("uri, folder", [("sqlite:///mlflow.db", "."), ("sqlite:////srv/m/runs.db", "/srv/m"),
                                         ("file:///srv/mlruns", "/srv/mlruns"), ("/srv/mlruns", "/srv/mlruns"),
                                         ("https://user:pw@mlflow.example", None), ("databricks", None)])
def test_the_local_folder_an_mlflow_uri_names(uri, folder):
    assert mlflow_folder({"MLFLOW_TRACKING_URI": uri}) == folder


def test_a_folder_of_another_tracker_is_not_the_runs_business(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    finding, _ = check(["tensorboard"], {"WANDB_DIR": str(blocked / "sub")}, tmp_path)
    assert finding.severity is Severity.OK


def test_a_trackio_space_needs_a_hub_token(tmp_path):
    finding, _ = check(["trackio"], {}, tmp_path, "\n  trackio_space_id: me/runs")
    assert finding.severity is Severity.FAIL and "me/runs needs a hub token" in finding.title
    assert check(["trackio"], {"HF_TOKEN": "t"}, tmp_path, "\n  trackio_space_id: me/runs")[0].severity is Severity.OK


def test_mlflow_defaults_to_a_file_store_in_the_run_and_a_server_is_left_alone(tmp_path):
    env = tracker_env(TrackerFacts(chosen=("mlflow",)), tmp_path)
    assert env["MLFLOW_TRACKING_URI"] == (tmp_path.resolve() / "mlruns").as_uri()
    finding, trackers = check(["mlflow"], {"MLFLOW_TRACKING_URI": "https://u:p@mlflow.example"}, tmp_path)
    assert finding.severity is Severity.OK and "u:p" not in finding.evidence
    assert tracker_env(trackers, tmp_path) == {}


def test_no_tracker_no_check(tmp_path):
    assert check([], {}, tmp_path)[0].severity is Severity.SKIP


def test_all_means_the_installed_trackers(tmp_path):
    """report_to: [all] is every installed integration to transformers: W&B among them, offline here."""
    finding, trackers = check(["all"], {}, tmp_path)
    assert trackers.chosen == ("tensorboard", "wandb") and finding.severity is Severity.WARN
    assert tracker_env(trackers, tmp_path)["WANDB_MODE"] == "offline"


def test_the_dry_run_names_the_check_and_where_the_trackers_write(tmp_path):
    """Before anything loads: the plan says wandb is offline and where each tracker writes."""
    if "wandb" not in INSTALLED:
        pytest.skip("wandb not installed: pip install -e '.[track]'")
    path = tmp_path / "recipe.yaml"
    path.write_text(TINY.replace("  keep: 2", "  keep: 2\n  report_to: [wandb]"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    command = [sys.executable, "-m", "envkit", "train", str(path), "--dry-run", "--output", str(tmp_path / "r")]
    done = subprocess.run(command, capture_output=True, text=True, env={**env, "HOME": str(tmp_path)}, timeout=120,
                          check=False)
    assert "warning: EK701 wandb logs offline" in done.stderr, done.stderr
    plan = json.loads(done.stdout)["plan"]
    assert plan["env"]["WANDB_MODE"] == "offline" and plan["env"]["WANDB_DIR"] == str((tmp_path / "r").resolve())


# --- the real libraries on the tiny recipe -------------------------------------------------------------------

NEEDED = [name for name in ("torch", "trl") if importlib.util.find_spec(name) is None]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    if NEEDED or not INSTALLED:
        pytest.skip(f"needs torch, trl and a tracker: pip install -e '.[train,track]' ({NEEDED or 'no tracker'})")
    root = tmp_path_factory.mktemp("tracked")
    text = TINY.replace("  keep: 2", f"  keep: 2\n  report_to: [{', '.join(INSTALLED)}]\n  samples_every: 1")
    text = text.replace("max_steps: 20", "max_steps: 2").replace("merge: true", "merge: false")
    (root / "recipe.yaml").write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_", "TRACKIO_", "TENSORBOARD_"))}
    env.update(SECRETS, WANDB_MODE="offline", HOME=str(root), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    log = root / "log"
    with log.open("w") as out:
        train = subprocess.Popen([sys.executable, "-m", "envkit", "train", "recipe.yaml", "--output", "run"], cwd=root,
                                 env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not (root / "run" / LOCK).exists() and train.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    # the live view, started while the run holds its folder: it returns when the run has ended
    follow = subprocess.run([sys.executable, "-m", "envkit", "report", "run", "--follow"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=600, check=False)
    ended_first = (root / "run" / "manifest.json").exists()  # written before the run lets go of its folder
    train.wait(timeout=600)
    assert train.returncode == 0, log.read_text()[-3000:]
    return root / "run", log.read_text(), (follow, ended_first)


KEYS = ("reward", "rewards/exact_answer/mean", "rewards/length/mean", "rewards/digits/mean", "step_time")


def needs(tracker: str) -> None:
    if tracker not in INSTALLED:
        pytest.skip(f"{tracker} not installed: pip install -e '.[track]'")


def test_tensorboard_events_hold_the_rewards_and_step_time(tracked_run):
    needs("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = glob.glob(str(tracked_run[0] / "runs" / "*"))
    accumulator = EventAccumulator(events)
    accumulator.Reload()
    for key in KEYS:
        assert [e.step for e in accumulator.Scalars(f"train/{key}")] == [1, 2]


def test_mlflow_file_store_holds_the_rewards_and_the_samples_table(tracked_run, monkeypatch):
    needs("mlflow")
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as envkit sets it for the run (MLflow 3.7+)
    client = mlflow.MlflowClient((tracked_run[0] / "mlruns").as_uri())
    (run,) = client.search_runs(["0"])
    for key in KEYS:
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2]
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    table = json.loads((artifacts / "samples" / "step_000002.json").read_text())
    assert {"prompt", "answer", "completion", "exact_answer", "length", "digits"} <= set(table["columns"])


def test_trackio_database_holds_the_rewards_and_the_samples(tracked_run):
    needs("trackio")
    (database,) = glob.glob(str(tracked_run[0] / "trackio" / "*.db"))
    with sqlite3.connect(database) as db:
        logged = [json.loads(row[0]) for row in db.execute("select metrics from metrics")]
    keys = {key for row in logged for key in row}
    assert {f"train/{key}" for key in KEYS} | {"samples"} <= keys


def test_wandb_offline_run_holds_the_rewards_and_the_samples_table(tracked_run):
    needs("wandb")
    (record,) = glob.glob(str(tracked_run[0] / "wandb" / "offline-run-*" / "run-*.wandb"))
    data = Path(record).read_bytes()  # wandb's own record log; the history keys are in it as written
    for key in KEYS:
        assert f"train/{key}".encode() in data, key
    tables = glob.glob(str(tracked_run[0] / "wandb" / "offline-run-*" / "files" / "media" / "table" / "samples*.json"))
    assert len(tables) == 2  # one a logged step (samples_every: 1)
    assert all("answer" in json.loads(Path(table).read_text())["columns"] for table in tables)


def test_no_secret_reaches_the_run_folder_or_the_log(tracked_run):
    run, log, _ = tracked_run
    found = [str(p) for p in run.rglob("*")
             if p.is_file() and any(secret.encode() in p.read_bytes() for secret in SECRETS.values())]
    assert found == []
    assert not any(s in log for s in SECRETS.values())
    plan_env = json.loads((run / "manifest.json").read_text())["plan"]["env"]
    assert not set(plan_env) & set(SECRETS)


def test_samples_of_every_step_with_answers_and_rewards_per_function(tracked_run):
    rows = [json.loads(line) for line in (tracked_run[0] / "samples.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    group = rows[-1]["groups"][0]
    assert group["prompt"].startswith("Question: ") and group["answer"].isdigit() and len(group["completions"]) == 8
    assert set(group["completions"][0]["rewards"]) == {"exact_answer", "length", "digits"}


def test_follow_watched_the_run_live_and_ended_with_it(tracked_run):
    follow, ended_first = tracked_run[2]
    assert follow.returncode == 0 and ended_first, follow.stderr[-2000:]
    views = follow.stdout.split("run.png and report.html: ")
    assert "(following run: Ctrl-C stops)" in follow.stdout  # at least one view while the run went on
    assert views[-1].startswith("2 steps") and "following" not in views[-1]  # the last one, as it ended
