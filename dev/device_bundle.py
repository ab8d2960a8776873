"""A device bundle from envkit's own lock: the wheels an offline GPU machine lacks for a recipe's stack.

The lock is `envkit lock` for the recipe and target, keeping the machine's torch; every locked package the
machine does not already have at that version (``--present``: its `pip list --format=freeze`) is downloaded
for its platform with pip's hash check against the lock, packed and cut into chunks of at most 57 MiB that
travel with `run`'s carry, one a call, and install into /tmp/site/site-packages there (dev/bundle_stage.sh):

    python dev/device_bundle.py --recipe R.yaml --target h200 --torch 2.11.0 \\
        --present dev/devices/nvidia-h200-2026-11-30.txt --out .devbundle
    # then on the machine, chunk N at a time:  bash .devbundle/cN/stage   (the last says "stage: ready")

Issue #18: the Unsloth set (unsloth + unsloth_zoo + trl 1.15.0 + vLLM 0.26.0 on the machine's torch 2.11.0).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from packaging.utils import canonicalize_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envkit.build.lock import lock  # noqa: E402
from envkit.build.stack import choose  # noqa: E402
from envkit.recipe.library import find_recipe  # noqa: E402
from envkit.recipe.load import load_recipe  # noqa: E402

CHUNK = 57 * 2**20
STAGE = Path(__file__).with_name("bundle_stage.sh")
# Every manylinux tag an x86_64 glibc-2.35 machine accepts that the stack's wheels use.
PLATFORMS = ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_24_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_28_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64", "manylinux_2_35_x86_64",
             "manylinux1_x86_64", "linux_x86_64", "any"]


# Left out unless asked for (--keep): optional kernels and compilers vLLM 0.26 + TRL ran without in the known-good
# vLLM + TRL bundle (dev/bundles/vllm0.26-trl1.16.txt, see dev/README.md; ~800 MiB), and numba/llvmlite,
# which the machine has at other versions.
OPTIONAL_HEAVY = {"nvidia-cutlass-dsl", "nvidia-cutlass-dsl-libs-base", "nvidia-cutlass-dsl-libs-core",
                  "nvidia-cutlass-dsl-libs-cu12", "nvidia-cutlass-dsl-libs-cu13", "tilelang", "tokenspeed-triton",
                  "nvidia-cuda-nvcc", "nvidia-cuda-crt", "nvidia-nvvm", "nvidia-cuda-nvdisasm", "z3-solver",
                  "pynvvideocodec", "torchcodec", "numba", "llvmlite"}


def present(freeze: Path) -> dict[str, str]:
    """name -> version from a `pip list --format=freeze` (lines that are not name==version are skipped)."""
    found = {}
    for line in freeze.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep:
            found[canonicalize_name(name)] = version.strip()
    return found


def missing_entries(entries: dict[str, str], pins: dict[str, str], have: dict[str, str], skip: set[str]) -> dict[str, str]:
    """The lock's entries (pin line with hashes) the machine lacks at the locked version, less ``skip``."""
    return {name: entry for name, entry in entries.items()
            if have.get(canonicalize_name(name)) != pins[name] and canonicalize_name(name) not in skip}


def download(entries: dict[str, str], python: str, target: Path) -> None:
    requirements = target / "requirements.txt"
    requirements.write_text("".join(entry if entry.endswith("\n") else entry + "\n" for entry in entries.values()))
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--require-hashes",
                    "--python-version", python, "--implementation", "cp", *platforms, "-d", str(target / "whl"),
                    "-r", str(requirements)], check=True)


def cut(wheels: Path, out: Path) -> int:
    """Tar the wheels, split into chunks out/cN/partN (each with the stage script), SHA-256 in c0; the count."""
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "bundle.tar"
        with tarfile.open(archive, "w") as tar:
            for wheel in sorted(wheels.glob("*.whl")):
                tar.add(wheel, arcname=wheel.name)
        shutil.rmtree(out, ignore_errors=True)
        digest, count = hashlib.sha256(), 0
        with archive.open("rb") as source:
            while block := source.read(CHUNK):
                digest.update(block)
                folder = out / f"c{count}"
                folder.mkdir(parents=True)
                (folder / f"part{count:02d}").write_bytes(block)
                shutil.copy(STAGE, folder / "stage")
                count += 1
        (out / "c0" / "SHA256").write_text(digest.hexdigest() + "\n")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--torch", required=True, help="the machine's torch: the lock keeps it")
    parser.add_argument("--present", type=Path, required=True, help="the machine's pip list --format=freeze")
    parser.add_argument("--out", type=Path, default=Path(".devbundle"))
    parser.add_argument("--keep", action="append", default=[], help="bundle this one of OPTIONAL_HEAVY too (repeatable)")
    args = parser.parse_args()
    stack = choose(load_recipe(find_recipe(args.recipe)), args.target, torch=args.torch)
    locked = lock(stack)
    pins = locked.pins()
    needed = missing_entries(locked.entries(), pins, present(args.present), OPTIONAL_HEAVY - {canonicalize_name(k) for k in args.keep})
    with tempfile.TemporaryDirectory() as scratch:
        download(needed, stack.python, Path(scratch))
        count = cut(Path(scratch) / "whl", args.out)
        size = sum(p.stat().st_size for p in args.out.glob("c*/part*"))
    print(f"device_bundle: {len(needed)} of {len(pins)} locked packages, {size / 2**20:.0f} MiB, {count} chunks in "
          f"{args.out}/c0 .. c{count - 1}; there: bash {args.out}/cN/stage, then export PYTHONPATH=/tmp/site/site-packages")
    print("bundled:", " ".join(f"{n}=={pins[n]}" for n in sorted(needed)))


if __name__ == "__main__":
    main()
