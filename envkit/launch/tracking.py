"""The trackers of ``output.report_to`` (TensorBoard, Trackio, W&B, MLflow): where each writes, and a check
(EK701) that each can, before the model loads.

Without a setting of the user's, every tracker writes into the run folder (which `envkit train` has already
found writable): ``tracker_env`` says the variables that put it there, and ``WANDB_MODE=offline`` where W&B has
no key (an air-gapped cluster: ``wandb sync`` uploads the run later).  A folder the user names instead, a mode
that needs a login the machine lacks, or a Trackio Space without a hub token is refused in one line naming the
recipe field and the fix: transformers would otherwise fail (or W&B prompt for a key) after the model has loaded.
"""

from __future__ import annotations

import contextlib
import netrc
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from packaging.utils import canonicalize_name

from envkit.facts import Facts
from envkit.knowledge import curated
from envkit.launch.checks import LAUNCH_CHECKS, LaunchInputs
from envkit.masking import masked
from envkit.rules.base import Outcome, fail, ok, rule, skip, warn

TRACKERS = ("tensorboard", "trackio", "wandb", "mlflow")
# The variables each tracker reads that envkit checks or sets; secrets are kept as <set>/<unset> only.
VARIABLES = ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_BASE_URL", "MLFLOW_TRACKING_URI",
             "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "TRACKIO_DIR",
             "TRACKIO_SPACE_ID", "TENSORBOARD_LOGGING_DIR", "HF_TOKEN")
# The variable of each tracker that may point it out of the run folder (MLflow's: a path or file: URI, or a server).
FOLDERS = {"wandb": "WANDB_DIR", "trackio": "TRACKIO_DIR", "tensorboard": "TENSORBOARD_LOGGING_DIR",
           "mlflow": "MLFLOW_TRACKING_URI"}
WANDB_OFFLINE = ("offline", "dryrun", "disabled")
WANDB_HOST = "api.wandb.ai"


@dataclass(frozen=True)
class TrackerFacts:
    """What the tracker check reads of this machine (gathered by ``tracker_facts``)."""

    chosen: tuple[str, ...] = ()  # the TRACKERS the run reports to (report_to's; with "all", the installed ones)
    env: Mapping[str, str] = field(default_factory=dict)  # VARIABLES that are set, secrets masked
    wandb_login: bool = False  # ~/.netrc holds a W&B key (`wandb login`)
    hf_login: bool = False  # HF_TOKEN or the hub's token file
    unwritable: Mapping[str, str] = field(default_factory=dict)  # a variable naming a folder -> why it can't be written


def chosen_trackers(report_to: list[str], installed: Mapping[str, str]) -> tuple[str, ...]:
    """The TRACKERS a run reports to: those report_to names, or with "all" (transformers: every integration
    installed) those whose package is installed (curated.json report_to_packages)."""
    if "all" not in report_to:
        return tuple(name for name in TRACKERS if name in report_to)
    packages = curated("report_to_packages")["integrations"]
    return tuple(name for name in TRACKERS if any(all(canonicalize_name(p) in installed for p in choice.split("+"))
                                                  for choice in packages[name]))


def tracker_facts(report_to: list[str], environ: Mapping[str, str], installed: Mapping[str, str],
                  home: Path | None = None) -> TrackerFacts:
    """Read the trackers' variables, the logins and whether the folder each tracker the run reports to is pointed
    at by the environment can be written (created if missing, as the tracker would)."""
    home = Path.home() if home is None else home
    chosen = chosen_trackers(report_to, installed)
    env = {name: masked(name, environ[name]) for name in VARIABLES if environ.get(name)}
    unwritable = {}
    for tracker in (name for name in chosen if name in FOLDERS):
        variable = FOLDERS[tracker]
        folder = mlflow_folder(environ) if tracker == "mlflow" else environ.get(variable)
        why = folder and _not_writable(Path(folder).expanduser())
        if why:
            unwritable[variable] = why
    hf_home = Path(environ.get("HF_HOME") or home / ".cache" / "huggingface")
    hf_login = bool(environ.get("HF_TOKEN")) or (hf_home / "token").is_file()
    return TrackerFacts(chosen, env, _wandb_netrc(environ, home), hf_login, unwritable)


def mlflow_folder(environ: Mapping[str, str]) -> str | None:
    """The local folder MLFLOW_TRACKING_URI names: a file store's (a path or file:), a sqlite database's; None for
    a tracking server."""
    uri = environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":  # sqlite:///relative.db, sqlite:////absolute.db
        return str(Path(uri.removeprefix("sqlite:///")).parent)
    if parsed.scheme == "file":
        return parsed.path
    return uri if parsed.scheme == "" and uri != "databricks" else None  # "databricks": the workspace's server


def _not_writable(folder: Path) -> str | None:
    """Why a file cannot be made in ``folder`` (created with its parents if missing), or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".envkit-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _wandb_netrc(environ: Mapping[str, str], home: Path) -> bool:
    """~/.netrc (or NETRC) has an entry for the W&B host: where `wandb login` stores the key."""
    host = urlparse(environ.get("WANDB_BASE_URL") or f"https://{WANDB_HOST}").hostname or WANDB_HOST
    with contextlib.suppress(OSError, netrc.NetrcParseError):
        return netrc.netrc(environ.get("NETRC") or home / ".netrc").authenticators(host) is not None
    return False


def tracker_env(facts: TrackerFacts, output_dir: Path) -> dict[str, str]:
    """The variables envkit sets for the run (plan.env, manifest.json): each tracker into the run folder where
    the user named no place, and W&B offline where it has no key.  Never a secret."""
    run, report_to = output_dir.resolve(), facts.chosen
    env = {}
    if "wandb" in report_to:
        if "WANDB_DIR" not in facts.env:
            env["WANDB_DIR"] = str(run)  # wandb adds wandb/
        if not _wandb_key(facts) and "WANDB_MODE" not in facts.env:
            env["WANDB_MODE"] = "offline"
    if "trackio" in report_to and "TRACKIO_DIR" not in facts.env:
        env["TRACKIO_DIR"] = str(run / "trackio")
    if "mlflow" in report_to and "MLFLOW_TRACKING_URI" not in facts.env:
        # a file store in the run (MLflow 3.7+ asks for the opt-in; its sqlite default would put the
        # artifacts, the samples tables among them, in the working directory's mlruns/)
        env.update(MLFLOW_TRACKING_URI=(run / "mlruns").as_uri(), MLFLOW_ALLOW_FILE_STORE="true")
    return env


def _wandb_key(facts: TrackerFacts) -> bool:
    return "WANDB_API_KEY" in facts.env or facts.wandb_login


@rule("EK701", "tracker-ready", "tracking", LAUNCH_CHECKS)
def tracker_ready(facts: Facts, inputs: LaunchInputs) -> Outcome:
    """Each tracker in output.report_to can write its run: its folder is writable, its login or offline mode is set.

    ``all`` means the installed ones, as for transformers.  TensorBoard, Trackio, W&B and MLflow write into the run
    folder unless a variable of the user's points them elsewhere (TENSORBOARD_LOGGING_DIR, TRACKIO_DIR, WANDB_DIR,
    MLFLOW_TRACKING_URI: a path or file: URI; an http(s) URI is a tracking server, whose credentials MLflow reads
    from MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD); such a folder must be writable.  W&B without a
    key (WANDB_API_KEY, or `wandb login` in ~/.netrc) logs offline (envkit sets WANDB_MODE=offline; `wandb sync
    RUN/wandb/offline-run-*` uploads it later) unless WANDB_MODE asks for online, which is refused: wandb.init would
    stop the run after the model has loaded.  A Trackio Space (grpo.trackio_space_id or TRACKIO_SPACE_ID) needs a
    hub token (HF_TOKEN or `hf auth login`).  The installed library itself is checked before, with the recipe
    (output.report_to: NAME needs ...).  Secrets are read as set or unset only, never printed or stored.
    """
    recipe, tracking = inputs.recipe, inputs.trackers
    chosen = tracking.chosen if tracking is not None else ()
    if not chosen:
        return skip("no tensorboard, trackio, wandb or mlflow in output.report_to")
    problems, notes = [], []
    for variable, why in tracking.unwritable.items():
        problems.append((f"output.report_to: cannot write to {variable}={tracking.env.get(variable)} ({why})",
                         f"make it writable, or unset {variable} (the tracker then writes into the run folder)"))
    if "wandb" in chosen and not _wandb_key(tracking):
        mode = tracking.env.get("WANDB_MODE", "offline")
        if mode not in WANDB_OFFLINE:
            problems.append((f"output.report_to: wandb: WANDB_MODE={mode} but no W&B key here",
                             ("export WANDB_API_KEY (or `wandb login`), or unset WANDB_MODE: envkit then logs "
                              "offline (`wandb sync` uploads it later)")))
        elif "WANDB_MODE" not in tracking.env:
            notes.append("wandb logs offline (no WANDB_API_KEY or `wandb login` here): "
                         "`wandb sync RUN/wandb/offline-run-*` uploads it later")
    space = recipe.grpo.trl.get("trackio_space_id") or tracking.env.get("TRACKIO_SPACE_ID")
    if "trackio" in chosen and space and not tracking.hf_login:
        problems.append((f"output.report_to: trackio: the Space {space} needs a hub token, and none is set here",
                         ("export HF_TOKEN (or `hf auth login`), or drop grpo.trackio_space_id / "
                          "TRACKIO_SPACE_ID (Trackio then logs locally into the run folder)")))
    where = ", ".join(chosen)
    evidence = ", ".join(f"{k}={v}" for k, v in sorted(tracking.env.items())) or "no tracker variable set"
    if problems:
        return fail("; ".join(p for p, _ in problems), evidence, "; ".join(f for _, f in problems))
    if notes:
        return warn("; ".join(notes), evidence)
    return ok(f"{where} can write the run", evidence)
