"""Drive whichever image builder this machine has: docker (buildx or classic), podman or buildah.

The builders are data (``BUILDERS``, in order of preference): how to tell one works, and the argv
templates of a build and a push.  Docker counts only when ``docker info`` reaches an engine (a client
alone builds nothing); podman and buildah need no daemon.  Their output is streamed with a step
counter parsed from it.

Notes on podman and buildah (checked with Debian bookworm's buildah 1.28.2 / podman 4.3.1):
``--format docker``, because the OCI image format has no SHELL and they then ignore the Dockerfile's
``SHELL [... pipefail ...]`` without a word; ``--layers`` (buildah's default is off) so a rebuild
reuses the torch layer.  ``RUN --mount=type=cache|bind|secret|tmpfs`` work in both; COPY --link and
RUN heredocs do not (buildah < 1.33).  The environment chooses the isolation of RUN steps
(``BUILDAH_ISOLATION=chroot`` on CI's machine type, see .ci/setup-buildah); nothing here forces one.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from shutil import which

import click

from envkit.launch.procs import SAVE_GRACE_S

PROBE_TIMEOUT_S = 20


@dataclass(frozen=True)
class Builder:
    name: str
    probes: tuple[tuple[str, ...], ...]  # each must exit 0 for the builder to count as working
    build: tuple[str, ...]  # argv template: {context} {dockerfile} {platform}, and {tags}: --tag T for each tag
    push: tuple[str, ...]  # argv template: {tag}
    step: re.Pattern  # a step line of its output: groups (number, total, instruction)
    runner: str  # the engine that runs what it built: docker or podman
    env: dict[str, str] = field(default_factory=dict)  # added to the build's environment

    def argv(self, template: tuple[str, ...], tags: tuple[str, ...] = (), **values: str) -> list[str]:
        expanded = []
        for part in template:
            expanded += [arg for tag in tags for arg in ("--tag", tag)] if part == "{tags}" else [part.format(**values)]
        return expanded


DOCKER_STEP = re.compile(r"^#\d+ \[(?:[\w.-]+ )?(\d+)/(\d+)\] (.*)")  # BuildKit --progress=plain
BUILDAH_STEP = re.compile(r"^STEP (\d+)/(\d+): (.*)")
DOCKER_INFO = ("docker", "info", "--format", "{{.ServerVersion}}")
BUILDERS = (
    Builder("docker-buildx", (DOCKER_INFO, ("docker", "buildx", "version")),
            ("docker", "buildx", "build", "--progress=plain", "--load", "--platform", "{platform}",
             "--file", "{dockerfile}", "{tags}", "{context}"),
            ("docker", "push", "{tag}"), DOCKER_STEP, "docker"),
    Builder("docker", (DOCKER_INFO,),
            ("docker", "build", "--progress=plain", "--platform", "{platform}",
             "--file", "{dockerfile}", "{tags}", "{context}"),
            ("docker", "push", "{tag}"), DOCKER_STEP, "docker", {"DOCKER_BUILDKIT": "1"}),
    Builder("podman", (("podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"),),
            ("podman", "build", "--format", "docker", "--layers", "--platform", "{platform}",
             "--file", "{dockerfile}", "{tags}", "{context}"),
            ("podman", "push", "{tag}"), BUILDAH_STEP, "podman"),
    Builder("buildah", (("buildah", "info"),),
            ("buildah", "bud", "--format", "docker", "--layers", "--platform", "{platform}",
             "--file", "{dockerfile}", "{tags}", "{context}"),
            ("buildah", "push", "{tag}"), BUILDAH_STEP, "podman"),  # buildah builds into podman's image store
)

# How each engine hands the container every GPU.
GPU_ARGS = {"docker": ("--gpus", "all"), "podman": ("--device", "nvidia.com/gpu=all")}
# NVIDIA's limits for PyTorch in a container (pinned memory, NCCL; its container release notes): a CPU image needs
# neither, and memlock=-1 fails where the engine may not raise the host's hard limit (rootless, no CAP_SYS_RESOURCE).
GPU_LIMITS = ("--ulimit", "memlock=-1", "--ulimit", "stack=67108864")
RUN_NOTES = {"podman": "GPUs through CDI: once, nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml (NVIDIA Container Toolkit)"}


def works(builder: Builder) -> bool:
    """Every probe of the builder runs and exits 0 (a docker client without an engine fails `docker info`)."""
    for probe in builder.probes:
        if which(probe[0]) is None:
            return False
        try:
            result = subprocess.run(probe, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if result.returncode != 0:
            return False
    return True


def detect(name: str | None = None) -> Builder | None:
    """The first working builder, or the one named (None when it does not work here)."""
    candidates = [b for b in BUILDERS if name is None or b.name == name]
    return next((b for b in candidates if works(b)), None)


# How a builder says it could not fetch a FROM image (no registry access, a name the registry lacks): podman and
# buildah "Error: creating build container: initializing source docker://ubuntu:24.04: pinging container registry
# registry-1.docker.io: ..." (buildah 1.28 without network, tests/test_builder.py keeps the line), or "short-name
# ... did not resolve"; BuildKit "failed to resolve source metadata for IMAGE"; docker "pull access denied".
PULL_FAILED = re.compile(r"initializing source |short-name .* did not resolve|failed to resolve source metadata for "
                         r"|pull access denied")


class Progress:
    """Turns the builder's output lines into display lines: a bold ``[3/12]`` header when a step starts
    (with the time since the build began), every other line indented beneath it.  ``unpulled``: a line said
    the base image could not be fetched."""

    def __init__(self, step: re.Pattern, clock: Callable[[], float] = time.monotonic, width: int = 100):
        self.step, self.clock, self.width = step, clock, width
        self.start = clock()
        self.current: tuple[str, str] | None = None
        self.unpulled = False

    def feed(self, line: str) -> str:
        line = line.rstrip("\n")
        self.unpulled = self.unpulled or PULL_FAILED.search(line) is not None
        match = self.step.match(line)
        if match is None:
            return "    " + line
        number, total, instruction = match.groups()
        if (number, total) == self.current:  # BuildKit repeats a step's header
            return "    " + line
        self.current = (number, total)
        if len(instruction) > self.width:
            instruction = instruction[: self.width - 1] + "…"
        return click.style(f"[{number}/{total}]", bold=True) + f" {instruction}  ({self.clock() - self.start:.0f} s)"


def stream(argv: list[str], step: re.Pattern, env: dict[str, str]) -> tuple[int, bool]:
    """Run ``argv``, showing its output (stderr merged) through a Progress; its exit code, and whether it said
    it could not fetch an image (Progress.unpulled)."""
    click.echo(click.style("$ " + shlex.join(argv), dim=True))
    progress = Progress(step)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                          env={**os.environ, **env}) as process:
        try:
            for line in process.stdout:
                click.echo(progress.feed(line))
        except KeyboardInterrupt:
            process.terminate()
            raise
    click.echo(f"({progress.clock() - progress.start:.0f} s)")
    return process.returncode, progress.unpulled


def build(context: Path, tags: tuple[str, ...], platform: str, push: bool, builder: Builder) -> tuple[int, bool]:
    """Build ``context`` (its Dockerfile) under each of ``tags`` for ``platform``, then push them if asked; the exit
    code, and whether the build failed fetching its base image."""
    build_argv = builder.argv(builder.build, tags, context=str(context), dockerfile=str(context / "Dockerfile"),
                              platform=platform)
    code, unpulled = stream(build_argv, builder.step, builder.env)
    if code == 0 and push:
        for tag in tags:
            code, _ = stream(builder.argv(builder.push, tag=tag), builder.step, builder.env)
            if code != 0:
                break
    return code, code != 0 and unpulled


# Shell words of the run command that the user's shell must expand, so printed unquoted.
AS_CALLER = '"$(id -u):$(id -g)"'
HERE_AT_WORK = '"$PWD":/work'


def run_command(image: str, recipe: str, builder: Builder | None = None, cache: str = "envkit-cache",
                gpus: bool = True) -> str:
    """The command that trains ``recipe`` (a path inside the image, or one in the current folder) in ``image`` on
    every GPU of the host (``gpus``; a CPU image asks for none, nor for the GPU limits: the engine refuses GPU
    flags on a machine without NVIDIA's toolkit), from the current folder: mounted at the image's /work, where the
    run's output lands (runs/NAME), and written as the caller's uid (``--user``), whoever owns it.

    ``cache`` is best a named volume: the engine fills a new one from the image's /cache, writable by every uid;
    a host folder must be writable by the caller.  A note the user needs (podman's GPUs through CDI) follows as a
    shell comment, so the line stays copy-pasteable.
    """
    runner = builder.runner if builder else "docker"
    # `docker stop` sends SIGTERM, then SIGKILL after --stop-timeout (10 s by default): envkit train finishes
    # the step and saves a checkpoint on SIGTERM; give it the time its own launcher gives a trainer.
    argv = [runner, "run", *(GPU_ARGS[runner] if gpus else ()), "--user", AS_CALLER,
            "--stop-timeout", str(int(SAVE_GRACE_S)), "--ipc=host", *(GPU_LIMITS if gpus else ()),
            "-v", f"{cache}:/cache", "-v", HERE_AT_WORK, "-e", "HF_TOKEN", "-e", "WANDB_API_KEY",
            image, "train", recipe]
    note = RUN_NOTES.get(runner) if gpus else None
    line = " ".join(arg if arg in (AS_CALLER, HERE_AT_WORK) else shlex.quote(arg) for arg in argv)
    return line + (f"  # {note}" if note else "")
