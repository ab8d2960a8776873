"""The doctor's command line: exit codes, JSON schema, replay, --target, --explain, --fix."""

import json
import re
import shlex

import pytest
from click.testing import CliRunner

from envkit.cli import main
from envkit.facts import SCHEMA, Facts
from tests.conftest import FIXTURES, make_facts


@pytest.fixture
def runner():
    return CliRunner()


def saved(tmp_path, facts: Facts) -> str:
    path = tmp_path / "facts.json"
    path.write_text(facts.to_json())
    return str(path)


def test_replay_coherent_set_exits_zero(runner, tmp_path, coherent):
    result = runner.invoke(main, ["doctor", "--facts", saved(tmp_path, coherent)])
    assert result.exit_code == 0, result.output
    assert "checks passed" in result.output.splitlines()[-2]
    assert "Packages" in result.output and "Hardware" in result.output


def test_replay_of_the_real_h100_snapshot(runner):
    """Facts dumped on the H100 test machine with vLLM 0.26 + TRL 1.16 (tests/fixtures/facts)."""
    result = runner.invoke(main, ["doctor", "--json", "--facts", str(FIXTURES / "facts" / "h100-vllm0.26-trl1.16.json")])
    doc = json.loads(result.output)
    by_id = {f["id"]: f for f in doc["findings"]}
    assert result.exit_code == 0 and doc["summary"]["failed"] == 0
    assert doc["facts"]["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert by_id["EK301"]["severity"] == by_id["EK303"]["severity"] == by_id["EK203"]["severity"] == "ok"
    # that machine's numba 0.68 / setuptools 81 differ from vllm's pins: pip check complains, vLLM runs
    assert by_id["EK304"]["severity"] == "warn" and "numba==0.65.0" in by_id["EK304"]["evidence"]


def test_failure_exits_one_and_shows_fix(runner, tmp_path):
    facts = make_facts("h100", {"trl": "1.16.0", "vllm": "0.12.0", "torch": "2.11.0"})
    result = runner.invoke(main, ["doctor", "--facts", saved(tmp_path, facts)])
    assert result.exit_code == 1
    assert "fix: pip install vllm==0.26.0" in result.output
    assert "failed" in result.output


def test_strict_turns_warnings_into_exit_one(runner, tmp_path):
    path = saved(tmp_path, make_facts("t4"))  # bf16/fp8 warnings, no failure
    assert runner.invoke(main, ["doctor", "--facts", path]).exit_code == 0
    assert runner.invoke(main, ["doctor", "--facts", path, "--strict"]).exit_code == 1


def test_json_schema(runner, tmp_path, coherent):
    result = runner.invoke(main, ["doctor", "--json", "--facts", saved(tmp_path, coherent)])
    doc = json.loads(result.output)
    assert doc["schema"] == "envkit.doctor/1"
    assert set(doc) == {"schema", "envkit_version", "target", "summary", "exit_code", "findings", "repair", "facts"}
    assert set(doc["summary"]) == {"passed", "warned", "failed", "skipped", "checks", "line"}
    finding = doc["findings"][0]
    assert set(finding) == {"id", "name", "section", "severity", "title", "evidence", "fix", "requirements"}
    assert {f["severity"] for f in doc["findings"]} <= {"ok", "warn", "fail", "skip"}
    assert doc["exit_code"] == result.exit_code == 0
    assert doc["facts"]["schema"] == SCHEMA
    assert doc["facts"]["gpus"][0]["compute_capability"] == "9.0"


def test_dump_and_replay_round_trip(runner, tmp_path, coherent):
    path = tmp_path / "dumped.json"
    first = runner.invoke(main, ["doctor", "--json", "--facts", saved(tmp_path, coherent), "--dump-facts", str(path)])
    again = runner.invoke(main, ["doctor", "--json", "--facts", str(path)])
    assert Facts.load(path) == coherent
    assert json.loads(first.output)["findings"] == json.loads(again.output)["findings"]


def test_dump_facts_of_this_machine_hides_secrets(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "canary-hf-value")
    monkeypatch.setenv("WANDB_API_KEY", "canary-wandb-value")
    monkeypatch.setenv("VLLM_API_KEY", "canary-vllm-value")
    path = tmp_path / "facts.json"
    result = runner.invoke(main, ["doctor", "--json", "--no-gpu", "--dump-facts", str(path)])
    text = path.read_text() + result.output
    for secret in ("canary-hf-value", "canary-wandb-value", "canary-vllm-value"):
        assert secret not in text
    env = json.loads(path.read_text())["env"]
    assert env["HF_TOKEN"] == env["WANDB_API_KEY"] == env["VLLM_API_KEY"] == "<set>"


def test_target_checks_packages_against_a_catalog_gpu(runner, tmp_path):
    facts = make_facts("h100", {"torch": "2.7.0+cu126", "vllm": "0.10.2"}, torch_cuda="12.6")
    path = saved(tmp_path, facts)
    result = runner.invoke(main, ["doctor", "--facts", path, "--target", "b200", "--json"])
    doc = json.loads(result.output)
    by_id = {f["id"]: f for f in doc["findings"]}
    assert doc["target"] == "b200"
    assert by_id["EK202"]["severity"] == "fail"  # cu126 has no sm_100 kernels
    assert by_id["EK402"]["severity"] == "fail"  # vllm 0.10.2 on SM100: no setting turns LoRA PDL off
    assert result.exit_code == 1


def test_unknown_target_is_a_usage_error(runner):
    result = runner.invoke(main, ["doctor", "--no-gpu", "--target", "h1000"])
    assert result.exit_code == 2
    assert "did you mean h100" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("content, message", [
    ("{not json", "not JSON"),
    ('{"schema": "other/9"}', "schema is 'other/9'"),
    ('{"schema": "envkit.facts/1", "driver": {"source": "none"}}', "host: missing required key"),
    ("[]", "expected a JSON object"),
])
def test_bad_facts_file_is_one_clear_line(runner, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = runner.invoke(main, ["doctor", "--facts", str(path)])
    assert result.exit_code == 2
    assert message in result.output and str(path) in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_missing_facts_file(runner, tmp_path):
    result = runner.invoke(main, ["doctor", "--facts", str(tmp_path / "nope.json")])
    assert result.exit_code == 2 and "cannot read" in result.output


def test_explain_by_id_and_name(runner):
    by_id = runner.invoke(main, ["doctor", "--explain", "EK303"])
    assert by_id.exit_code == 0 and "TRL declares the vLLM versions" in by_id.output
    assert runner.invoke(main, ["doctor", "--explain", "trl-vllm"]).output == by_id.output
    unknown = runner.invoke(main, ["doctor", "--explain", "EK999"])
    assert unknown.exit_code == 2 and "EK301 vllm-torch" in unknown.output


def test_fix_prints_one_command_for_all_package_findings(runner, tmp_path):
    facts = make_facts("h100", {"trl": "1.16.0", "vllm": "0.12.0", "torch": "2.11.0", "transformers": "4.50.0"})
    result = runner.invoke(main, ["doctor", "--facts", saved(tmp_path, facts), "--fix"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and " -m pip install " in lines[0]
    assert "vllm==0.26.0" in lines[0] and lines[0].count("vllm==") == 1


def test_fix_yes_runs_the_command(runner, tmp_path, monkeypatch):
    ran = []

    class Done:
        returncode = 0

    monkeypatch.setattr("envkit.doctor.subprocess.run", lambda cmd, check: ran.append(cmd) or Done())
    facts = make_facts("h100", {"trl": "1.16.0", "torch": "2.11.0"})
    monkeypatch.setattr("envkit.probe.collect", lambda gpus=True: facts)  # this machine's own facts
    result = runner.invoke(main, ["doctor", "--fix", "--yes"])
    assert result.exit_code == 0 and ran and ran[0][1:4] == ["-m", "pip", "install"] and "vllm==0.26.0" in ran[0]


def test_fix_yes_never_acts_on_another_machines_facts(runner, tmp_path, monkeypatch):
    """Issue #29: pip ran here with the requirement list of the machine a --facts file describes."""
    ran = []
    monkeypatch.setattr("envkit.doctor.subprocess.run", lambda cmd, check: ran.append(cmd))
    facts = make_facts("h100", {"trl": "1.16.0", "torch": "2.11.0"})
    result = runner.invoke(main, ["doctor", "--facts", saved(tmp_path, facts), "--fix", "--yes"])
    assert result.exit_code == 2 and ran == [] and "not from --facts FILE" in result.stderr
    assert runner.invoke(main, ["doctor", "--facts", saved(tmp_path, facts), "--fix"]).exit_code == 0  # printed only


def test_yes_without_fix_is_a_usage_error(runner):
    assert runner.invoke(main, ["doctor", "--yes"]).exit_code == 2


def test_this_machine_without_gpu_says_so(runner):
    result = runner.invoke(main, ["doctor", "--no-gpu"])
    assert result.exit_code == 1
    assert "no GPU found" in result.output


def test_unwritable_dump_path(runner, tmp_path):
    result = runner.invoke(main, ["doctor", "--no-gpu", "--dump-facts", str(tmp_path / "no" / "such" / "dir.json")])
    assert result.exit_code == 2 and "cannot write" in result.output


def test_section_limits_the_checks(runner, tmp_path):
    facts = make_facts(gpus=None, packages={"trl": "1.16.0", "vllm": "0.26.0", "torch": "2.11.0"}, container="docker", shm_mib=64)
    path = saved(tmp_path, facts)
    assert runner.invoke(main, ["doctor", "--facts", path]).exit_code == 1  # no GPU, small /dev/shm
    result = runner.invoke(main, ["doctor", "--facts", path, "--section", "packages", "--json"])
    assert {f["section"] for f in json.loads(result.output)["findings"]} == {"packages"}
    assert result.exit_code == 0


def test_doctor_doc_check_tables_are_generated_from_the_registries():
    from pathlib import Path

    from envkit.catalog import all_checks
    from envkit.doctor import checks_markdown

    readme = (Path(__file__).parents[1] / "docs" / "doctor.md").read_text()
    assert checks_markdown() in readme, "docs/doctor.md's Checks tables are stale: python -m envkit.doctor"
    for rule in all_checks():  # every registered check is listed, and only those
        assert f"| {rule.id} | {rule.name} |" in readme
    assert sorted(set(re.findall(r"^\| (EK\d{3}) \|", readme, re.M))) == [rule.id for rule in all_checks()]


def test_fix_covers_every_failing_package_finding_cpu_torch_included(runner, tmp_path):
    """Issue #12: --fix ignored EK201 and offered a vLLM that 'fits torch 2.13.0+cpu'.  Now one command: the
    CUDA build of the same torch from PyTorch's index, the vLLM built for that release, and the TRL that imports
    under this transformers (EK601)."""
    facts = make_facts("h100", {"torch": "2.13.0+cpu", "trl": "0.28.0", "transformers": "5.17.0"}, torch_cuda=None)
    result = runner.invoke(main, ["doctor", "--facts", saved(tmp_path, facts), "--fix"])
    command = shlex.split(result.output.strip().splitlines()[-1])
    assert "torch==2.13.0+cu130" in command and "trl>=0.29.0" in command
    assert command[command.index("--extra-index-url") + 1] == "https://download.pytorch.org/whl/cu130"
    shown = runner.invoke(main, ["doctor", "--facts", saved(tmp_path, facts)]).output
    assert "+cpu" not in shown.split("fits", 1)[-1].split("\n")[0]


@pytest.mark.parametrize("no_color, coloured", [("1", False), ("", True)], ids=["NO_COLOR=1", "NO_COLOR empty"])
def test_no_color_set_and_not_empty_turns_colour_off(tmp_path, coherent, no_color, coloured):
    """https://no-color.org; the runner's color=True stands for a terminal, where click would colour."""
    runner = CliRunner(env={"NO_COLOR": no_color})
    result = runner.invoke(main, ["doctor", "--facts", saved(tmp_path, coherent)], color=True)
    assert result.exit_code == 0, result.output
    assert "checks passed" in result.output
    assert ("\x1b[" in result.output) is coloured
