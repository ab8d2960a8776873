"""Resolve a stack to a hash-locked requirements file for the image's platform, with uv.

uv resolves for another platform and Python than the host's
(``--python-platform``, ``--python-version``), which pip cannot do for a
whole environment.  A lock tries uv's cache offline first: an unchanged
request then takes well under a second; a miss goes to the index.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from envkit.build.stack import Stack
from envkit.errors import UsageError
from envkit.rules.known import lock_repairs
from envkit.rules.packages import xformers_lock_repair

UV_PLATFORMS = {"x86_64": "x86_64-manylinux_2_28", "aarch64": "aarch64-manylinux_2_28"}
# Packages of the first image layer: large, and they change only with torch.
HEAVY = ("torch", "triton", "nvidia-", "cuda-")
NOT_HEAVY = ("nvidia-ml-py",)  # envkit's own NVML binding, not a CUDA library
# Resolutions a lock tries before giving up on leaving the known incompatibilities (each repair can land in the
# next window down: transformers 5.25 -> <5.25 -> 5.24, still under peft's floor -> <5.24 -> 5.23).
REPAIR_ROUNDS = 4


class LockError(UsageError, RuntimeError):
    """The resolver is missing or found no solution; the message says what to do."""


@dataclass
class Lock:
    text: str
    seconds: float
    online: bool
    avoided: tuple[str, ...] = ()  # requirement lines added to leave a known incompatibility (envkit.rules.known)
    excluded: tuple[str, ...] = ()  # packages left out for the same reason (an xformers built for another torch)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def entries(self) -> dict[str, str]:
        """name -> the lock's whole entry (pin line, hashes, ``# via`` comments)."""
        found: dict[str, str] = {}
        name = None
        for line in self.text.splitlines(keepends=True):
            if line.strip() and not line.startswith((" ", "#")):
                name = line.split("==")[0].strip().lower()
                found[name] = ""
            if name is not None:
                found[name] += line
        return found

    def pins(self) -> dict[str, str]:
        """name -> version of every locked package."""
        return {name: entry.split("==", 1)[1].split()[0] for name, entry in self.entries().items()}

    def split(self) -> tuple[str, str]:
        """(heavy, rest): torch with its CUDA libraries and triton, then everything else."""
        heavy, rest = [], []
        for name, entry in sorted(self.entries().items()):
            (heavy if name.startswith(HEAVY) and name not in NOT_HEAVY else rest).append(entry)
        return "".join(heavy), "".join(rest)


def uv_command() -> list[str]:
    if shutil.which("uv"):
        return ["uv"]
    try:
        import uv  # noqa: F401  (the PyPI package ships the binary)
    except ImportError:
        raise LockError("uv is needed to lock for another platform: pip install uv  (or pip install 'envkit[build]')") from None
    return [sys.executable, "-m", "uv"]


def wheelhouse_torch(stack: Stack, wheelhouse: str) -> str | None:
    """The version of a torch wheel in ``wheelhouse`` that installs on the image (its Python and arch), if any."""
    python_tag = "cp" + stack.python.replace(".", "")
    found = []
    for path in Path(wheelhouse).glob("torch-*.whl"):
        try:
            _, version, _, tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        if any(t.interpreter == python_tag and t.platform.endswith(stack.arch) for t in tags):
            found.append(version)
    return str(max(found)) if found else None


def with_wheelhouse(stack: Stack, wheelhouse: str | None) -> Stack:
    """A wheelhouse torch that fits the stack's pin replaces the index's (and its backend choice)."""
    local = wheelhouse and wheelhouse_torch(stack, wheelhouse)
    if not local:
        return stack
    pins = []
    for line in stack.pins:
        requirement = Requirement(line)
        if requirement.name == "torch" and requirement.specifier.contains(local, prereleases=True):
            line = f"torch=={local}"
        pins.append(line)
    return replace(stack, pins=pins, torch_backend=None) if pins != stack.pins else stack


def compile_args(stack: Stack, index_url: str | None, wheelhouse: str | None) -> list[str]:
    args = ["pip", "compile", "-", "--generate-hashes", "--no-header", "--quiet",
            "--python-platform", UV_PLATFORMS[stack.arch], "--python-version", stack.python]
    if index_url:
        args += ["--index-url", index_url]
    if wheelhouse:
        args += ["--find-links", str(Path(wheelhouse).resolve())]
    if stack.torch_backend:
        args += ["--torch-backend", stack.torch_backend]
    return args


def lock(stack: Stack, index_url: str | None = None, wheelhouse: str | None = None, refresh: bool = False) -> Lock:
    """Lock ``stack`` (already passed through with_wheelhouse when a wheelhouse is used).

    The cache answers first (offline), so a lock may keep the transitive versions it saw last time;
    ``refresh`` asks the index for the newest.
    """
    start = time.perf_counter()
    avoided: list[str] = []
    excluded: list[str] = []
    online = False
    # A resolution inside a known-bad window (knowledge/incompatibilities.json, metadata cannot say it) or with an
    # xformers built for another torch (EK307): once more with the repairs, until none is left.
    for _ in range(REPAIR_ROUNDS):
        found = _resolve(stack, index_url, wheelhouse, refresh, [*stack.pins, *avoided], excluded)
        online = online or found.online
        pins = found.pins()
        requirements, exclusions = xformers_lock_repair(pins)
        wanted = lock_repairs(pins) + requirements
        if not wanted and not exclusions:
            return replace(found, seconds=time.perf_counter() - start, online=online, avoided=tuple(avoided),
                           excluded=tuple(excluded))
        new = [r for r in wanted if r not in stack.pins and r not in avoided]
        drop = [name for name in exclusions if name not in excluded]
        if not new and not drop:  # the repairs are in and the set is still inside
            break
        avoided += new
        excluded += drop
    raise LockError(f"cannot lock {' '.join(stack.pins)} outside the known incompatibilities: still inside with "
                    f"{' '.join(avoided + [f'without {name}' for name in excluded])} (envkit doctor --explain names "
                    "them)")


def _resolve(stack: Stack, index_url: str | None, wheelhouse: str | None, refresh: bool, pins: list[str],
             excluded: list[str] = ()) -> Lock:
    command = uv_command() + compile_args(stack, index_url, wheelhouse)
    requirements = "\n".join(pins) + "\n"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "requirements.lock"
        if excluded:  # uv leaves these out of the resolution, as a dependency of anything (uv >= 0.10)
            (Path(scratch) / "excludes.txt").write_text("\n".join(excluded) + "\n")
            command += ["--excludes", str(Path(scratch) / "excludes.txt")]
        for online in (True,) if refresh else (False, True):
            mode = [] if online else ["--offline"]
            result = subprocess.run([*command, *mode, "-o", str(output)], input=requirements, text=True,
                                    capture_output=True, check=False)
            if result.returncode == 0:
                return Lock(output.read_text(), time.perf_counter() - start, online)
    message = (result.stderr.strip().splitlines() or ["uv failed"])[-3:]
    raise LockError("cannot lock " + " ".join(pins) + ": " + " ".join(line.strip() for line in message)
                    + _torch_hint(stack, wheelhouse))


def _torch_hint(stack: Stack, wheelhouse: str | None) -> str:
    """Where the failed lock's torch was to come from, and the way out not yet taken."""
    if not stack.torch_backend:
        return ""
    where = f" (the {stack.torch_backend} torch comes from PyTorch's index"
    if wheelhouse is None:
        return where + "; --wheelhouse DIR offers local wheels)"
    return where + (f": {wheelhouse} holds no torch wheel for the image's Python {stack.python} on {stack.arch}; "
                    "add one there)")
