"""A lock as the facts of an environment that installed it, for the doctor's package rules (issue #23: what envkit
installs passes envkit's own doctor).

Versions come from the lock's pins; Requires-Dist from the matrix's records (the bounds it tracks, trl's vllm extra
included); torch's CUDA from the stack; xformers' build from curated xformers_torch_build.  What only installed
files can say (linked libraries, glibc symbol versions) stays unknown, and the rules that need it skip.
"""

from __future__ import annotations

from packaging.utils import canonicalize_name

from envkit.build.stack import Stack
from envkit.facts import Driver, Facts, Host, Package
from envkit.knowledge import PROBED_PACKAGES, curated
from envkit.knowledge.matrix import Matrix
from envkit.probe.target import with_target
from envkit.rules import DOCTOR_CHECKS, Finding, Severity


def lock_facts(pins: dict[str, str], stack: Stack, matrix: Matrix) -> Facts:
    """The facts of ``stack``'s image once its lock (name -> version) is installed."""
    installed = {canonicalize_name(name): version for name, version in pins.items()}
    builds = curated("xformers_torch_build")["builds"]
    packages = {}
    for name in PROBED_PACKAGES:
        version = installed.get(canonicalize_name(name))
        if version is None:
            continue
        record = matrix.record(name, version) or {}
        requires = [dep + ("" if spec == "*" else spec) for dep, spec in record.get("requires", {}).items()]
        if record.get("vllm_extra"):
            requires.append(f'vllm{record["vllm_extra"]}; extra == "vllm"')
        packages[name] = Package(version=version, requires=requires, cuda=stack.cuda if name == "torch" else None,
                                 built_for_torch=builds.get(version) if name == "xformers" else None)
    facts = Facts(host=Host(os="Linux", arch=stack.arch, python=stack.python), driver=Driver(source="none"),
                  packages=packages, installed=installed)
    return with_target(facts, stack.target) if stack.target != "cpu" else facts


def lock_findings(pins: dict[str, str], stack: Stack, matrix: Matrix) -> list[Finding]:
    """The doctor's package findings (section "packages") on ``stack``'s lock that warn or fail; a check that
    matters only to runs generating with vLLM is left out where the lock has no vLLM on purpose (GB10 + Unsloth:
    EK303 would say "TRL will generate with model.generate", which is the plan)."""
    facts = lock_facts(pins, stack, matrix)
    use_vllm = "vllm" in facts.installed
    return [f for f in DOCTOR_CHECKS.run(facts) if f.section == "packages"
            and f.severity in (Severity.WARN, Severity.FAIL) and (use_vllm or not DOCTOR_CHECKS[f.id].needs_vllm)]
