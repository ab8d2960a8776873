"""The GRPO settings a backend really trains with (envkit.train.effective), checked against Unsloth's own
generated UnslothGRPOConfig code (tests/fixtures/unsloth/*.json: extracted from unsloth 2026.10.9 by running its
generator), and what `envkit train` shows and refuses because of it."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from envkit.knowledge import load
from envkit.train.effective import backend_rules, effective_config, keep_after, replay, trl_defaults
from tests.conftest import COHERENT, make_facts
from tests.test_train_backends import UNSLOTH, dry_run_on, plan_for, tiny, with_vllm

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "unsloth" / "grpo_config_2026_10_9.json").read_text())
RULES = backend_rules("unsloth")
UNSLOTH_NOW = make_facts("h100", {**COHERENT, "trl": "1.15.0", "datasets": "4.3.0", "unsloth": "2026.10.9",
                                      "unsloth-zoo": "2026.10.9"})  # what unsloth 2026.10.9 requires


def unsloth_init(passed: dict) -> dict:
    """Unsloth's generated UnslothGRPOConfig.__init__ body, run as it runs: its signature defaults under the
    caller's arguments (TRL's defaults for the rest), then the body; the fields it leaves for TRL."""
    fields = trl_defaults()
    names = {**fields, **{k: v for k, v in FIXTURE["signature_defaults"].items() if k in fields}, **passed}
    namespace = {**names, "os": os, "print": lambda *a, **k: None}
    exec("\n".join(FIXTURE["init_body"]), namespace)
    return {name: namespace[name] for name in fields}


def test_the_recorded_defaults_are_unsloths():
    fields = trl_defaults()
    assert FIXTURE["unsloth"] == "2026.10.9" and "mask_truncated_completions = True" in "\n".join(FIXTURE["init_body"])
    assert ({k: v for k, v in FIXTURE["signature_defaults"].items() if k in fields}
            == {k: v for k, v in RULES["defaults"].items() if k in fields})
    assert RULES["source"] and RULES["checked"] == "2026-12-07"


GRID = {
    "loss_type": [None, "dapo", "bnpo", "dr_grpo", "cispo", "grpo"],
    "mask_truncated_completions": [None, True, False],
    "epsilon_high": [None, 0.3],
    "scale_rewards": [None, "group", "batch", False],
    "beta": [None, 0.0, 0.04],
    "per_device_train_batch_size": [4, 8],
    "use_vllm": [False, True],
}


@pytest.mark.parametrize("loss_type", GRID["loss_type"])
def test_replaying_the_knowledge_gives_what_unsloths_code_gives(loss_type):
    """Every combination of the settings Unsloth's __init__ reads (None: not passed)."""
    rest = {k: v for k, v in GRID.items() if k != "loss_type"}
    for values in itertools.product(*rest.values()):
        passed = {k: v for k, v in zip(rest, values) if v is not None}
        if loss_type is not None:
            passed["loss_type"] = loss_type
        passed |= {"num_generations": 8, "gradient_accumulation_steps": 1}
        expected = unsloth_init(passed)
        assert replay(RULES, passed) == expected, passed


def kwargs_for(text: str, facts=UNSLOTH_NOW) -> dict:
    return dict(plan_for(text, facts).grpo_config)


LEARNING = ("loss_type", "beta", "epsilon", "epsilon_high", "mask_truncated_completions", "scale_rewards",
            "weight_decay", "optim", "warmup_steps", "learning_rate", "lr_scheduler_type",
            "per_device_train_batch_size",
            "gradient_accumulation_steps", "num_generations", "seed", "max_completion_length", "temperature", "top_p",
            "vllm_importance_sampling_correction")


@pytest.mark.parametrize("vllm", [False, True], ids=["no-vllm", "vllm"])
def test_unsloths_own_code_trains_envkits_arguments_as_trl_does(vllm):
    """The tiny recipe on backend unsloth, its arguments through Unsloth's generated __init__: every setting
    that shapes learning is TRL's (the issue's run had masking and epsilon_high 0.28 it never asked for)."""
    change = with_vllm() if vllm else ("enabled: auto", "enabled: false")
    on_trl = {**trl_defaults(), **kwargs_for(tiny(change))}
    on_unsloth = unsloth_init(kwargs_for(tiny(UNSLOTH, change)))
    on_trl["epsilon_high"] = on_trl["epsilon_high"] or on_trl["epsilon"]  # TRL's meaning of None
    assert {k: on_unsloth[k] for k in LEARNING} == {k: on_trl[k] for k in LEARNING}
    assert on_unsloth["mask_truncated_completions"] is False and on_unsloth["epsilon_high"] == on_trl["epsilon"]


def test_without_envkits_pins_unsloth_would_mask_truncated_completions():
    """The same arguments less what envkit pins: Unsloth's code masks truncated completions (what issue #30 saw)."""
    kwargs = kwargs_for(tiny(UNSLOTH))
    bare = {k: v for k, v in kwargs.items() if k not in RULES["keep"] or k in ("loss_type", "beta")}
    trained = unsloth_init(bare)
    assert trained["mask_truncated_completions"] is True and trained["epsilon_high"] == 0.28
    shown = effective_config("unsloth", kwargs, "2026.10.9")
    kept = {k["field"]: k for k in shown["kept"]}
    masking = kept["mask_truncated_completions"]
    assert masking["backend_would_set"] is True and masking["value"] is False
    assert kept["epsilon_high"]["backend_would_set"] == 0.28


def test_a_recipe_value_is_never_overwritten_by_a_pin():
    kwargs = kwargs_for(tiny(UNSLOTH, ("  max_steps: 20\n", "  max_steps: 20\n  mask_truncated_completions: true\n"
                                                        "  weight_decay: 0.1\n  epsilon_high: 0.28\n")))
    assert kwargs["mask_truncated_completions"] is True
    assert kwargs["weight_decay"] == 0.1 and kwargs["epsilon_high"] == 0.28
    assert "mask_truncated_completions" not in kwargs_for(tiny())  # backend trl: nothing pinned


def test_dry_run_shows_the_effective_values_next_to_the_recipes(monkeypatch, tmp_path):
    _, result = dry_run_on(monkeypatch, tmp_path, tiny(UNSLOTH, with_vllm()), UNSLOTH_NOW)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)["effective_config"]
    assert shown["backend"] == "unsloth" and shown["version"] == "2026.10.9" and shown["read"] is True
    assert {"mask_truncated_completions", "epsilon_high", "optim", "warmup_steps", "weight_decay",
            "vllm_importance_sampling_correction"} <= {k["field"] for k in shown["kept"]}
    differences = {d["field"]: d for d in shown["differences"]}
    assert set(differences) <= {k for k, v in RULES["keep"].items() if isinstance(v, str) and v != "pass"}
    router = differences["router_aux_loss_coef"]
    assert router["effective"] == 0.0 and router["by"] == "unsloth 2026.10.9"
    assert shown["refused"] == []
    assert "envkit train: backend unsloth 2026.10.9: kept as the recipe's (passed explicitly): " in result.stderr
    assert "mask_truncated_completions False (unset, it would be True)" in result.stderr


def test_trl_backend_shows_no_backend_changes(monkeypatch, tmp_path):
    _, result = dry_run_on(monkeypatch, tmp_path, tiny(), UNSLOTH_NOW)
    assert result.exit_code == 0 and json.loads(result.stdout)["effective_config"] is None


def test_a_version_not_read_is_said(monkeypatch, tmp_path):
    facts = make_facts("h100", {**COHERENT, "unsloth": "2026.9.1"})
    _, result = dry_run_on(monkeypatch, tmp_path, tiny(UNSLOTH), facts)
    assert result.exit_code == 0 and json.loads(result.stdout)["effective_config"]["read"] is False
    assert "envkit read its GRPO config rewrites at >=2026.9.12,<=2026.10.9 only" in result.stderr


DR_GRPO = ("  max_steps: 20\n", "  max_steps: 20\n  loss_type: dr_grpo\n")


def test_a_rewrite_envkit_cannot_keep_refuses_the_run_in_one_line(monkeypatch, tmp_path):
    path, result = dry_run_on(monkeypatch, tmp_path, tiny(UNSLOTH, DR_GRPO), UNSLOTH_NOW)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"envkit train: {path}: grpo.scale_rewards: unsloth 2026.10.9 would train with False instead of 'group' "
        "(UnslothGRPOConfig rewrites it); fix: grpo.scale_rewards: none (what Unsloth trains dr_grpo with, "
        "as the Dr GRPO paper recommends), or backend: trl")
    _, fixed = dry_run_on(monkeypatch, tmp_path, tiny(UNSLOTH, (DR_GRPO[0], DR_GRPO[1] + "  scale_rewards: none\n")),
                          UNSLOTH_NOW)
    assert fixed.exit_code == 0, fixed.output
    _, on_trl = dry_run_on(monkeypatch, tmp_path, tiny(DR_GRPO), UNSLOTH_NOW)
    assert on_trl.exit_code == 0, on_trl.output


def test_every_kept_field_says_how():
    for name, keep in RULES["keep"].items():
        assert keep == "pass" or isinstance(keep, str) and len(keep) > 10 or set(keep) in ({"from"}, {"refuse"}), name
    assert load("backend_config")["about"]


def test_values_an_older_unsloth_overwrites_anyway_are_set_back_on_its_config():
    """unsloth <= 2026.9.11 set masking and epsilon_high for dapo over explicit values (its rl.py check_dr_grpo):
    the runner sets envkit's back on the constructed config, where TRL's trainer reads them."""
    kwargs = kwargs_for(tiny(UNSLOTH))
    config = SimpleNamespace(**{**kwargs, "mask_truncated_completions": True, "epsilon_high": 0.28})
    restored = keep_after(config, kwargs, "unsloth")
    assert {r["field"]: (r["backend_set"], r["value"]) for r in restored} == {
        "mask_truncated_completions": (True, False), "epsilon_high": (0.28, 0.2)}
    assert config.mask_truncated_completions is False and config.epsilon_high == 0.2
    assert keep_after(config, kwargs, "unsloth") == [] and keep_after(config, kwargs, "trl") == []
    assert "2026.9.11" in RULES["before"] and RULES["versions"] == ">=2026.9.12,<=2026.10.9"
