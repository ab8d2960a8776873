"""Package rules: the version windows the installed packages declare about each other."""

from __future__ import annotations

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from envkit.facts import Facts
from envkit.knowledge import PROBED_PACKAGES, curated
from envkit.knowledge.matrix import Matrix
from envkit.rules.base import Outcome, fail, ok, rule, skip, warn
from envkit.rules.requirements import installed_version, requirement_on, requirements, satisfied
from envkit.rules.solved import solved_repair

# Pairs that a dedicated rule explains; the generic requirement check leaves them to it.
EXPLAINED = {
    "vllm": {"torch", "transformers"},
    "unsloth": {"trl", "transformers", "datasets", "xformers"},  # xformers: EK307 (Unsloth runs without it)
    "unsloth-zoo": {"trl", "transformers", "datasets"},
}
UNSLOTH_WINDOWS = ("trl", "transformers", "datasets")


def trl_vllm_window(facts: Facts) -> SpecifierSet | None:
    trl = facts.package("trl")
    req = trl and requirement_on(trl, "vllm", facts, extra="vllm")
    return req.specifier if req else None


# What `envkit train` imports (the train extra); EK300 warns while one is missing.
TRAIN_REQUIRED_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")


@rule("EK300", "train-stack", "packages")
def train_stack(facts: Facts) -> Outcome:
    """The training stack (torch, transformers, trl, peft, accelerate, datasets) is installed.

    envkit itself stays light; `envkit train` needs the `train` extra (vLLM
    generation also the `vllm` extra, Linux).  Fix: pip install 'envkit[train]',
    or use the envkit image.
    """
    missing = [name for name in TRAIN_REQUIRED_PACKAGES if not facts.package(name)]
    if missing:
        return warn(f"training stack incomplete: {', '.join(missing)} missing", "", "pip install 'envkit[train]'  (or use the envkit image)")
    versions = ", ".join(f"{n} {facts.package(n).version}" for n in TRAIN_REQUIRED_PACKAGES)
    return ok("training stack installed", versions)


@rule("EK301", "vllm-torch", "packages", needs_vllm=True)
def vllm_torch(facts: Facts) -> Outcome:
    """The installed torch is the one vLLM pins.

    Every vLLM release pins one exact torch (vllm 0.26.0: torch==2.11.0), read
    here from the installed vllm's own metadata.  A different torch fails at
    import (undefined symbols in vllm._C).  Fix: install the vLLM release built
    for your torch (from envkit's matrix), or the torch vLLM pins.
    """
    vllm, torch = facts.package("vllm"), facts.package("torch")
    if not vllm:
        return skip("vllm not installed")
    req = requirement_on(vllm, "torch", facts)
    if req is None:
        return skip(f"vllm {vllm.version} declares no torch requirement")
    pin = f"torch{req.specifier}"
    if not torch:
        return fail(f"vllm {vllm.version} needs {pin}; torch is not installed", "", f"pip install '{pin}'", (pin,))
    evidence = f"vllm {vllm.version} requires {pin}; torch {torch.version} installed"
    if satisfied(req, torch.version):
        return ok(f"torch {torch.version} matches vllm {vllm.version}", evidence)
    title = f"vllm {vllm.version} is built for {pin}, not torch {torch.version}"
    new_vllm = solved_repair(facts, "vllm", ("trl", "torch"))
    new_torch = solved_repair(facts, "torch", ("trl", "vllm"))
    if new_vllm:
        alternative = f"; or keep vllm: {new_torch.command()}" if new_torch else ""
        return fail(title, evidence, new_vllm.command() + alternative, new_vllm.requirements)
    if new_torch:
        return fail(title, evidence, new_torch.command(), new_torch.requirements)
    return fail(title, evidence, f"pip install '{pin}'", (pin,))


@rule("EK302", "vllm-transformers", "packages", needs_vllm=True)
def vllm_transformers(facts: Facts) -> Outcome:
    """transformers lies inside the window vLLM declares.

    vLLM excludes transformers releases it cannot load models with (vllm
    0.22.0: !=5.0.*...!=5.4.*, vllm 0.26.0: >=5.5.3).  Fix: install the newest
    transformers inside that window and TRL's.
    """
    vllm = facts.package("vllm")
    if not vllm:
        return skip("vllm not installed")
    req = requirement_on(vllm, "transformers", facts)
    have = installed_version(facts, "transformers")
    if req is None or not have:
        return skip("no transformers requirement to check" if req is None else "transformers not installed")
    evidence = f"vllm {vllm.version} requires transformers{req.specifier}; transformers {have} installed"
    if satisfied(req, have):
        return ok(f"transformers {have} fits vllm {vllm.version}", evidence)
    title = f"transformers {have} is outside vllm {vllm.version}'s window"
    repair = solved_repair(facts, "transformers", ("vllm", "trl", "torch"), ("trl", "torch"), ("trl",))
    if repair:
        return fail(title, evidence, repair.command(), repair.requirements)
    target = f"transformers{req.specifier}"
    return fail(title, evidence, f"pip install '{target}'", (target,))


@rule("EK303", "trl-vllm", "packages", needs_vllm=True)
def trl_vllm(facts: Facts) -> Outcome:
    """vLLM lies inside the window TRL supports.

    TRL declares the vLLM versions it supports in its `vllm` extra (TRL 1.16.0:
    vllm>=0.22.0,<=0.31.0) and re-checks them at import (trl 1.16: a warning).  The fix names the
    newest vLLM inside that window whose torch pin matches the installed torch
    (or else the torch it pins), with every other stack package the solver must change to fit it.

    A failure, not a warning, although TRL only warns: outside the window real pairs break at
    `from trl import GRPOTrainer`, in both directions.  Below it, trl 1.16.0's grpo_trainer imports
    generation/vllm_client.py, which imports vllm.utils.network_utils (absent before vLLM 0.12.0) and
    vllm.distributed.weight_transfer.nccl_engine (absent before 0.16.0) whenever vLLM is installed.  Above
    it, trl 0.24.0 (window ==0.10.2) imports GuidedDecodingParams from vllm.sampling_params, which vLLM
    removed in 0.12.0.  (trl 1.16.0's vLLM calls, imports and the colocate path
    llm_engine.model_executor.driver_worker, are all still present in vLLM 0.32.0, 0.33.0 and 0.34.0: no
    break is known there yet, but TRL has not tested them.)  Read in the trl 0.24.0 and 1.16.0 wheels, the
    vLLM sdists 0.10.2-0.33.0 and the 0.34.0 wheel (2026-12-07: trl 1.16.0's 31 names from vllm modules).
    """
    trl = facts.package("trl")
    if not trl:
        return skip("trl not installed")
    window = trl_vllm_window(facts)
    if window is None:
        return skip(f"trl {trl.version} declares no vllm extra")
    vllm = facts.package("vllm")
    repair = solved_repair(facts, "vllm", ("trl", "torch"), ("trl",))
    fix, requirements_ = (repair.command(), repair.requirements) if repair else (
        f"no known vllm fits {window}; refresh the matrix (envkit matrix refresh)", ())
    if not vllm:
        if not facts.visible_gpus():
            return skip("vllm not installed, and no GPU to run it: generation uses model.generate")
        return warn("vllm not installed: TRL will generate with model.generate", f"trl {trl.version} supports vllm{window}", fix, requirements_)
    evidence = f"trl {trl.version} supports vllm{window}; vllm {vllm.version} installed"
    if window.contains(Version(vllm.version), prereleases=True):
        return ok(f"vllm {vllm.version} is inside trl {trl.version}'s window", evidence)
    return fail(f"vllm {vllm.version} is outside trl {trl.version}'s window {window}", evidence, fix, requirements_)


@rule("EK304", "requirements", "packages")
def stack_requirements(facts: Facts) -> Outcome:
    """Every stack package's own requirements are installed and satisfied (pip check).

    Computed from the Requires-Dist of the installed stack packages and the
    versions of every installed distribution, markers evaluated for the
    machine in the facts.  A conflict between stack packages (torch, vllm,
    transformers, triton, flashinfer...) fails: those break imports.  A
    conflict on any other dependency (setuptools, numba...) and a missing
    dependency warn: pip check would complain, imports usually work.  Pairs
    explained by a dedicated rule (vllm/torch, vllm/transformers,
    unsloth/trl...) are left to it.
    """
    conflicts, missing = [], []
    for name, package in sorted(facts.packages.items()):
        skip_deps = EXPLAINED.get(canonicalize_name(name), set())
        for req in requirements(package, facts):
            dep = canonicalize_name(req.name)
            if dep in skip_deps:
                continue
            have = installed_version(facts, dep)
            if have is None:
                missing.append((f"{name} {package.version} needs {req.name}{req.specifier} (missing)", req))
            elif not satisfied(req, have):
                conflicts.append((f"{name} {package.version} needs {req.name}{req.specifier}, have {have}", req))
    checked = len(facts.packages)
    if not checked:
        return skip("no stack package installed")
    stack = {canonicalize_name(n) for n in PROBED_PACKAGES} | {"torchvision", "torchaudio"}
    breaking = [item for item in conflicts if canonicalize_name(item[1].name) in stack]
    problems = conflicts + missing
    repair = _merged(r for _, r in (breaking or problems))
    fix = "pip install " + " ".join(f"'{r}'" for r in repair)
    if breaking:
        return fail(f"{len(breaking)} version conflict(s) between stack packages", _listing(breaking + problems), fix, repair)
    if problems:
        title = ", ".join(
            part for part in (f"{len(conflicts)} conflict(s) outside the stack" if conflicts else "",
                              f"{len(missing)} requirement(s) not installed" if missing else "") if part
        )
        return warn(title, _listing(problems), fix, repair)
    return ok(f"requirements of {checked} stack package(s) satisfied")


def _merged(reqs) -> tuple[str, ...]:
    """One requirement per package, the specifiers of all its mentions intersected."""
    merged: dict[str, tuple[str, SpecifierSet]] = {}
    for req in reqs:
        key = canonicalize_name(req.name)
        name, spec = merged.get(key, (req.name, SpecifierSet()))
        merged[key] = (name, spec & req.specifier)
    return tuple(f"{name}{spec}" for name, spec in merged.values())


def _listing(items: list[tuple[str, object]], limit: int = 6) -> str:
    lines = [text for text, _ in items[:limit]]
    if len(items) > limit:
        lines.append(f"... and {len(items) - limit} more")
    return "; ".join(lines)


@rule("EK305", "unsloth-windows", "packages")
def unsloth_windows(facts: Facts) -> Outcome:
    """Unsloth's declared trl / transformers / datasets windows hold.

    Unsloth patches TRL and transformers internals, so each release caps them
    (unsloth 2026.10.9: trl<=1.15.0, datasets<5.0.0): it cannot sit beside TRL
    1.16 or datasets 5.x.  Fix: install the versions inside its window, or an
    Unsloth release that supports yours.
    """
    present = [n for n in ("unsloth", "unsloth_zoo") if facts.package(n)]
    if not present:
        return skip("unsloth not installed")
    broken = []
    for name in present:
        package = facts.package(name)
        for dep in UNSLOTH_WINDOWS:
            req = requirement_on(package, dep, facts)
            have = installed_version(facts, dep)
            if req and have and not satisfied(req, have):
                broken.append((f"{name} {package.version} needs {dep}{req.specifier}, have {have}", req))
    versions = ", ".join(f"{n} {facts.package(n).version}" for n in present)
    if broken:
        fixes = tuple(dict.fromkeys(f"{r.name}{r.specifier}" for _, r in broken))
        return fail(
            "Unsloth's version windows are not met",
            _listing(broken),
            "pip install " + " ".join(f"'{f}'" for f in fixes) + "  (or upgrade unsloth unsloth_zoo)",
            fixes,
        )
    return ok(f"{versions}: trl, transformers and datasets inside their windows")


@rule("EK307", "torch-extension-build", "packages")
def torch_extension_build(facts: Facts) -> Outcome:
    """A compiled torch extension (xformers) was built for the installed torch.

    Extensions link torch's C++ ABI, which changes with every minor release,
    yet their metadata only sets a floor: xformers 0.0.35 declares torch>=2.10
    and its binary is built for torch 2.10 alone (xformers/cpp_lib.json).  With
    another torch it does not load; Unsloth then falls back to PyTorch
    attention, code that imports it directly fails.  Fix: install the torch it
    was built for, or an xformers built for yours, or pip uninstall xformers.
    """
    xformers, torch = facts.package("xformers"), facts.package("torch")
    if xformers is None or torch is None or not xformers.built_for_torch:
        return skip("needs xformers (with its build record) and torch")
    built = Version(xformers.built_for_torch)
    evidence = f"xformers {xformers.version} built for torch {built}; torch {torch.version} installed; {curated('xformers_torch_build')['source']}"
    if not _same_minor(built, torch.version):
        return warn(f"xformers {xformers.version} was built for torch {built.public}, not {Version(torch.version).public}",
                    evidence, f"pip install 'torch=={built.public}' (with a matching vllm), or pip uninstall xformers "
                              "(Unsloth uses PyTorch attention without it)")
    return ok(f"xformers {xformers.version} built for torch {built.public}", evidence)


def _same_minor(one: Version | str, other: Version | str) -> bool:
    return Version(str(one)).release[:2] == Version(str(other)).release[:2]


def xformers_lock_repair(pins: dict[str, str]) -> tuple[list[str], list[str]]:
    """(requirements, exclusions) that keep a lock (name -> version) out of EK307, from the curated builds of
    each xformers release: the newest release built for the locked torch, or no xformers where none is (Unsloth
    runs without it).  Nothing for an xformers the table does not know."""
    builds = {Version(v): torch for v, torch in curated("xformers_torch_build")["builds"].items()}
    xformers, torch = pins.get("xformers"), pins.get("torch")
    if not (xformers and torch) or Version(xformers) not in builds or _same_minor(builds[Version(xformers)], torch):
        return [], []
    fitting = [v for v, built in builds.items() if _same_minor(built, torch)]
    return ([f"xformers=={max(fitting)}"], []) if fitting else ([], ["xformers"])


@rule("EK605", "datasets-pyarrow-pickle", "packages")
def datasets_pyarrow_pickle(facts: Facts) -> Outcome:
    """datasets can fingerprint a dataset built in memory under the installed pyarrow.

    datasets fingerprints a new dataset (Dataset.from_list / from_dict, map)
    by pickling with dill. dill pickles a module by reference only when it
    lies under a Python prefix, in a folder whose path has 'site-packages',
    or is an extension; pyarrow installed elsewhere (pip install --target DIR
    on PYTHONPATH) is pickled by value, whole, and fails on its MonthDayNano
    type ("PicklingError: Can't pickle <class 'MonthDayNano'>: it's not found
    as builtins.MonthDayNano"), with pyarrow 25 and 26 alike.  GRPO scripts
    that build their prompts in memory stop before training.  Fix: install
    into a virtualenv, or into a folder named site-packages.
    """
    known = curated("dill_module_by_value")
    datasets, pyarrow = facts.installed.get("datasets"), facts.installed.get("pyarrow")
    if not (datasets and pyarrow):
        return skip("needs datasets and pyarrow installed")
    evidence = f"datasets {datasets}, pyarrow {pyarrow}; {known['source']} (checked {known['checked']})"
    if "pyarrow" in facts.outside_site_packages:
        return warn(f"pyarrow {pyarrow} is installed outside site-packages: datasets {datasets} cannot build a dataset "
                    "in memory (dill pickles pyarrow by value)", evidence,
                    "install into a virtualenv (python -m venv), or pip install --target DIR/site-packages and put "
                    "that folder on PYTHONPATH")
    return ok(f"pyarrow {pyarrow} is installed where dill pickles it by reference", evidence)


@rule("EK308", "glibc", "packages")
def glibc(facts: Facts) -> Outcome:
    """The system's glibc is as new as the compiled packages ask (vLLM, torch, flash-attn...).

    A wheel's manylinux tag names the oldest glibc it runs on (vllm 0.20.x:
    manylinux_2_35; 0.22.0 on: manylinux_2_28), and the probe also reads the
    glibc symbol versions its extensions need, since a tag can understate
    them (vllm#41103: a manylinux_2_31 wheel whose _C.abi3.so asks for
    GLIBC_2.34).  An older system glibc fails at import: "version
    `GLIBC_2.34' not found" (vllm#39609).  Fix: a newer OS or base image
    (Ubuntu 22.04 has glibc 2.35, 24.04 2.39), or a release whose wheels fit.
    """
    have = facts.host.glibc
    needing = {name: p.glibc_needed for name, p in sorted(facts.packages.items()) if p.glibc_needed}
    if not have or not needing:
        return skip("needs the system's glibc and a compiled package's needs")
    evidence = f"glibc {have}; " + ", ".join(f"{n} {facts.packages[n].version} needs {v}" for n, v in needing.items())
    short = {n: v for n, v in needing.items() if Version(v) > Version(have)}
    if not short:
        return ok(f"glibc {have} runs the compiled packages", evidence)
    name, need = max(short.items(), key=lambda item: Version(item[1]))
    older = _release_fitting_glibc(name, have, facts.host.arch)
    alternative = f", or pip install '{name}=={older}' (its wheels need at most glibc {have})" if older else ""
    return fail(f"{name} {facts.packages[name].version} needs glibc {need}; this system has {have}", evidence,
                f"use an OS or base image with glibc >= {need} (Ubuntu 22.04: 2.35, 24.04: 2.39){alternative}")


def _release_fitting_glibc(name: str, have: str, arch: str) -> str | None:
    """The newest release of ``name`` in the matrix whose Linux wheel for ``arch`` installs on glibc ``have``."""
    return next((str(v) for v, rec in Matrix.shipped().releases(name)
                 if arch in rec.get("glibc", {}) and Version(rec["glibc"][arch]) <= Version(have)), None)


@rule("EK309", "flash-attn-torch", "packages")
def flash_attn_torch(facts: Facts) -> Outcome:
    """flash-attn was built against the installed torch.

    flash-attn compiles against one torch's C++ API and declares no torch
    version at all; beside another torch its extension fails at import with
    "undefined symbol: _ZN3c10..." (transformers then refuses
    attn_implementation='flash_attention_2').  The probe compares the torch
    symbols its extension links with those the installed torch exports (ELF
    dynamic symbols, no import).  Fix: rebuild it for this torch (pip install
    --no-build-isolation --no-cache-dir --force-reinstall flash-attn), or
    pip uninstall flash-attn (vLLM ships its own flash attention).
    """
    flash, torch = facts.package("flash-attn"), facts.package("torch")
    if not flash or not torch:
        return skip("needs flash-attn and torch")
    missing = flash.missing_torch_symbols
    if missing:
        return fail(f"flash-attn {flash.version} was built against another torch than {torch.version}",
                    f"{len(missing)}+ torch symbols it links are not in torch {torch.version}: {', '.join(missing[:3])}",
                    "pip install --no-build-isolation --no-cache-dir --force-reinstall flash-attn, or pip uninstall flash-attn")
    return ok(f"flash-attn {flash.version} links only symbols torch {torch.version} exports")
