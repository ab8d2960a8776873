"""Hostile input to every command (issue #13): mutated recipes, mangled metrics.jsonl, odd file types for the
recipe and the outputs, a full disk, secrets in the environment.

Every run, in process (CliRunner): an exit code of the documented set, no traceback, an exit 2 that is one line
naming the file or the option, no file changed outside the command's output, no secret in any output or file.
``lock`` and ``build`` get a fixed lock (``envkit.build.lock.lock`` patched): no network, no uv."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from envkit.build.lock import Lock
from envkit.cli import main
from tests.conftest import needs_matplotlib
from tests.mutation import mutate

RECIPES = Path(__file__).parents[1] / "recipes"
TINY = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
CANARY = "canary-5d1e-SECRET"
SECRETS = {"HF_TOKEN": f"hf_{CANARY}", "WANDB_API_KEY": CANARY, "VLLM_API_KEY": CANARY,
           "VLLM_SERVER_URL": f"https://user:{CANARY}@host:8000/v1"}
EXIT_CODES = {0, 1, 2, 130, 143}
FAKE_LOCK = Lock(
    "click==8.1.8 \\\n    --hash=sha256:" + "1" * 64 + "\n    # via envkit\n"
    "nvidia-cublas==13.1.0.3 \\\n    --hash=sha256:" + "2" * 64 + "\n    # via torch\n"
    "torch==2.13.0 \\\n    --hash=sha256:" + "4" * 64 + "\n",
    seconds=0.1, online=False,
)
SETTINGS = settings(max_examples=1000, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
IS_ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def hostile_env(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("envkit.build.lock.lock", lambda *args, **kwargs: FAKE_LOCK)
    import envkit.build.cli

    if hasattr(envkit.build.cli, "lock"):  # a module-level import, should one appear
        monkeypatch.setattr(envkit.build.cli, "lock", lambda *args, **kwargs: FAKE_LOCK)


# --- the checks every run passes --------------------------------------------------------------------------

def snapshot(root: Path, outputs=()) -> dict:
    """Every entry under root but the outputs: kind, mode, mtime and content digest (links: their target)."""
    outputs = [Path(o) for o in outputs]
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            if any(path == o or o in path.parents for o in outputs):
                continue
            st_ = path.lstat()
            if stat.S_ISLNK(st_.st_mode):
                found[str(path)] = ("link", os.readlink(path))
            elif stat.S_ISREG(st_.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if st_.st_mode & 0o444 else None
                found[str(path)] = ("file", st_.st_mode, st_.st_mtime_ns, st_.st_size, digest)
            elif stat.S_ISDIR(st_.st_mode):  # its mtime moves with an output written in it
                found[str(path)] = ("folder", st_.st_mode)
            else:
                found[str(path)] = ("other", st_.st_mode, st_.st_mtime_ns)
    return found


def no_canary_in(outputs) -> None:
    for out in map(Path, outputs):
        if out.is_symlink() or not out.exists():
            continue
        paths = [out] if not out.is_dir() else [Path(d) / f for d, _, fs in os.walk(out) for f in fs]
        for path in paths:
            if path.is_file() and not path.is_symlink():
                assert CANARY.encode() not in path.read_bytes(), path


def checked(result, names=(), root: Path | None = None, before: dict | None = None, outputs=()):
    """The contract of every run; returns the exit code (for event())."""
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in EXIT_CODES, (result.exit_code, output)
    assert "Traceback" not in output and CANARY not in output, output
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        if "Usage:" in result.stderr:  # click's own check of an option or argument: its usage, then one Error: line
            lines = [line for line in lines if line.startswith("Error:")]
        assert lines, result.stderr  # one line, or one per problem of a recipe (all reported at once)
        assert all(any(str(name) in line for name in names) for line in lines), (names, lines)
    if root is not None:
        assert snapshot(root, outputs) == before, "a file changed outside the output"
    no_canary_in(outputs)
    return result.exit_code


def invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


# --- hypothesis: mutated recipes --------------------------------------------------------------------------

# Random text leaves out the colon, so no string names a module for a reward to import (see test_recipe.py).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=":"), max_size=20)
HOSTILE_TEXT = st.sampled_from(["\x00", "\x1b[2J\x1b]0;pwned\x07", "a\nb", "\r  ok\n", "'\"", "\u202eevil", "\u2028", "~",
                                "", " ", "yes", "null", ".nan", "1e999", "../../etc/passwd", "/dev/zero", "/dev/null",
                                "data/toy.jsonl", "auto", "tiny", "bf16", "fp16", "server", "colocate", "unsloth", "h100"])
NUMBERS = st.one_of(st.integers(-3, 3), st.integers(), st.integers(-(10**40), 10**40), st.floats(),
                    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 2**63, 2**64 + 1, -(2**63) - 1]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, HOSTILE_TEXT,
                    st.sampled_from(["length", "format", "exact_answer", "envkit.train.rewards:length", "no_such_envkit_mod:f"]))
KEYS = TEXT | st.sampled_from(["name", "weight", "dir", "path", "enabled", "mode", "max_steps", "learning_rate", "build"])
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS | SCALARS, inner, max_size=4),
                      max_leaves=8)


# A value of the same type, extremes included: these pass the loader's type checks and reach the arithmetic.
SAME_TYPE = {bool: st.booleans(), int: st.integers(1, 2**70) | st.sampled_from([1, 2, 10**30, 2**63]),
             float: st.floats(min_value=5e-324, allow_infinity=False) | st.sampled_from([1e308, 1.0, 0.999999, 1e-300]),
             str: HOSTILE_TEXT | TEXT}


def _same_type(value, draw):
    kind = type(value)
    return draw(SAME_TYPE[kind]) if kind in SAME_TYPE else draw(VALUES)


def workspace(root: Path) -> Path:
    """A recipe's folder (its dataset beside it) and a file of the user's that no command may touch."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(RECIPES / "data", root / "data", dirs_exist_ok=True)
    (root / "notes.txt").write_text("the user's own file\n")
    return root


@pytest.fixture(scope="module")
def recipe_space(tmp_path_factory):
    return workspace(tmp_path_factory.mktemp("recipes"))


@SETTINGS
@given(data=st.data())
@example(data=None)  # tiny.yaml as shipped
def test_mutated_recipes_through_train_budget_and_build(recipe_space, monkeypatch, data):
    """1000 documents x (train --dry-run, budget --target h100, build --emit-only): about 80 s."""
    monkeypatch.chdir(recipe_space)  # a command writing relative to the working folder shows in the snapshot
    document = copy.deepcopy(TINY)
    for _ in range(data.draw(st.integers(1, 3)) if data else 0):
        mutate(document, data.draw, VALUES, KEYS | SCALARS, _same_type)
    recipe = recipe_space / "fuzz.yaml"
    recipe.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False))
    out = recipe_space / "ctx"
    shutil.rmtree(out, ignore_errors=True)
    for args in (["train", recipe, "--dry-run"], ["budget", recipe, "--target", "h100"],
                 ["build", "--recipe", recipe, "--target", "cpu", "--emit-only", "--output", out]):
        before = snapshot(recipe_space, [out])
        code = checked(invoke(args), [recipe, out], recipe_space, before, [out])
        event(f"{args[0]} exit {code}")


# --- hypothesis: mangled metrics.jsonl --------------------------------------------------------------------

METRIC_KEYS = st.sampled_from(["step", "reward", "rewards/length", "rewards/x\x1b[2J", "kl", "completion_length",
                               "sampling/sampling_logp_difference/mean", "sampling/sampling_logp_difference/max", "loss"])
METRIC_VALUES = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=10) | st.sampled_from([1e100, -1e100, 1e101, 0.1, 0.5, 2**53, -1]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
ROW = st.dictionaries(METRIC_KEYS, METRIC_VALUES, max_size=7).map(lambda row: json.dumps(row).encode())
STEP_ROW = st.builds(lambda step, rest: json.dumps({"step": step, **rest}).encode(),
                     st.integers(-2, 40) | st.sampled_from([2**53, 2**53 + 1, 10**30]),
                     st.dictionaries(METRIC_KEYS, METRIC_VALUES, max_size=6))
LINE = st.one_of(
    STEP_ROW, STEP_ROW, STEP_ROW, ROW,
    STEP_ROW.flatmap(lambda line: st.integers(0, len(line)).map(lambda cut: line[:cut])),  # torn
    st.binary(max_size=30), st.text(max_size=30).map(str.encode),
    st.sampled_from([b"", b"NaN", b"[]", b"null", b"\xff\xfe", b"{\"step\": 1e400}", b"[" * 5000, b"{\"step\": 1, \"a\": " + b"[" * 3000]),
)
METRICS = st.builds(lambda lines, sep: sep.join(lines), st.lists(LINE, max_size=12), st.sampled_from([b"\n", b"\r\n", b"\r"]))


@pytest.fixture(scope="module")
def run_space(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    (root / "run").mkdir()
    (root / "notes.txt").write_text("the user's own file\n")
    return root


@pytest.fixture
def cheap_pictures(monkeypatch):
    """The picture without its pixels: matplotlib's layout and rendering of text cost 0.5 s a run; the values
    that reach them are already filtered to finite numbers within ±1e100 (test_report_draws_the_extremes draws
    those for real).  savefig still writes its bytes, so the write of run.png runs."""
    Figure = pytest.importorskip("matplotlib.figure", reason="matplotlib not installed: pip install -e '.[train]'").Figure

    monkeypatch.setattr(Figure, "tight_layout", lambda self, *a, **k: None)
    monkeypatch.setattr(Figure, "savefig", lambda self, out, *a, **k: out.write(b"\x89PNG\r\n"))


@SETTINGS
@given(content=METRICS)
@example(content=b"{\"step\": 1, \"reward\": " + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
@example(content=b"[" * 100_000)
@example(content=b"\n".join(json.dumps({"step": i, "sampling/sampling_logp_difference/mean": 0.5}).encode() for i in range(4)))
def test_mangled_metrics_through_report(run_space, cheap_pictures, content):
    """1000 metrics.jsonl files: about 40 s."""
    run = run_space / "run"
    (run / "metrics.jsonl").write_bytes(content)
    picture = [run / "run.png", run / ".run.png.partial", run / "report.html", run / ".report.html.partial"]
    before = snapshot(run_space, picture)
    code = checked(invoke(["report", run]), [run], run_space, before, picture)
    event(f"exit {code}")


@pytest.mark.parametrize("values", [
    [1e100, -1e100], [1e100, 1e100], [-1e100, 5e-324], [0.0], [2**53, -(2**53)], [1e-320, -1e-320], [1e100, 0.1, -1e100, 1e-300],
])
@needs_matplotlib
def test_report_draws_the_extremes(tmp_path, values):
    """The values the filter lets through, extremes together in every panel (symlog included), drawn for real."""
    keys = ["reward", "rewards/length/mean", "kl", "completion_length", "sampling/sampling_logp_difference/mean",
            "sampling/sampling_logp_difference/max", "step_time", "tokens_per_s"]
    rows = [{"step": step, **{k: v for k in keys}} for step, v in enumerate(values)] + [{"step": 2**53, "kl": values[0]}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)))
    result = invoke(["report", tmp_path])
    checked(result, [tmp_path])
    assert result.exit_code == 0 and (tmp_path / "run.png").stat().st_size > 1000


# --- odd file types ---------------------------------------------------------------------------------------

def _odd(root: Path, kind: str, name: str | None = None) -> Path:
    path = root / (name or f"odd-{kind}")
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "devnull":
        return Path("/dev/null")
    elif kind == "dangling-link":
        path.symlink_to(root / "nowhere")
    elif kind == "link-loop":
        path.symlink_to(path)
    elif kind == "unreadable":
        if IS_ROOT:
            pytest.skip("root reads a chmod 000 file")
        path.write_text((RECIPES / "tiny.yaml").read_text())
        path.chmod(0)
    elif kind == "not-utf8":
        path.write_bytes((RECIPES / "tiny.yaml").read_text().replace("Question", "Frage März").encode("latin-1"))
    elif kind == "20mb":
        with path.open("w") as out:
            out.write((RECIPES / "tiny.yaml").read_text())
            out.write(("# " + "x" * 1022 + "\n") * 20 * 1024)
    return path


ODD = ["directory", "fifo", "devnull", "dangling-link", "link-loop", "unreadable", "not-utf8", "20mb"]


@pytest.mark.parametrize("kind", ODD)
def test_odd_recipe_files(tmp_path, monkeypatch, kind):
    root = workspace(tmp_path / "w")
    monkeypatch.chdir(root)
    recipe = _odd(root, kind)
    out = root / "ctx"
    before = snapshot(root, [out])
    for args in (["train", recipe, "--dry-run"], ["budget", recipe, "--target", "h100"], ["lock", "--recipe", recipe, "--target", "cpu"],
                 ["build", "--recipe", recipe, "--target", "cpu", "--emit-only", "--output", out], ["recipes", "show", recipe]):
        result = invoke(args)
        checked(result, [recipe], root, before, [out])
        if kind != "not-utf8":  # a latin-1 recipe is a recipe error everywhere but `recipes show`, which prints what it can
            assert result.exit_code == 2, (args, result.output)


def _reader(path: Path, into: list):
    def read():
        with open(path, "rb") as fifo:
            into.append(fifo.read())
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("kind", ["directory", "fifo", "devnull", "dangling-link", "link-loop", "file", "user-folder"])
def test_odd_output_paths(tmp_path, monkeypatch, kind):
    """lock -o, build --output and report's run.png into what is not a plain new path."""
    root = workspace(tmp_path / "w")
    monkeypatch.chdir(root)
    recipe = root / "tiny.yaml"
    shutil.copy(RECIPES / "tiny.yaml", recipe)
    if kind == "file":
        out = root / "odd-file"
        out.write_text("the user's\n")
    elif kind == "user-folder":  # a folder holding the user's files is no build context to replace
        out = root / "mine"
        out.mkdir()
        (out / "thesis.tex").write_text("years of work\n")
    else:
        out = _odd(root, kind)
    designated = [out, root / "nowhere"] if kind == "dangling-link" else [out]  # a dangling link's target is its output
    if kind == "user-folder":
        designated = []  # not to be replaced
    before = snapshot(root, designated)

    got: list[bytes] = []
    reader = _reader(out, got) if kind == "fifo" else None
    result = invoke(["lock", "--recipe", recipe, "--target", "cpu", "-o", out])
    checked(result, [out, "--output", "-o"], root, before, designated)
    if reader:
        reader.join(5)
        assert got and got[0] == FAKE_LOCK.text.encode() and result.exit_code == 0
    if kind == "dangling-link":
        shutil.rmtree(root / "nowhere", ignore_errors=True)
        Path(root / "nowhere").unlink(missing_ok=True)
    if kind == "file":
        designated = []  # lock -o replaces a file, as > does; a build context does not
    before = snapshot(root, designated)

    result = invoke(["build", "--recipe", recipe, "--target", "cpu", "--emit-only", "--output", out])
    checked(result, [out, "--output"], root, before, designated)
    if kind in ("fifo", "devnull", "link-loop", "file", "user-folder"):
        assert result.exit_code == 2, result.output
    assert not [p for p in root.iterdir() if ".tmp" in p.name], list(root.iterdir())  # no temporary context left behind


@pytest.mark.parametrize("kind", ["directory", "fifo", "devnull", "dangling-link", "link-loop", "unreadable",
                                  *(pytest.param(k, marks=needs_matplotlib) for k in ("not-utf8", "20mb"))])
def test_odd_metrics_files(tmp_path, kind):
    run = tmp_path / "run"
    run.mkdir()
    made = _odd(run, kind, "metrics.jsonl")
    if kind == "devnull":
        (run / "metrics.jsonl").symlink_to(made)
    picture = [run / "run.png", run / ".run.png.partial", run / "report.html", run / ".report.html.partial"]
    before = snapshot(tmp_path, picture)
    result = invoke(["report", run])
    checked(result, [run], tmp_path, before, picture)


@pytest.mark.parametrize("kind", ["fifo", "dangling-link", "link-loop", "devnull"])
def test_odd_run_folders(tmp_path, kind):
    run = _odd(tmp_path, kind)
    before = snapshot(tmp_path)
    checked(invoke(["report", run]), [run], tmp_path, before)


@needs_matplotlib
def test_run_png_that_is_a_folder_or_a_link(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward": 0.5}) + "\n")
    (tmp_path / "mine.png").write_text("the user's picture\n")
    (run / "run.png").symlink_to(tmp_path / "mine.png")
    before = snapshot(tmp_path, [run / "run.png", run / "report.html"])
    assert checked(invoke(["report", run]), [run], tmp_path, before, [run / "run.png", run / "report.html"]) == 0
    (run / "run.png").unlink()
    (run / "run.png").mkdir()
    before = snapshot(tmp_path)
    result = invoke(["report", run])
    assert checked(result, [run], tmp_path, before) == 1 and len(result.stderr.strip().splitlines()) == 1


def test_recipes_list_and_show_shipped():
    result = invoke(["recipes", "list"])
    assert checked(result) == 0 and "tiny" in result.output
    result = invoke(["recipes", "show", "tiny"])
    assert checked(result) == 0 and "version: 1" in result.output
    result = invoke(["recipes", "show", "\x1b[2Jnope\n"])
    assert checked(result, ["nope"]) == 2


# --- a full disk ------------------------------------------------------------------------------------------

@pytest.fixture
def full_folder(tmp_path):
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_outputs_into_a_full_folder(tmp_path, monkeypatch, full_folder):
    root = workspace(tmp_path / "w")
    monkeypatch.chdir(root)
    recipe = root / "tiny.yaml"
    shutil.copy(RECIPES / "tiny.yaml", recipe)
    (full_folder / "kept.txt").write_text("already here\n")
    # 64 KiB cannot hold a build context (envkit's source alone is larger)
    result = invoke(["build", "--recipe", recipe, "--target", "cpu", "--emit-only", "--output", full_folder / "ctx"])
    checked(result, [full_folder / "ctx", "--output"], outputs=[full_folder])
    assert result.exit_code == 2 and sorted(p.name for p in full_folder.iterdir()) == ["kept.txt"]
    filler = os.open(full_folder / "filler", os.O_WRONLY | os.O_CREAT)  # then no byte is left
    try:
        while os.write(filler, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(filler)
    before = snapshot(full_folder, [full_folder / "lock.txt"])
    result = invoke(["lock", "--recipe", recipe, "--target", "cpu", "-o", full_folder / "lock.txt"])
    checked(result, [full_folder / "lock.txt"], full_folder, before, [full_folder / "lock.txt"])
    assert result.exit_code == 2 and not (full_folder / "lock.txt").exists()
    assert not [p for p in full_folder.iterdir() if p.name.startswith(".")]  # no temporary file left
    result = invoke(["build", "--recipe", recipe, "--target", "cpu", "--emit-only", "--output", full_folder / "ctx"])
    checked(result, [full_folder / "ctx", "--output"], full_folder, snapshot(full_folder, [full_folder / "ctx"]), [full_folder / "ctx"])
    assert result.exit_code == 2


# --- the secrets in the environment -----------------------------------------------------------------------

def test_no_secret_reaches_a_successful_run(tmp_path, monkeypatch):
    root = workspace(tmp_path / "w")
    monkeypatch.chdir(root)
    recipe = root / "tiny.yaml"
    shutil.copy(RECIPES / "tiny.yaml", recipe)
    out, locked = root / "ctx", root / "lock.txt"
    runs = [["train", recipe, "--dry-run"], ["budget", recipe, "--target", "h100"], ["lock", "--recipe", recipe, "--target", "cpu", "-o", locked],
            ["build", "--recipe", recipe, "--target", "cpu", "--emit-only", "--output", out], ["recipes", "list"], ["recipes", "show", recipe]]
    for args in runs:
        before = snapshot(root, [out, locked])
        assert checked(invoke(args), [], root, before, [out, locked]) == 0, args
    assert (out / "Dockerfile").is_file() and locked.read_text() == FAKE_LOCK.text
