"""Replaying a facts file: wrong value types are one clear error, secrets in it never come back out."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from envkit.cli import main

SNAPSHOT = json.loads((Path(__file__).parent / "fixtures" / "facts" / "h100-vllm0.26-trl1.16.json").read_text())


@pytest.mark.parametrize("change,needle", [
    (lambda d: d["packages"]["torch"].__setitem__("version", "2.x.y"), "packages.torch.version: '2.x.y' is not a PEP 440 version"),
    (lambda d: d["gpus"][0].__setitem__("compute_capability", 9), "gpus[0].compute_capability: expected a string or null"),
    (lambda d: d.__setitem__("packages", []), "packages: expected an object"),
    (lambda d: d.__setitem__("cuda_visible_devices", 5), "cuda_visible_devices: expected a string or null"),
    (lambda d: d["host"].__setitem__("shm_total_mib", "big"), "host.shm_total_mib"),
])
def test_wrong_types_in_facts_are_one_line_exit_2(tmp_path, change, needle):
    data = copy.deepcopy(SNAPSHOT)
    change(data)
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(data))
    result = CliRunner().invoke(main, ["doctor", "--facts", str(path)])
    assert result.exit_code == 2, result.output
    assert needle in result.output and str(path) in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_secrets_in_a_replayed_facts_file_are_masked(tmp_path):
    data = copy.deepcopy(SNAPSHOT)
    data["env"].update({"HF_TOKEN": "canary-REALSECRET-hf", "VLLM_API_KEY": "canary-REALSECRET-vllm", "VLLM_SERVER_PASS": "REALSECRET"})
    path, dumped = tmp_path / "facts.json", tmp_path / "again.json"
    path.write_text(json.dumps(data))
    result = CliRunner().invoke(main, ["doctor", "--facts", str(path), "--json", "--dump-facts", str(dumped)])
    assert "REALSECRET" not in result.output
    assert "REALSECRET" not in dumped.read_text()
    assert json.loads(dumped.read_text())["env"]["HF_TOKEN"] == "<set>"
