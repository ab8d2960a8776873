"""Version rules over real Requires-Dist lines (tests/fixtures/metadata, recorded from the registry)."""

import pytest

from envkit.rules import DOCTOR_CHECKS, Severity
from tests.conftest import COHERENT, make_facts


def check(rule_id, facts):
    return DOCTOR_CHECKS[rule_id].finding(facts)


def test_coherent_set_has_no_failure(coherent):
    for rule_id in ("EK300", "EK301", "EK302", "EK303", "EK304", "EK305"):
        assert check(rule_id, coherent).severity in (Severity.OK, Severity.SKIP), rule_id


def test_train_stack_missing_warns():
    finding = check("EK300", make_facts("h100", {"torch": "2.11.0"}))
    assert finding.severity is Severity.WARN and "envkit[train]" in finding.fix


def test_vllm_pins_exact_torch_from_metadata():
    facts = make_facts("h100", {**COHERENT, "torch": "2.13.0"})
    finding = check("EK301", facts)
    assert finding.severity is Severity.FAIL
    assert "torch==2.11.0" in finding.evidence  # read from vllm 0.26.0's metadata
    # the fix keeps torch 2.13.0 and names a vLLM built for it inside TRL 1.16's window (0.27-0.31)
    assert finding.requirements and finding.requirements[0].startswith("vllm==0.")
    assert finding.requirements[0] in {f"vllm==0.{m}.{p}" for m in range(27, 32) for p in range(3)}


def test_vllm_transformers_window():
    ok = make_facts("h100", {"vllm": "0.22.0", "transformers": "5.5.3"})
    assert check("EK302", ok).severity is Severity.OK
    # vllm 0.22.0 excludes transformers 5.0-5.4
    bad = check("EK302", make_facts("h100", {"vllm": "0.22.0", "transformers": "5.2.0"}))
    assert bad.severity is Severity.FAIL and "5.2.0" in bad.evidence
    assert bad.requirements and bad.requirements[0].startswith("transformers==")


def test_trl_vllm_window_fix_names_a_version_fitting_torch():
    facts = make_facts("h100", {"trl": "1.16.0", "vllm": "0.12.0", "torch": "2.11.0+cu130"})
    finding = check("EK303", facts)
    assert finding.severity is Severity.FAIL
    assert ">=0.22.0" in finding.title and "<=0.31.0" in finding.title
    assert "vllm==0.26.0" in finding.fix  # newest vLLM in 0.22-0.31 that pins torch 2.11.0
    assert finding.requirements == ("vllm==0.26.0",)


def test_trl_vllm_outside_the_window_fails_on_both_sides():
    """Both directions have pairs that break at import: trl 1.16.0 needs vLLM modules added in 0.12.0/0.16.0,
    trl 0.24.0 imports GuidedDecodingParams, removed in vLLM 0.12.0."""
    for trl, vllm, torch in [("1.16.0", "0.14.0", "2.9.1"), ("1.16.0", "0.32.0", "2.11.0"),
                             ("0.24.0", "0.12.0", "2.9.0")]:
        finding = check("EK303", make_facts("h100", {"trl": trl, "vllm": vllm, "torch": torch}))
        assert finding.severity is Severity.FAIL and "outside" in finding.title, (trl, vllm)
    for trl, vllm in [("1.16.0", "0.22.0"), ("1.16.0", "0.31.0"), ("0.24.0", "0.10.2")]:  # the window's edges
        assert check("EK303", make_facts("h100", {"trl": trl, "vllm": vllm})).severity is Severity.OK, (trl, vllm)


def test_trl_vllm_inside_window_ok_and_missing_vllm_warns():
    assert check("EK303", make_facts("h100", {"trl": "1.16.0", "vllm": "0.26.0", "torch": "2.11.0"})).severity is Severity.OK
    missing = check("EK303", make_facts("h100", {"trl": "1.16.0", "torch": "2.11.0"}))
    assert missing.severity is Severity.WARN and missing.requirements == ("vllm==0.26.0",)


def test_missing_vllm_is_no_finding_where_vllm_could_not_run():
    """No GPU: installing vLLM would not help.  GB10 runs vLLM (vllm#28129, EK401): there it is a finding."""
    no_gpu = check("EK303", make_facts(None, {"trl": "1.16.0", "torch": "2.11.0"}))
    assert no_gpu.severity is Severity.SKIP and "no GPU" in no_gpu.title
    spark = check("EK303", make_facts("gb10", {"trl": "1.16.0", "torch": "2.11.0"}))
    assert spark.severity is Severity.WARN and spark.requirements == ("vllm==0.26.0",)
    outside = check("EK303", make_facts(None, {"trl": "1.16.0", "vllm": "0.12.0", "torch": "2.11.0"}))
    assert outside.severity is Severity.FAIL  # an installed vLLM outside the window breaks `import trl` anywhere


def test_trl_window_without_any_vllm_for_this_torch():
    finding = check("EK303", make_facts("h100", {"trl": "0.24.0", "vllm": "0.26.0", "torch": "2.11.0"}))
    assert finding.severity is Severity.FAIL
    assert "vllm==0.10.2 torch==2.8.0" in finding.fix  # TRL 0.24 supports only vllm 0.10.2, built for torch 2.8.0


def test_requirements_conflict_between_stack_packages_fails(coherent):
    coherent.installed["flashinfer-python"] = "0.5.3"  # vllm 0.26.0 pins flashinfer-python==0.6.14
    finding = check("EK304", coherent)
    assert finding.severity is Severity.FAIL and "flashinfer-python==0.6.14" in finding.evidence
    assert finding.requirements == ("flashinfer-python==0.6.14",)


def test_requirements_conflict_outside_the_stack_and_missing_warn(coherent):
    coherent.installed["numpy"] = "1.20.0"  # trl 1.16 needs numpy>=1.26.0
    finding = check("EK304", coherent)
    assert finding.severity is Severity.WARN and "numpy>=1.26.0" in finding.evidence
    assert "1 conflict(s) outside the stack" in finding.title
    del coherent.installed["numpy"]
    missing = check("EK304", coherent)
    assert missing.severity is Severity.WARN and "not installed" in missing.title


def test_requirements_markers_follow_the_facts_platform(coherent):
    # torch's cuda-toolkit requirement applies on Linux only
    coherent.host.os = "Darwin"
    del coherent.installed["cuda-toolkit"]
    assert check("EK304", coherent).severity is Severity.OK


def test_a_marker_that_cannot_be_evaluated_does_not_apply(coherent, monkeypatch):
    """packaging < 24 (allowed by envkit's floor) raises InvalidVersion comparing platform_release to a version,
    and a real kernel (6.8.0-1017-aws) is not one."""
    from packaging.markers import Marker
    from packaging.version import InvalidVersion

    from envkit.rules.requirements import requirements

    def old_packaging(self, environment=None):
        if "platform_release" in str(self):
            raise InvalidVersion(environment["platform_release"])
        return real(self, environment)

    real = Marker.evaluate
    monkeypatch.setattr(Marker, "evaluate", old_packaging)
    coherent.packages["trl"].requires.append("vllm<0.1; platform_release >= '6'")
    assert all("platform_release" not in str(r.marker) for r in requirements(coherent.packages["trl"], coherent))
    assert check("EK304", coherent).severity is Severity.OK


def test_unsloth_cannot_sit_beside_trl_116():
    facts = make_facts("h100", {"unsloth": "2026.10.9", "unsloth_zoo": "2026.10.9", "trl": "1.16.0", "datasets": "5.2.0", "transformers": "5.17.0"})
    finding = check("EK305", facts)
    assert finding.severity is Severity.FAIL
    assert "trl<=1.15.0" in finding.evidence.replace("!=0.19.0,", "").replace(",>=0.18.2", "") or "<=1.15.0" in finding.evidence
    assert "datasets" in finding.evidence
    fitting = make_facts("h100", {"unsloth": "2026.10.9", "trl": "1.15.0", "datasets": "4.3.0", "transformers": "5.17.0"})
    assert check("EK305", fitting).severity is Severity.OK


def test_xformers_built_for_another_torch_warns():
    """Seen on the H200 (benchmarks/results/2026-11-30-h200-unsloth.md): xformers 0.0.35 declares torch>=2.10 but is
    built for 2.10.0+cu128 (xformers/cpp_lib.json) and does not load with torch 2.11.0+cu130."""
    from envkit.rules import DOCTOR_CHECKS, Severity

    facts = make_facts("h200", {"torch": "2.11.0", "xformers": "0.0.35"})
    facts.packages["xformers"].built_for_torch = "2.10.0+cu128"
    finding = DOCTOR_CHECKS["EK307"].finding(facts)
    assert finding.severity is Severity.WARN and "built for torch 2.10.0, not 2.11.0" in finding.title
    assert "pip uninstall xformers" in finding.fix
    facts.packages["torch"].version = "2.10.0"
    assert DOCTOR_CHECKS["EK307"].finding(facts).severity is Severity.OK
    facts.packages["xformers"].built_for_torch = None
    assert DOCTOR_CHECKS["EK307"].finding(facts).severity is Severity.SKIP


def test_probe_reads_xformers_build_record(tmp_path, monkeypatch):
    import json
    from importlib import metadata

    from envkit.probe.packages import probe_packages

    site = tmp_path / "site"
    (site / "xformers").mkdir(parents=True)
    (site / "xformers" / "cpp_lib.json").write_text(json.dumps({"version": {"torch": "2.10.0+cu128", "cuda": 1208}}))
    info = site / "xformers-0.0.35.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: xformers\nVersion: 0.0.35\nRequires-Dist: torch>=2.10\n")
    monkeypatch.setattr(metadata, "distribution", lambda name: metadata.PathDistribution(info) if name == "xformers"
                        else (_ for _ in ()).throw(metadata.PackageNotFoundError(name)))
    found = probe_packages(("xformers",))
    assert found["xformers"].built_for_torch == "2.10.0+cu128" and found["xformers"].requires == ["torch>=2.10"]


@pytest.mark.parametrize("outside, expected", [(["pyarrow"], "warn"), (["datasets"], "ok"), ([], "ok")])
def test_pyarrow_outside_site_packages_warns_that_datasets_cannot_build_in_memory(outside, expected):
    """Issue #25: the PicklingError seen on the GPU machine (EK605) comes from where pyarrow is installed (pip
    install --target /tmp/site on PYTHONPATH), not from its version: dill pickles such a module by value."""
    facts = make_facts("h200", installed={"datasets": "5.2.0", "pyarrow": "26.0.1"})
    facts.outside_site_packages = outside
    finding = DOCTOR_CHECKS["EK605"].finding(facts)
    assert finding.severity.value == expected
    if expected == "warn":
        assert "outside site-packages" in finding.title and "virtualenv" in finding.fix
    del facts.installed["pyarrow"]
    assert DOCTOR_CHECKS["EK605"].finding(facts).severity.value == "skip"


def test_probe_names_distributions_outside_every_prefix_and_site_packages(tmp_path):
    from envkit.probe.installed import dist_folders, outside_site_packages

    for folder, name in ((tmp_path / "target", "pyarrow"), (tmp_path / "lib" / "site-packages", "dill"),
                         (tmp_path / "prefix" / "lib" / "dist-packages", "numpy")):
        (folder / f"{name}-1.0.dist-info").mkdir(parents=True)
    folders = dist_folders([str(tmp_path / "target"), str(tmp_path / "lib" / "site-packages"),
                            str(tmp_path / "prefix" / "lib" / "dist-packages")])
    assert outside_site_packages(folders, [str(tmp_path / "prefix")]) == ["pyarrow"]
    assert outside_site_packages(folders, [str(tmp_path)]) == []


def _matrix_facts(versions: dict[str, str]):
    """Facts whose packages declare what the shipped matrix records (every release, not only the fixtures')."""
    from envkit.knowledge.matrix import Matrix

    facts = make_facts("h100", versions)
    for name, package in facts.packages.items():
        rec = Matrix.shipped().record(name, package.version) or {"requires": {}}
        package.requires = [f"{dep}{'' if s == '*' else s}" for dep, s in rec["requires"].items()]
        if rec.get("vllm_extra"):
            package.requires.append(f"vllm{rec['vllm_extra']}; extra == \"vllm\"")
    return facts


VERSION_RULES = ("EK301", "EK302", "EK303")


def test_every_version_fix_satisfies_every_window():
    """Issue #24: EK303's fix `vllm==0.31.0 torch==2.13.0` left transformers 5.25, which vLLM 0.31 excludes.
    Installing what any finding's fix names must leave none of the version checks failing."""
    broken = [{"trl": "1.16.0", "torch": "2.14.1", "transformers": "5.25.0", "peft": "0.21.2"},  # the issue's
              {"trl": "1.16.0", "vllm": "0.26.0", "torch": "2.13.0", "transformers": "5.25.0"},
              {"trl": "1.16.0", "vllm": "0.22.0", "torch": "2.11.0", "transformers": "5.2.0"},
              {"trl": "1.16.0", "vllm": "0.12.0", "torch": "2.11.0", "transformers": "5.17.0"}]
    fixed = 0
    for versions in broken:
        for rule_id in VERSION_RULES:
            finding = check(rule_id, _matrix_facts(versions))
            if finding.severity in (Severity.OK, Severity.SKIP):
                continue
            assert finding.requirements, (rule_id, versions)
            assert all("==" in r for r in finding.requirements), finding.fix
            after = versions | dict(r.split("==") for r in finding.requirements)
            for again in VERSION_RULES:
                assert check(again, _matrix_facts(after)).severity is Severity.OK, (rule_id, versions, after, again)
            fixed += 1
    assert fixed >= 5


def test_trl_vllm_fix_changes_the_transformers_vllm_excludes():
    finding = check("EK303", _matrix_facts({"trl": "1.16.0", "torch": "2.14.1", "transformers": "5.25.0"}))
    assert finding.requirements[0].startswith("vllm==")
    assert any(r.startswith("transformers==5.1") for r in finding.requirements), finding.fix
