"""envkit.build.builder: which image builder is used, the commands it gets, the progress display.

Fake executables on PATH stand in for docker/podman/buildah; no image is built here
(tests/integration/test_image.py builds one for real)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import click
import pytest

from envkit.build import builder as builders
from envkit.build.builder import BUILDERS, Progress, build, detect, run_command


def fake(bin_dir: Path, name: str, fails: tuple[str, ...] = (), log: Path | None = None, output: str = "") -> None:
    """An executable ``name`` that exits 1 when its first argument is in ``fails`` and 0 otherwise,
    appending its argv to ``log`` and printing ``output``."""
    script = ["#!/bin/sh"]
    if log:
        script.append(f'echo "{name} $*" >> {shlex.quote(str(log))}')
    script.append(f"printf '%s' {shlex.quote(output)}")
    for word in fails:
        script.append(f'[ "$1" = {word} ] && exit 1')
    script.append("exit 0")
    path = bin_dir / name
    path.write_text("\n".join(script) + "\n")
    path.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


def test_docker_client_without_engine_is_skipped_for_podman(bin_dir):
    fake(bin_dir, "docker", fails=("info",))
    fake(bin_dir, "podman")
    fake(bin_dir, "buildah")
    assert detect().name == "podman"


def test_docker_with_engine_prefers_buildx(bin_dir):
    fake(bin_dir, "docker")
    fake(bin_dir, "podman")
    assert detect().name == "docker-buildx"


def test_docker_without_buildx_uses_classic_build(bin_dir):
    fake(bin_dir, "docker", fails=("buildx",))
    assert detect().name == "docker"


def test_broken_podman_falls_back_to_buildah(bin_dir):
    fake(bin_dir, "podman", fails=("info",))
    fake(bin_dir, "buildah")
    assert detect().name == "buildah"


def test_no_builder(bin_dir):
    fake(bin_dir, "docker", fails=("info",))
    assert detect() is None


def test_named_builder_only_when_it_works(bin_dir):
    fake(bin_dir, "podman")
    assert detect("podman").name == "podman"
    assert detect("buildah") is None


def test_builder_names_are_unique():
    assert len({b.name for b in BUILDERS}) == len(BUILDERS)


def argv_of(name: str) -> list[str]:
    chosen = next(b for b in BUILDERS if b.name == name)
    return chosen.argv(chosen.build, ("envkit/grpo:t", "envkit/grpo:latest"), context="/ctx",
                       dockerfile="/ctx/Dockerfile", platform="linux/arm64")


@pytest.mark.parametrize("name, head", [
    ("docker-buildx", ["docker", "buildx", "build", "--progress=plain", "--load"]),
    ("docker", ["docker", "build", "--progress=plain"]),
    # docker image format: the OCI format has no SHELL, buildah would drop the Dockerfile's pipefail
    ("podman", ["podman", "build", "--format", "docker", "--layers"]),
    ("buildah", ["buildah", "bud", "--format", "docker", "--layers"]),
])
def test_build_argv(name, head):
    argv = argv_of(name)
    assert argv[: len(head)] == head
    assert argv[len(head):] == ["--platform", "linux/arm64", "--file", "/ctx/Dockerfile", "--tag", "envkit/grpo:t",
                                "--tag", "envkit/grpo:latest", "/ctx"]


def test_classic_docker_asks_for_buildkit():
    """The Dockerfile's RUN --mount needs BuildKit; docker build without buildx uses it only when asked."""
    assert next(b for b in BUILDERS if b.name == "docker").env == {"DOCKER_BUILDKIT": "1"}


def test_build_streams_output_with_step_counter(bin_dir, tmp_path, capsys):
    log = tmp_path / "calls"
    fake(bin_dir, "podman", log=log, output="STEP 1/2: FROM base\nhello\nSTEP 2/2: RUN true\n")
    code = build(tmp_path / "ctx", ("envkit/grpo:t",), "linux/amd64", False, detect("podman"))
    out = click.unstyle(capsys.readouterr().out)
    assert code == (0, False)
    assert "[1/2] FROM base" in out and "    hello" in out and "[2/2] RUN true" in out
    assert log.read_text().splitlines()[-1].startswith("podman build ")


def test_push_follows_a_successful_build(bin_dir, tmp_path):
    log = tmp_path / "calls"
    fake(bin_dir, "buildah", log=log)
    tags = ("registry.example/envkit/grpo:t", "registry.example/envkit/grpo:latest")
    assert build(tmp_path, tags, "linux/amd64", True, detect("buildah")) == (0, False)
    built = f"buildah bud --format docker --layers --platform linux/amd64 --file {tmp_path}/Dockerfile " \
            f"--tag {tags[0]} --tag {tags[1]} {tmp_path}"
    assert log.read_text().splitlines()[-3:] == [built, f"buildah push {tags[0]}", f"buildah push {tags[1]}"]


def test_failed_build_returns_its_code_and_does_not_push(bin_dir, tmp_path):
    log = tmp_path / "calls"
    fake(bin_dir, "buildah", fails=("bud",), log=log)
    chosen = detect("buildah")
    assert build(tmp_path, ("envkit/grpo:t",), "linux/amd64", True, chosen) == (1, False)
    assert not any(line.startswith("buildah push") for line in log.read_text().splitlines())


# buildah 1.28's words on this machine (no registry reachable) for FROM ubuntu:24.04, and BuildKit's
UNPULLED = ['Error: creating build container: initializing source docker://ubuntu:24.04: pinging container registry '
            'registry-1.docker.io: Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: '
            "no such host",
            "ERROR: failed to solve: ubuntu:24.04: failed to resolve source metadata for "
            "docker.io/library/ubuntu:24.04"]


@pytest.mark.parametrize("said", UNPULLED)
def test_a_build_that_cannot_pull_its_base_says_so(bin_dir, tmp_path, said):
    fake(bin_dir, "buildah", fails=("bud",), output=f"STEP 1/9: FROM ubuntu:24.04\n{said}\n")
    assert build(tmp_path, ("envkit/grpo:t",), "linux/amd64", False, detect("buildah")) == (1, True)


def test_a_failing_step_after_the_base_is_no_pull_failure(bin_dir, tmp_path):
    fake(bin_dir, "buildah", fails=("bud",), output="STEP 1/9: FROM ubuntu:24.04\nSTEP 2/9: RUN false\nError: exit 1\n")
    assert build(tmp_path, ("envkit/grpo:t",), "linux/amd64", False, detect("buildah")) == (1, False)


@pytest.mark.parametrize("wheelhouse", [False, True])
def test_envkit_build_says_in_one_line_what_to_do_without_the_base(bin_dir, tmp_path, monkeypatch, wheelhouse):
    from click.testing import CliRunner

    from envkit.build.lock import Lock
    from envkit.cli import main

    fake(bin_dir, "podman", fails=("build",), output=f"STEP 1/9: FROM ubuntu:24.04\n{UNPULLED[0]}\n")
    monkeypatch.setattr("envkit.build.lock.lock", lambda *args, **kwargs: Lock("click==8.1.8 \\\n    --hash=sha256:"
                                                                                + "1" * 64 + "\n", 0.1, False))
    monkeypatch.setattr("envkit.build.context.fetch_wheels", lambda inputs, folder: folder.mkdir())
    given = ["--wheelhouse", str(bin_dir)] if wheelhouse else []  # given: not suggested again
    result = CliRunner().invoke(main, ["build", "--recipe", "tiny", "--target", "cpu", "--builder", "podman",
                                       "--output", str(tmp_path / "ctx"), *given])
    assert result.exit_code == 1, result.output
    said = [line for line in result.output.splitlines() if line.startswith("envkit build: ")]
    offline = "" if wheelhouse else ", and --wheelhouse DIR if PyPI is out of reach too"
    assert said == [f"envkit build: podman could not pull the base image python:3.12-slim-bookworm: give it registry "
                    f"access, or --base IMAGE naming a base already in podman's local store (podman images){offline}; "
                    f"the context is in {tmp_path / 'ctx'}"]


def test_progress_buildkit_headers_once_with_elapsed_time():
    ticks = iter([100.0, 112.4, 130.0])
    progress = Progress(builders.DOCKER_STEP, clock=lambda: next(ticks))
    first = click.unstyle(progress.feed("#5 [stage-1 2/7] RUN pip install -r x\n"))
    assert first == "[2/7] RUN pip install -r x  (12 s)"
    assert progress.feed("#5 [stage-1 2/7] RUN pip install -r x") == "    #5 [stage-1 2/7] RUN pip install -r x"
    assert progress.feed("#5 0.31 Collecting six") == "    #5 0.31 Collecting six"
    assert click.unstyle(progress.feed("#6 [3/7] COPY a b")).startswith("[3/7] COPY a b")


def test_progress_shortens_long_instructions():
    progress = Progress(builders.BUILDAH_STEP, clock=lambda: 0.0, width=10)
    assert click.unstyle(progress.feed("STEP 1/1: RUN " + "x" * 50)) == "[1/1] RUN xxxxx…  (0 s)"


def test_run_command_docker():
    """The current folder at /work (the run lands in it), written as the caller: the shell expands $PWD and id."""
    assert run_command("envkit/grpo:a-h100", "/recipes/a.yaml", cache="/data/hf cache") == (
        'docker run --gpus all --user "$(id -u):$(id -g)" --stop-timeout 120 --ipc=host --ulimit memlock=-1 '
        "--ulimit stack=67108864 -v '/data/hf cache:/cache' -v \"$PWD\":/work -e HF_TOKEN -e WANDB_API_KEY "
        "envkit/grpo:a-h100 train /recipes/a.yaml")


def test_run_command_expands_in_a_shell(tmp_path):
    """What the shell makes of the printed line: the caller's uid:gid and the current folder."""
    line = run_command("envkit/grpo:a", "/recipes/a.yaml").replace("docker run", "printf '%s\\n'", 1)
    words = subprocess.run(["sh", "-c", line], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert words[words.index("--user") + 1] == f"{os.getuid()}:{os.getgid()}"
    assert f"{tmp_path}:/work" in words


@pytest.mark.parametrize("name", ["docker", "podman"])
def test_run_command_of_a_cpu_image_asks_for_no_gpu(name):
    """A CPU image's command runs on a machine without NVIDIA's toolkit: podman refuses an unresolvable CDI device
    (exit 126), docker an unknown --gpus runtime, before the image starts."""
    chosen = next(b for b in BUILDERS if b.name == name)
    command = run_command("envkit/grpo:tiny-cpu", "/recipes/tiny.yaml", chosen, gpus=False)
    assert shlex.split(command)[:4] == [name, "run", "--user", "$(id -u):$(id -g)"]
    assert "#" not in command and "gpu" not in command.replace("grpo", "") and "--ulimit" not in command


@pytest.mark.parametrize("name", ["podman", "buildah"])
def test_run_command_podman_uses_cdi(name):
    chosen = next(b for b in BUILDERS if b.name == name)
    command, _, note = run_command("envkit/grpo:a", "/recipes/a.yaml", chosen).partition("  # ")
    assert shlex.split(command)[:4] == ["podman", "run", "--device", "nvidia.com/gpu=all"]
    assert shlex.split(command)[-10:] == ["envkit-cache:/cache", "-v", "$PWD:/work", "-e", "HF_TOKEN",
                                          "-e", "WANDB_API_KEY", "envkit/grpo:a", "train", "/recipes/a.yaml"]
    assert "nvidia-ctk cdi generate" in note
