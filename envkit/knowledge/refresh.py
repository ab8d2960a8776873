"""Regenerate matrix.json from the package index's metadata (PEP 691 JSON listing + each wheel's METADATA).

No wheel is downloaded: one HTTP range request fetches the tail of a wheel,
where its dist-info lives.  (PEP 658 ``.metadata`` files would do too, but
proxies and mirrors often lack them; a tail works against any index that
serves files.)  Requirements are kept only
where they point at another package of the stack: that is what compatibility
questions need, and it keeps the file reviewable as a diff.
"""

from __future__ import annotations

import io
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from email.parser import HeaderParser
from functools import cache
from typing import Callable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from envkit.errors import Failure
from envkit.knowledge.matrix import manylinux_glibc
from envkit.knowledge.sources import DEFAULT_INDEX, FLOORS
from envkit.masking import mask_text

# The packages whose requirements on one another a release's record keeps (its Requires-Dist, less the rest).
RECORDED_DEPENDENCIES = {canonicalize_name(name) for name in set(FLOORS) | {
    "triton", "torchvision", "torchaudio", "flashinfer-python", "xformers", "deepspeed"}}
# Wheel tags preferred when a release has several files: the metadata of a
# Linux x86_64 wheel is what an image installs.
PREFERRED = ("manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux_2_17_x86_64", "none-any", "linux_x86_64")


TIMEOUT_S = 30  # one request, all told
MAX_RESPONSE = 64 * 2**20  # a package's PEP 691 listing (torch's: a few MB) or a wheel's tail


class RefreshError(Failure, RuntimeError):
    """The index could not be reached or answered something unusable; the message ends with what to try."""

    def __init__(self, message: str):
        super().__init__(f"{message}. Check the network, or pass --index-url for a reachable mirror.")


@cache
def _context() -> ssl.SSLContext:
    # Honour pip's CA bundle so corporate proxies work the same for both.
    cafile = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE")
    return ssl.create_default_context(cafile=cafile)


def _get(url: str, tries: int = 5, **headers: str) -> bytes:
    """GET with a few retries on network faults (a registry answer such as 404 is final, and so is silence: an
    index that accepts and never answers would not answer a retry either).  At most MAX_RESPONSE bytes, read
    within TIMEOUT_S seconds all told: a server trickling bytes or sending without end is cut off."""
    request = urllib.request.Request(url, headers=headers)
    for attempt in range(tries):
        try:
            with urllib.request.urlopen(request, context=_context(), timeout=TIMEOUT_S) as response:
                return _read_bounded(response, url)
        except urllib.error.HTTPError as exc:
            raise RefreshError(f"{url}: HTTP {exc.code}") from None
        except TimeoutError:
            raise RefreshError(f"no answer from {url} within {TIMEOUT_S} s") from None
        except (urllib.error.URLError, OSError) as exc:
            if isinstance(getattr(exc, "reason", None), TimeoutError):
                raise RefreshError(f"no answer from {url} within {TIMEOUT_S} s") from None
            if attempt == tries - 1:
                reason = getattr(exc, "reason", exc)
                raise RefreshError(f"cannot reach {url}: {reason}") from None
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


TAIL_BYTES = 512 * 1024


def _read_bounded(response, url: str) -> bytes:
    deadline, chunks, size = time.monotonic() + TIMEOUT_S, [], 0
    while chunk := response.read(2**16):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE:
            raise RefreshError(f"{url}: an answer larger than {MAX_RESPONSE // 2**20} MiB")
        if time.monotonic() > deadline:
            raise RefreshError(f"no whole answer from {url} within {TIMEOUT_S} s")
    return b"".join(chunks)


class _RemoteFile(io.RawIOBase):
    """A seekable view of a remote wheel through HTTP range requests.

    A wheel's dist-info and central directory are written last, so one request
    for its tail usually holds everything zipfile reads to get METADATA; the
    rare read before the tail costs one more request.
    """

    def __init__(self, url: str, size: int):
        self.url, self.size, self.position = url, size, 0
        self.tail_start = max(0, size - TAIL_BYTES)
        self.tail = _get(url, Range=f"bytes={self.tail_start}-{size - 1}")

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = base + offset
        return self.position

    def readinto(self, buffer) -> int:
        end = min(self.position + len(buffer), self.size)
        if end <= self.position:
            return 0
        if self.position >= self.tail_start:
            data = self.tail[self.position - self.tail_start : end - self.tail_start]
        else:
            data = _get(self.url, Range=f"bytes={self.position}-{end - 1}")
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def _core_metadata(file: dict) -> str:
    """METADATA of a wheel: from the wheel's tail (one request), or PEP 658 when its size is unknown."""
    if not file.get("size"):
        return _get(file["url"] + ".metadata").decode("utf-8", "replace")
    with zipfile.ZipFile(_RemoteFile(file["url"], file["size"])) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        return wheel.read(name).decode("utf-8", "replace")


def release_files(index: str, package: str) -> dict[str, list[dict]]:
    """Files per final release of a package, newest last."""
    raw = _get(f"{index.rstrip('/')}/{canonicalize_name(package)}/", Accept="application/vnd.pypi.simple.v1+json")
    try:
        files = json.loads(raw)["files"]
    except (ValueError, KeyError, TypeError, RecursionError):
        files = None
    if not isinstance(files, list):
        raise RefreshError(f"{index}: no PEP 691 JSON for {package}")
    floor = Version(FLOORS.get(package, "0"))
    releases: dict[str, list[dict]] = {}
    for file in filter(_usable, files):
        if file.get("yanked"):
            continue
        version = parse_wheel_filename(file["filename"])[1]
        if version.is_prerelease or version.is_devrelease or version.local or version < floor:
            continue
        releases.setdefault(str(version), []).append(file)
    return dict(sorted(releases.items(), key=lambda item: Version(item[0])))


def _usable(file) -> bool:
    """A listing entry of a wheel this refresh can read: a mapping with a valid wheel name, a URL, and a size
    and upload time of the right types when given; a hostile or broken index's other entries are passed over."""
    if not isinstance(file, dict) or not isinstance(file.get("url"), str) or not isinstance(file.get("filename"), str):
        return False
    if not isinstance(file.get("size", 0), (int, type(None))):
        return False
    if not isinstance(file.get("upload-time", ""), (str, type(None))):
        return False
    try:
        parse_wheel_filename(file["filename"])
    except (InvalidWheelFilename, InvalidVersion):
        return False
    return True


def _pick(files: list[dict]) -> dict:
    for tag in PREFERRED:
        for file in files:
            if tag in file["filename"]:
                return file
    return files[0]


def release_record(file: dict) -> dict:
    """The matrix entry of one release from its wheel's core metadata."""
    try:
        headers = HeaderParser().parsestr(_core_metadata(file))
    except (zipfile.BadZipFile, StopIteration, KeyError, ValueError, EOFError, zlib.error, NotImplementedError):
        raise RefreshError(f"{file['filename']}: not a wheel with a METADATA file") from None
    requires: dict[str, set[str]] = {}
    vllm_extra: set[str] = set()
    for line in headers.get_all("Requires-Dist") or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        name = canonicalize_name(req.name)
        if name not in RECORDED_DEPENDENCIES:
            continue
        marker = str(req.marker) if req.marker else ""
        spec = str(req.specifier) or "*"
        if 'extra == "vllm"' in marker and name == "vllm":
            vllm_extra.add(spec)  # TRL's supported vLLM window
        elif "extra ==" not in marker:
            requires.setdefault(name, set()).add(spec)
    record = {
        "requires_python": headers.get("Requires-Python") or "",
        "requires": {k: ",".join(sorted(v)) for k, v in sorted(requires.items())},
        "uploaded": (file.get("upload-time") or "")[:10],
    }
    if vllm_extra:
        record["vllm_extra"] = ",".join(sorted(vllm_extra))
    cuda = _cuda_of_torch_requirements(headers.get_all("Requires-Dist") or [])
    if cuda:
        record["cuda"] = cuda
    return record


def glibc_by_arch(files: list[dict]) -> dict[str, str]:
    """Per machine, the oldest glibc one of a release's Linux wheels installs on, from the manylinux tags of
    the file names (vllm 0.20.0: manylinux_2_35 for x86_64 and aarch64; 0.22.0: manylinux_2_28)."""
    found: dict[str, Version] = {}
    for file in files:
        for tag in parse_wheel_filename(file["filename"])[3]:
            platform = manylinux_glibc(tag.platform)
            if platform:
                glibc, arch = platform
                found[arch] = min(found.get(arch, glibc), glibc)
    return {arch: str(version) for arch, version in sorted(found.items())}


def _cuda_of_torch_requirements(lines: list[str]) -> str | None:
    """torch's default Linux wheel pins its CUDA runtime: cuda-toolkit==13.0.2 or nvidia-cuda-runtime-cu12==12.8.90."""
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        name = canonicalize_name(req.name)
        if name in ("cuda-toolkit", "nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime", "nvidia-cuda-runtime-cu13"):
            for spec in req.specifier:
                if spec.operator == "==":
                    major, minor = spec.version.split(".")[:2]
                    return f"{major}.{minor}"
    return None


def refresh(
    packages: list[str],
    index: str = DEFAULT_INDEX,
    progress: Callable[[int, int, str], None] | None = None,
    workers: int = 32,
) -> dict:
    """Build the matrix document for ``packages`` from ``index``."""
    with ThreadPoolExecutor(workers) as pool:
        listings = dict(zip(packages, pool.map(lambda p: release_files(index, p), packages)))
        jobs = [(p, v, files) for p, releases in listings.items() for v, files in releases.items()]
        done = 0
        matrix: dict[str, dict[str, dict]] = {p: {} for p in packages}

        def fetch(job):
            return job, release_record(_pick(job[2]))

        for (package, version, files), record in pool.map(fetch, jobs):
            glibc = glibc_by_arch(files)
            matrix[package][version] = record | ({"glibc": glibc} if glibc else {})
            done += 1
            if progress:
                progress(done, len(jobs), f"{package} {version}")
    return {
        "about": "Generated by `envkit matrix refresh` from the index's core metadata; do not edit by hand.",
        "source": mask_text(index),  # a mirror's URL may carry its credentials: never into the file
        "generated": date.today().isoformat(),
        "refreshed": {package: date.today().isoformat() for package in packages},
        "packages": matrix,
    }


def diff(old: dict, new: dict) -> list[str]:
    """Human-readable lines of what a refresh changed."""
    lines = []
    old_packages, new_packages = old.get("packages", {}), new.get("packages", {})
    for package in sorted(set(old_packages) | set(new_packages)):
        before, after = old_packages.get(package, {}), new_packages.get(package, {})
        for version in sorted(set(after) - set(before), key=Version):
            lines.append(f"+ {package} {version}")
        for version in sorted(set(before) - set(after), key=Version):
            lines.append(f"- {package} {version}")
        for version in sorted(set(before) & set(after), key=Version):
            if before[version] != after[version]:
                lines.append(f"~ {package} {version}")
    return lines


def main() -> None:  # pragma: no cover - convenience for `python -m envkit.knowledge.refresh`
    doc = refresh(sorted(FLOORS), progress=lambda i, n, what: print(f"[{i}/{n}] {what}", file=sys.stderr))
    print(json.dumps(doc, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
