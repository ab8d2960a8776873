"""The image really builds and runs, without a Docker daemon (issue 4's acceptance, on CPU).

`envkit build` drives podman/buildah to build the `tiny` recipe's `cpu` image on a local Debian base
(tests/integration/make-base; no registry is reachable), then the image's entrypoint runs:
`envkit doctor` and two steps of `envkit train`, also as the user runs it: `train recipe.yaml` in a host folder
of their own mounted at /work, which the image's uid 1000 cannot write.  The full GPU image is a maintainer's
slow build, not run here: benchmarks/build_full_image.sh.  Needs root and the host set up by .ci/setup-buildah;
skips otherwise.  Run with `python -m pytest -m image -s` to see the build and the timings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
RECIPES = HERE.parents[1] / "recipes"
BASE = "localhost/envkit-testbase:bookworm"
TAG = "envkit/grpo:tiny-cpu"  # envkit build's default tag for the recipe and target, with envkit/grpo:latest
USER_UID = 2000  # a host user other than the image's 1000
WHEELHOUSE = "/opt/wheels"  # this machine's local CPU torch for Python 3.11 (PyPI's linux torch is the CUDA one)
CONTAINERS_CONF = Path("/etc/containers/containers.conf")
# chroot isolation: RUN steps without an OCI runtime, cgroups or network namespace (.ci/setup-buildah says why)
ENV = {**os.environ, "BUILDAH_ISOLATION": os.environ.get("BUILDAH_ISOLATION", "chroot")}


def why_not_here() -> str | None:
    missing = [tool for tool in ("buildah", "podman", "debootstrap") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed: run .ci/setup-buildah as root"
    if os.geteuid() != 0:
        return "daemonless builds here need root (debootstrap, rootful podman)"
    if "default_ulimits" not in (CONTAINERS_CONF.read_text() if CONTAINERS_CONF.exists() else ""):
        return f"{CONTAINERS_CONF} not set up for this machine: run .ci/setup-buildah"
    if not Path(WHEELHOUSE).is_dir():
        return f"no wheelhouse {WHEELHOUSE} with a CPU torch for the image's Python 3.11"
    return None


pytestmark = [pytest.mark.image, pytest.mark.skipif(why_not_here() is not None, reason=str(why_not_here()))]
TIMES: dict[str, float] = {}
PRINTED: list[str] = []  # the run command `envkit build` printed


def timed(name: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run argv (output captured), record its wall time under ``name``, print it."""
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=ENV, check=False, **kwargs)
    TIMES[name] = time.perf_counter() - start
    print(f"\n{name}: {TIMES[name]:.1f} s (exit {result.returncode})")
    return result


def tail(result: subprocess.CompletedProcess, lines: int = 30) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-lines:])


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    base = timed("make-base", [str(HERE / "make-base")])
    assert base.returncode == 0, tail(base)
    built = timed("envkit build", [sys.executable, "-m", "envkit", "build", "--recipe", "tiny", "--target", "cpu",
                                   "--python", "3.11", "--base", BASE, "--wheelhouse", WHEELHOUSE],
                  cwd=tmp_path_factory.mktemp("build"))
    assert built.returncode == 0, tail(built, 60)
    # the run command for what built it: as the caller, in the current folder, no GPU flags for a CPU image
    assert 'podman run --user "$(id -u):$(id -g)"' in built.stdout
    assert '-v "$PWD":/work' in built.stdout
    PRINTED.append(built.stdout.split("Run it with:\n", 1)[1].strip())
    # `docker run envkit/grpo ...` runs the image just built (the runs below name TAG: another build moves latest)
    ids = {subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", name], capture_output=True, text=True,
                          check=True).stdout for name in (TAG, "envkit/grpo:latest", "envkit/grpo")}
    assert len(ids) == 1, ids
    yield TAG
    print("\ntimes: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in TIMES.items()))


def test_doctor_runs_in_the_image(image):
    result = timed("podman run doctor", ["podman", "run", "--rm", image, "doctor", "--no-gpu"])
    assert result.returncode in (0, 1), tail(result)  # 1: no GPU here, reported as a failed check
    assert "Traceback" not in result.stderr, tail(result)
    assert "envkit doctor" in result.stdout and "EK300" in result.stdout  # the report, with the stack check


def test_train_runs_in_the_image(image, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o777)  # the image trains as uid 1000
    result = timed("podman run train", ["podman", "run", "--rm", "-v", f"{run}:/work/run", image,
                                        "train", "/recipes/tiny.yaml", "--max-steps", "2", "--output", "/work/run"])
    assert result.returncode == 0, tail(result)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert steps[-1] == 2


@pytest.fixture
def users_folder(tmp_path) -> Path:
    """A user's own folder, as on their host: their recipe and its data, owned by uid 2000, not world-writable."""
    folder = tmp_path / "mine"
    shutil.copytree(RECIPES / "data", folder / "data")
    shutil.copyfile(RECIPES / "tiny.yaml", folder / "recipe.yaml")
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, USER_UID, USER_UID)
    folder.chmod(0o755)
    return folder


def test_a_users_folder_of_another_uid_is_one_line_with_the_fix(image, users_folder):
    result = timed("podman run train (uid 1000 in a uid 2000 folder)",
                   ["podman", "run", "--rm", "-v", f"{users_folder}:/work", image,
                    "train", "recipe.yaml", "--max-steps", "1"])
    assert result.returncode == 2, tail(result)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, tail(result)
    assert f"/work belongs to uid {USER_UID}, envkit runs as uid 1000" in result.stderr
    assert '--user "$(id -u):$(id -g)"' in result.stderr
    assert sorted(p.name for p in users_folder.iterdir()) == ["data", "recipe.yaml"]  # nothing left behind


def test_the_image_trains_in_a_users_folder_as_the_users_uid(image, users_folder):
    """The printed run command's way: --user the caller; HOME, caches and the venv work for any uid."""
    result = timed("podman run --user 2000 train recipe.yaml",
                   ["podman", "run", "--rm", "--user", f"{USER_UID}:{USER_UID}", "-v", f"{users_folder}:/work",
                    image, "train", "recipe.yaml", "--max-steps", "2"])
    assert result.returncode == 0, tail(result)
    run = users_folder / "runs" / "recipe"
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert steps[-1] == 2
    assert {p.stat().st_uid for p in [run, *run.rglob("*")]} == {USER_UID}  # the user's files, not uid 1000's or root's


def test_the_printed_run_command_trains_as_printed(image, users_folder):
    """The line `envkit build` printed, through a shell in the user's folder as their uid (here the shell's
    `$(id -u)` is root's, so uid 2000 stands in for it), two steps of the baked recipe."""
    line = PRINTED[0].replace('"$(id -u):$(id -g)"', f"{USER_UID}:{USER_UID}") + " --max-steps 2 --output runs/printed"
    result = timed("the printed podman run", ["sh", "-c", line], cwd=users_folder)
    assert result.returncode == 0, tail(result)
    rows = (users_folder / "runs" / "printed" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["step"] == 2
