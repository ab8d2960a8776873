"""Development tooling, not envkit: dev/device_bundle.py, which stages envkit's lock on a lent GPU machine
(dev/README.md)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dev"))

import device_bundle
from device_bundle import OPTIONAL_HEAVY, missing_entries, present


def test_a_device_bundle_holds_what_the_machine_lacks_at_the_locked_version(tmp_path):
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("torch==2.11.0\nTransformers==5.17.0\nnumpy==2.5.2\n-e git+x#egg=y\n")
    have = present(freeze)
    assert have == {"torch": "2.11.0", "transformers": "5.17.0", "numpy": "2.5.2"}
    pins = {"torch": "2.11.0", "transformers": "5.17.0", "numpy": "2.3.5", "trl": "1.15.0", "tilelang": "0.1.9"}
    entries = {name: f"{name}=={version} \\\n    --hash=sha256:00\n" for name, version in pins.items()}
    assert set(missing_entries(entries, pins, have, OPTIONAL_HEAVY)) == {"numpy", "trl"}  # numpy: another version there
    assert set(missing_entries(entries, pins, have, set())) == {"numpy", "trl", "tilelang"}


def test_the_device_bundle_cuts_chunks_with_the_stage_script_and_checksum(tmp_path, monkeypatch):
    wheels = tmp_path / "whl"
    wheels.mkdir()
    (wheels / "a-1-py3-none-any.whl").write_bytes(b"x" * 3000)
    (wheels / "b-1-py3-none-any.whl").write_bytes(b"y" * 3000)
    monkeypatch.setattr(device_bundle, "CHUNK", 4096)
    count = device_bundle.cut(wheels, tmp_path / "out")
    parts = sorted((tmp_path / "out").glob("c*/part*"), key=lambda p: p.name)  # part00, part01, ...: as stage cats them
    assert count == len(parts) > 1 and all((p.parent / "stage").exists() for p in parts)
    whole = b"".join(p.read_bytes() for p in parts)
    assert (tmp_path / "out" / "c0" / "SHA256").read_text().strip() == hashlib.sha256(whole).hexdigest()
