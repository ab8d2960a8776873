"""On a GPU machine: the doctor's facts agree with nvidia-smi and torch, and a coherent stack passes.

Marked `gpu`; skipped where nvidia-smi finds no GPU (CI).  Run on the device with
`python -m pytest -m gpu tests/test_gpu.py`.
"""

import json
import os
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from envkit.knowledge import torch_arches

ROOT = Path(__file__).resolve().parents[1]


def _nvidia_smi() -> list[list[str]]:
    if not shutil.which("nvidia-smi"):
        return []
    result = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,compute_cap,memory.total,driver_version", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, check=False,
    )
    return [[c.strip() for c in line.split(",")] for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


SMI = _nvidia_smi()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not SMI, reason="no NVIDIA GPU (nvidia-smi finds none)")]


def doctor_json() -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)]))}
    result = subprocess.run([sys.executable, "-m", "envkit", "doctor", "--json"], capture_output=True, text=True, env=env, check=False)
    return json.loads(result.stdout)


def test_doctor_facts_match_nvidia_smi():
    facts = doctor_json()["facts"]
    assert len(facts["gpus"]) == len(SMI)
    for gpu, (name, cc, memory_mib, driver) in zip(facts["gpus"], SMI):
        assert gpu["name"] == name
        assert gpu["compute_capability"] == cc
        assert abs(gpu["memory_total_mib"] - int(memory_mib)) <= 1
        assert facts["driver"]["version"] == driver
        assert gpu["catalog_id"] is not None


@pytest.mark.skipif(find_spec("vllm") is None or find_spec("trl") is None, reason="needs vllm and trl installed")
def test_coherent_stack_has_no_failure():
    doc = doctor_json()
    failures = [f for f in doc["findings"] if f["severity"] == "fail"]
    assert failures == [] and doc["exit_code"] == 0


@pytest.mark.skipif(find_spec("torch") is None, reason="needs torch")
def test_torch_arch_knowledge_matches_the_installed_torch():
    import torch

    listed = torch_arches(torch.__version__, torch.version.cuda)
    shipped = sorted({a.split("_")[1].rstrip("a") for a in torch.cuda.get_arch_list() if a.startswith("sm_")})
    assert listed is not None, f"add torch {torch.__version__} (CUDA {torch.version.cuda}) to cuda.json: {shipped}"
    assert sorted(a.replace(".", "") for a in listed) == shipped
