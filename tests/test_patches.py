"""envkit's TRL patches: selection by installed versions and run shape, --no-patch, the docs, and what
EKP001 changes (on the real trl's VLLMClient, with a stand-in for vLLM's packer)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from envkit.errors import OptionError
from envkit.recipe.load import parse_recipe
from envkit.train.patches import all_patches, find_patch, markdown, select_patches
from envkit.train.plan import PlanOptions, build_plan
from tests.conftest import COHERENT, make_facts

README = Path(__file__).parents[1] / "docs" / "training.md"  # the Patches table
SERVER = "vllm: {mode: server}\nresources: {generation_gpus: [0]}\n"


def recipe(tmp_path, extra: str = "", backend: str = "trl"):
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "q", "answer": "a"}\n')
    text = f"version: 1\nbackend: {backend}\nmodel: {{name: m}}\ndataset: {{path: {data}}}\nrewards: [{{name: format}}]\n{extra}"
    return parse_recipe(text, str(tmp_path / "r.yaml"))


# (trl installed, recipe's vllm section, GPUs, expected patches): the window of EKP001 is trl 1.11.0 - 1.16.0,
# server mode, backend trl, vLLM generating.  Versions whose wheels were read: 1.10.0 sends each tensor
# synchronously (unaffected), 1.11.0 introduced the generator sync, 1.16.0 is the newest release.
CASES = [
    ("1.16.0", SERVER, ["h200", "h200"], ["EKP001"]),
    ("1.11.0", SERVER, ["h200", "h200"], ["EKP001"]),
    ("1.10.0", SERVER, ["h200", "h200"], []),
    ("1.16.0", "vllm: {mode: colocate}\n", ["h200"], []),
    ("1.16.0", SERVER + "", [], []),  # no GPU: no vLLM, nothing to sync
    ("1.16.0", "vllm: {enabled: false}\n", ["h200"], []),
]


@pytest.mark.parametrize("trl, section, gpus, expected", CASES)
def test_selection_follows_installed_versions_and_shape(tmp_path, trl, section, gpus, expected):
    facts = make_facts(gpus, COHERENT | {"trl": trl})
    plan = build_plan(recipe(tmp_path, section), facts)
    assert list(plan.patches) == expected


def test_a_newer_trl_than_the_window_gets_no_patch_blind(tmp_path):
    facts = make_facts(["h200", "h200"], COHERENT | {"trl": "1.17.0"})
    assert select_patches(recipe(tmp_path, SERVER), facts, use_vllm=True) == ([], [])


def test_no_patch_turns_one_off_by_id_or_name_and_rejects_unknown_ids(tmp_path):
    facts = make_facts(["h200", "h200"], COHERENT | {"trl": "1.16.0"})
    r = recipe(tmp_path, SERVER)
    assert select_patches(r, facts, True, ("ekp001",)) == ([], ["EKP001"])
    assert select_patches(r, facts, True, ("server-lora-sync",)) == ([], ["EKP001"])
    with pytest.raises(OptionError, match=r"--no-patch EKP999: no such patch \(known: EKP001 server-lora-sync\)"):
        select_patches(r, facts, True, ("EKP999",))


def test_every_patch_has_its_evidence_and_a_date():
    for patch in all_patches():
        assert re.fullmatch(r"EKP\d{3}", patch.id)
        assert patch.evidence and patch.upstream and re.fullmatch(r"\d{4}-\d{2}-\d{2}", patch.checked)
        assert find_patch(patch.name) is patch or find_patch(patch.name) == patch


def test_readme_patch_section_is_the_generated_table():
    assert markdown() in README.read_text(), "docs/training.md's Patches table is stale: python -m envkit.train.patches"


class FakeModel:
    """A 'LoRA model' whose weight is 1.0 unmerged and 2.0 merged."""

    def __init__(self):
        import torch

        self.weight = torch.ones(4)

    def iter_named_params(self):
        """TRL 1.16's shape: merge, yield views, unmerge after the last yield."""
        self.weight += 1.0
        yield "w", self.weight.data
        yield "w2", self.weight.data[:2]
        self.weight -= 1.0


def packer(named_params):
    """vLLM's pack_tensors, reduced: pull every item, and only then copy (torch.cat)."""
    import torch

    views = [tensor for _, tensor in named_params]
    return torch.cat(views).tolist()


@pytest.fixture
def client(monkeypatch):
    trl_client = pytest.importorskip("trl.generation.vllm_client")
    sent = []
    monkeypatch.setattr(trl_client.VLLMClient, "update_named_params",
                        lambda self, metadata, named_params: sent.append(packer(named_params)))
    return trl_client.VLLMClient, sent


def test_without_ekp001_the_server_receives_the_base_weights(client):
    cls, sent = client
    model = FakeModel()
    cls.update_named_params(object(), [("w", "float32", [4]), ("w2", "float32", [2])], model.iter_named_params())
    assert sent == [[1.0] * 6]  # the bug of issue #11: unmerged before the copy


def test_ekp001_sends_the_merged_weights_and_unmerges_afterwards(client):
    from envkit.train.trl_patches import apply_patches

    cls, sent = client
    assert apply_patches(["EKP001"]) == []
    assert apply_patches(["EKP001"]) == []  # idempotent: a second application does not wrap twice
    model = FakeModel()
    cls.update_named_params(object(), [("w", "float32", [4]), ("w2", "float32", [2])], model.iter_named_params())
    assert sent == [[2.0] * 6]
    assert model.weight.tolist() == [1.0] * 4  # the adapter is unmerged again for training


def test_a_patch_whose_target_changed_is_reported_not_applied(monkeypatch):
    trl_client = pytest.importorskip("trl.generation.vllm_client")
    from envkit.train.trl_patches import apply_patches

    monkeypatch.setattr(trl_client.VLLMClient, "update_named_params", lambda self, named_params: None)
    [(patch_id, why)] = apply_patches(["EKP001"])
    assert patch_id == "EKP001" and "no metadata argument" in why


def test_explain_prints_a_patch(tmp_path):
    from click.testing import CliRunner

    from envkit.cli import main

    result = CliRunner().invoke(main, ["doctor", "--explain", "EKP001"])
    assert result.exit_code == 0
    assert "server-lora-sync (patch)" in result.output and "--no-patch EKP001" in result.output
    assert "trl >=1.11.0,<=1.16.0" in result.output


def test_the_manifest_records_applied_and_turned_off_patches(tmp_path):
    from datetime import datetime, timezone

    from envkit.train.runner import _manifest

    facts = make_facts(["h200", "h200"], COHERENT | {"trl": "1.16.0"})
    r = recipe(tmp_path, SERVER)
    for no_patch, applied, off in [((), ["EKP001"], []), (("EKP001",), [], ["EKP001"])]:
        plan = build_plan(r, facts, PlanOptions(no_patch=no_patch))
        manifest = _manifest(r, plan, {}, [], 1, datetime.now(timezone.utc), 1.0, None, completed=True, chat=False)
        assert (manifest["plan"]["patches"], manifest["plan"]["patches_off"]) == (applied, off)
        json.dumps(manifest)  # written as JSON


def test_an_unknown_no_patch_id_is_one_line_and_exit_2():
    from click.testing import CliRunner

    from envkit.cli import main

    result = CliRunner().invoke(main, ["train", "tiny", "--dry-run", "--no-patch", "EKP999"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == "envkit train: --no-patch EKP999: no such patch (known: EKP001 server-lora-sync)"


def test_an_unknown_explain_id_lists_every_check_and_patch():
    from click.testing import CliRunner

    from envkit.cli import main

    result = CliRunner().invoke(main, ["doctor", "--explain", "EK999"])
    assert result.exit_code == 2
    for known in ("EK101 linux", "EK406 trl-sleep-sync", "EK501 launch-gpus", "EK505", "EKP001 server-lora-sync"):
        assert known in result.output


def test_ekp001_unmerges_even_when_the_send_fails(monkeypatch):
    """A server timeout or NCCL error in the send must not leave the adapter merged into the trained weights."""
    trl_client = pytest.importorskip("trl.generation.vllm_client")
    from envkit.train.trl_patches import apply_patches

    def failing(self, metadata, named_params):
        next(iter(named_params))
        raise RuntimeError("NCCL timeout")

    monkeypatch.setattr(trl_client.VLLMClient, "update_named_params", failing)
    assert apply_patches(["EKP001"]) == []
    model = FakeModel()
    with pytest.raises(RuntimeError, match="NCCL timeout"):
        trl_client.VLLMClient.update_named_params(object(), [("w", "float32", [4]), ("w2", "float32", [2])],
                                                  model.iter_named_params())
    assert model.weight.tolist() == [1.0] * 4


def test_every_patch_in_the_data_has_code_and_an_unknown_one_is_reported():
    from envkit.train.trl_patches import PATCHES, apply_patches

    assert {p.id for p in all_patches()} == set(PATCHES)
    assert apply_patches(["EKP999"]) == [("EKP999", "envkit has no code for it (knowledge/patches.json names it)")]
