"""Find the newest coherent stack (torch, vllm, trl, transformers, peft, bitsandbytes) under constraints.

The search walks TRL releases newest first, then the vLLM releases inside the
TRL's `vllm` extra, takes the torch each vLLM pins, and fills the rest with the
newest release whose declared requirements admit the chosen ones.  Every
rejection is recorded, so "no solution" comes with the exact reasons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from envkit.errors import UsageError
from envkit.knowledge import (cc_tuple, curated, gpu_catalog, inside_checks, late_vllm_gpu, pdl_switch, torch_covers,
                              vllm_cc_floor)
from envkit.knowledge.matrix import Matrix, spec


# The Python of envkit's default base images (envkit/knowledge/images.json): what a stack is solved for.
DEFAULT_PYTHON = "3.12"


@dataclass(frozen=True)
class Constraints:
    trl: str | None = None
    vllm: str | None = None
    torch: str | None = None
    target: str | None = None  # catalog GPU key
    python: str = DEFAULT_PYTHON
    backend: str = "trl"  # "unsloth": the stack also holds unsloth + unsloth_zoo, inside every cap they declare

    def __post_init__(self) -> None:
        """User input: a constraint that does not parse is an error, not "no constraint"."""
        for package in ("trl", "vllm", "torch"):
            self.of(package)
        if not re.fullmatch(r"3\.\d{1,2}", self.python):
            raise BadConstraint(f"--python {self.python!r}: expected a Python 3 version such as 3.12")

    def of(self, package: str) -> SpecifierSet:
        """A bare version means ==version; otherwise a specifier (">=0.27,<0.30")."""
        text = getattr(self, package)
        if not text:
            return SpecifierSet()
        try:
            return SpecifierSet(f"=={text}" if text[0].isdigit() else text)
        except InvalidSpecifier:
            raise BadConstraint(f"--{package} {text!r}: not a version (1.16.0) or specifier (>=0.27,<0.30)") from None


@dataclass
class Solution:
    versions: dict[str, str]
    cuda: str | None
    notes: list[str] = field(default_factory=list)

    def requirements(self) -> list[str]:
        return [f"{name}=={version}" for name, version in self.versions.items()]


class BadConstraint(UsageError, ValueError):
    """A constraint given by the user that is not a version, specifier or Python version."""


class NoSolution(UsageError):
    """No stack meets the constraints (a target, --torch, --python, a backend); ``reasons`` says why, one each."""

    def __init__(self, reasons: list[str]):
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def _python_ok(rec: dict, python: str) -> bool:
    return spec(rec.get("requires_python")).contains(python + ".0", prereleases=True)


def _newest(matrix: Matrix, package: str, accept) -> str | None:
    return next((str(v) for v, rec in matrix.releases(package) if accept(v, rec)), None)


@dataclass(frozen=True)
class Caps:
    """What a backend adds to the stack: its own pins, and the bounds its packages declare on the rest."""

    pins: tuple[tuple[str, str], ...] = ()
    bounds: tuple[tuple[str, SpecifierSet], ...] = ()

    def of(self, package: str) -> SpecifierSet:
        return next((b for name, b in self.bounds if name == package), SpecifierSet())

    def describe(self) -> str:
        return " + ".join(f"{name} {version}" for name, version in self.pins)


# The stack packages whose bounds a backend's packages declare (Unsloth: all of them; issue #18).
CAPPED = ("trl", "transformers", "torch", "datasets", "peft", "bitsandbytes")
UNSLOTH = ("unsloth", "unsloth_zoo")


def backend_caps(matrix: Matrix, constraints: Constraints) -> list[Caps]:
    """The backend's options, newest first: nothing to add for TRL; for Unsloth each unsloth release with the
    newest unsloth_zoo it admits, and the intersection of what both declare on trl, transformers, torch, datasets."""
    if constraints.backend == "trl":
        return [Caps()]
    options = []
    for version, rec in matrix.releases("unsloth"):
        zoo_spec = spec(rec["requires"].get("unsloth-zoo") or rec["requires"].get("unsloth_zoo"))
        zoo = _newest(matrix, "unsloth_zoo",
                      lambda v, z: zoo_spec.contains(v, prereleases=True) and _python_ok(z, constraints.python))
        if zoo is None or not _python_ok(rec, constraints.python):
            continue
        declared = [rec["requires"], matrix.record("unsloth_zoo", zoo)["requires"]]
        bounds = tuple((name, spec(",".join(filter(None, (d.get(name) for d in declared))))) for name in CAPPED)
        options.append(Caps((("unsloth", str(version)), ("unsloth_zoo", zoo)), bounds))
    return options


def solve(constraints: Constraints, matrix: Matrix | None = None) -> Solution:
    matrix = matrix or Matrix.shipped()
    reasons: list[str] = []
    gpu = gpu_catalog()[constraints.target] if constraints.target else None
    cc = cc_tuple(gpu["compute_capability"]) if gpu else None
    if cc and cc < cc_tuple(vllm_cc_floor()):
        sm = gpu["compute_capability"].replace(".", "")
        raise NoSolution([f"{constraints.target} (sm_{sm}) is below vLLM's minimum compute capability"])
    options = backend_caps(matrix, constraints)
    if not options:
        raise NoSolution([f"no {constraints.backend} release for Python {constraints.python} in the matrix"])
    for caps in options:
        found = _solve_with(matrix, constraints, cc, caps, reasons)
        if found:
            return found
    raise NoSolution(list(dict.fromkeys(reasons)))


def _solve_with(matrix: Matrix, constraints: Constraints, cc, caps: Caps, reasons: list[str]) -> Solution | None:
    trls = [(v, r) for v, r in matrix.releases("trl") if constraints.of("trl").contains(v, prereleases=True)]
    if not trls:
        raise NoSolution([f"no trl release matches {constraints.trl}"])
    capped = [(v, r) for v, r in trls if caps.of("trl").contains(v, prereleases=True)]
    if not capped:
        reasons.append(f"{caps.describe()} caps trl at {caps.of('trl')}: "
                       f"no trl release matches {constraints.trl or 'it'}")
    for trl_version, trl_rec in capped:
        if not _python_ok(trl_rec, constraints.python):
            reasons.append(f"trl {trl_version} needs Python {trl_rec['requires_python']}")
            continue
        window = spec(trl_rec.get("vllm_extra"))
        wanted = constraints.of("vllm")
        vllms = [v for v, _ in matrix.releases("vllm")
                 if wanted.contains(v, prereleases=True) and window.contains(v, prereleases=True)]
        if not vllms:
            asked = f"vllm {constraints.vllm} is" if constraints.vllm else "no known vllm is"
            reasons.append(f"{asked} outside trl {trl_version}'s window {window or '(none declared)'}")
        # A backend's verified vLLM first (Unsloth declares no vLLM bound; EK306), then the rest, newest first.
        for vllm_version in sorted(vllms, key=lambda v: not _verified(caps, str(v))):
            found = _complete(matrix, constraints, cc, str(trl_version), str(vllm_version), reasons, caps)
            if found:
                return found
    return None


def _complete(matrix: Matrix, c: Constraints, cc, trl: str, vllm: str, reasons: list[str],
              caps: Caps = Caps()) -> Solution | None:
    torch = matrix.torch_pinned_by(vllm)
    if torch is None or matrix.record("torch", torch) is None:
        reasons.append(f"vllm {vllm} pins a torch the matrix does not know ({torch})")
        return None
    if not c.of("torch").contains(torch, prereleases=True):
        reasons.append(f"vllm {vllm} pins torch=={torch}, not {c.torch}")
        return None
    if not caps.of("torch").contains(torch, prereleases=True):
        reasons.append(f"vllm {vllm} pins torch=={torch}, outside {caps.describe()}'s torch{caps.of('torch')}")
        return None
    if cc and cc < cc_tuple(vllm_cc_floor(vllm)):
        reasons.append(f"vllm {vllm} needs compute capability {vllm_cc_floor(vllm)}+, above {c.target}'s (EK104)")
        return None
    late = late_vllm_gpu(c.target)
    if late and Version(vllm) < Version(late["bf16_from"]):
        reasons.append(f"vllm {vllm} predates vLLM's {c.target} support (from {late['bf16_from']}, EK401)")
        return None
    cuda = matrix.record("torch", torch).get("cuda")
    if cc and not torch_covers(torch, cuda, cc):
        reasons.append(f"torch {torch} (CUDA {cuda}) ships no kernels for {c.target}")
        return None
    need = curated("sm100_min_torch_for_vllm")  # Unsloth's rule alone (EK403)
    if caps.pins and cc and cc[0] == need["compute_capability_major"] and Version(torch) < Version(need["min_torch"]):
        reasons.append(f"{caps.describe()} refuses torch {torch} under vLLM on {c.target} "
                       f"(needs >= {need['min_torch']})")
        return None
    fits = [str(v) for v, rec in matrix.releases("transformers")
            if matrix.requirement("vllm", vllm, "transformers").contains(v)
            and matrix.requirement("trl", trl, "transformers").contains(v) and caps.of("transformers").contains(v)
            and _python_ok(rec, c.python)]
    if not fits:
        reasons.append(f"no transformers fits both vllm {vllm} and trl {trl}"
                       + (f" and {caps.describe()}" if caps.pins else ""))
        return None
    # The newest transformers whose set stays outside every known incompatibility (EK603: transformers 5.24.0
    # refuses the newest peft, 0.21.2); the newest that fits when none does (the lock's repairs then say why).
    sets = (_with_peft(matrix, c, caps, torch, vllm, trl, t) for t in fits)
    versions = next((v for v in sets if not inside_checks(v)), None) or _with_peft(matrix, c, caps, torch, vllm, trl,
                                                                                    fits[0])
    # datasets is left to the resolver unless a backend caps it: then the newest inside trl's and the caps
    if caps.pins:
        datasets = _newest(matrix, "datasets", lambda v, rec: matrix.requirement("trl", trl, "datasets").contains(v)
                           and caps.of("datasets").contains(v) and _python_ok(rec, c.python))
        if datasets is None:
            reasons.append(f"no datasets fits both trl {trl} and {caps.describe()}")
            return None
        versions |= {"datasets": datasets, **dict(caps.pins)}
    return Solution(versions, cuda, _notes(matrix, c, trl, vllm) + _unverified(caps, vllm))


def _with_peft(matrix: Matrix, c: Constraints, caps: Caps, torch: str, vllm: str, trl: str,
               transformers: str) -> dict[str, str]:
    """The stack's pinned versions with ``transformers``: peft and bitsandbytes the newest that admit it."""
    admits = lambda package: lambda v, rec: (  # noqa: E731 - a small predicate factory
        caps.of(package).contains(v, prereleases=True)
        and spec(rec["requires"].get("torch")).contains(torch, prereleases=True)
        and spec(rec["requires"].get("transformers")).contains(transformers, prereleases=True)
        and _python_ok(rec, c.python)
    )
    versions = {"torch": torch, "vllm": vllm, "trl": trl, "transformers": transformers}
    for package in ("peft", "bitsandbytes"):
        chosen = _newest(matrix, package, admits(package))
        if chosen:
            versions[package] = chosen
    return versions


def _verified(caps: Caps, vllm: str) -> bool:
    """The backend's release was seen working with this vLLM (curated unsloth_vllm_verified); True without one."""
    unsloth = dict(caps.pins).get("unsloth")
    return unsloth is None or any(Version(p["unsloth"]) == Version(unsloth) and Version(p["vllm"]) == Version(vllm)
                                  for p in curated("unsloth_vllm_verified")["pairs"])


def _unverified(caps: Caps, vllm: str) -> list[str]:
    """A note when the backend's release was never seen working with this vLLM."""
    if _verified(caps, vllm):
        return []
    unsloth = dict(caps.pins)["unsloth"]
    known = ", ".join(f"vllm {p['vllm']}" for p in curated("unsloth_vllm_verified")["pairs"]
                      if Version(p["unsloth"]) == Version(unsloth))
    return [f"unsloth {unsloth} + vllm {vllm}: no evidence fast_inference works "
            f"(verified: {known or 'none for this unsloth'}; EK306)"]


def _notes(matrix: Matrix, c: Constraints, trl: str, vllm: str) -> list[str]:
    notes = []
    window = spec(matrix.record("trl", trl).get("vllm_extra"))
    if not any(s.operator in ("<", "<=", "==") for s in window):
        trl_date, vllm_date = matrix.record("trl", trl)["uploaded"], matrix.record("vllm", vllm)["uploaded"]
        if vllm_date > trl_date:
            notes.append(f"trl {trl} declares vllm{window} with no upper bound; "
                         f"vllm {vllm} came out after it (untested pairing)")
    late = late_vllm_gpu(c.target)
    if late:
        block = late["fp8_block_scaled"]
        fp8 = (f"FP8 checkpoints trap before vllm {late['fp8_from']}" if Version(vllm) < Version(late["fp8_from"])
               else f"block-scaled FP8 may trap ({block['issue']}: {block['env']}={block['value']})")
        notes.append(f"vllm {vllm} runs bf16 on {c.target}; {fp8}; "
                     "backend unsloth generates without vLLM there (EK401)")
    pdl = pdl_switch(gpu_catalog()[c.target]["compute_capability"] if c.target else None, vllm)
    if pdl:
        notes.append(f"set {pdl[0]}={pdl[1]} (LoRA PDL on SM100, EK402)")
    elif pdl is None:
        notes.append(f"vllm {vllm} < {curated('pdl')['env_from_vllm']}: no setting turns LoRA PDL off on SM100 "
                     "(EK402; backend unsloth patches it)")
    return notes
