"""Recipes: each class of mistake is one line on stderr and exit 2; random YAML never escapes as a traceback."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from envkit.cli import main
from envkit.recipe.load import RecipeError, parse_recipe
from envkit.recipe.schema import Recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TINY = (RECIPES / "tiny.yaml").read_text()
TOY = RECIPES / "data" / "toy.jsonl"


def tiny_text(*replacements: tuple[str, str]) -> str:
    """recipes/tiny.yaml with an absolute dataset path and each (old, new) replaced once."""
    text = TINY.replace("path: data/toy.jsonl", f"path: {TOY}")
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def line_of(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


def dry_run(tmp_path: Path, text: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path, CliRunner().invoke(main, ["train", str(path), "--dry-run"])


def assert_one_line_error(result, path: Path, line: int | None, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    where = f"{path}:{line}: " if line else f"{path}: "
    assert lines[0].startswith(f"envkit train: {where}"), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_the_unmodified_tiny_recipe_passes_the_dry_run(tmp_path):
    path, result = dry_run(tmp_path, tiny_text())
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["recipe"] == str(path)


@pytest.mark.parametrize("old, new, marker, expected", [
    ("learning_rate: 2.0e-2", "learnig_rate: 1.0e-3", "learnig_rate",
     ("grpo.learnig_rate: unknown key", "did you mean learning_rate?")),
    ("vllm:\n", "vlm:\n", "vlm:", ("vlm: unknown key (did you mean vllm?)",)),
    ("name: length", "name: no_such_module_envkit:score", "no_such_module_envkit",
     ("rewards[1].name: cannot find module 'no_such_module_envkit' beside the recipe or on the Python path",)),
    ("name: length", "name: os:system", "os:system", ("rewards[1].name: 'os' is Python's standard library",)),
    ("name: length", "name: my-rewards:score", "my-rewards", ("rewards[1].name: 'my-rewards:score' is not module:function",)),
    ("name: length", "name: lenght", "lenght", ("rewards[1].name: unknown reward 'lenght'", "did you mean length?")),
], ids=["unknown-key", "unknown-section", "reward-not-findable", "reward-from-stdlib", "reward-not-a-name", "unknown-builtin-reward"])
def test_a_wrong_name_is_one_line_with_the_closest_or_the_cause(tmp_path, old, new, marker, expected):
    text = tiny_text((old, new))
    path, result = dry_run(tmp_path, text)
    assert_one_line_error(result, path, line_of(text, marker), *expected)


@pytest.mark.parametrize("old, new, field, expected", [
    ("num_generations: 8", "num_generations: four", "grpo.num_generations", "expected an integer, got str 'four'"),
    ("learning_rate: 2.0e-2", "learning_rate: fast", "grpo.learning_rate", "expected a finite number"),
    ("learning_rate: 2.0e-2", "learning_rate: .inf", "grpo.learning_rate", "expected a finite number, got float inf"),
    ("beta: 0.04", "beta: -5", "grpo.beta", "must be at least 0, got -5.0"),
    ("max_seq_length: 256", "max_seq_length: -1", "model.max_seq_length", "must be at least 1, got -1"),
    ("enabled: auto", "enabled: auto\n  gpu_memory_utilization: 1.6", "vllm.gpu_memory_utilization", "must be in (0, 1], got 1.6"),
    ("use_chat_template: false", "use_chat_template: 3", "dataset.use_chat_template", "expected true/false"),
    ("enabled: auto", "enabled: sometimes", "vllm.enabled", "expected 'auto' or true/false"),
    ("target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]", "target_modules: q_proj",
     "lora.target_modules", "expected a list"),
    ("max_steps: 20", "max_steps: 0", "grpo.max_steps", "must be at least 1"),
    # values TRL or PEFT would reject later, with a traceback
    ("r: 8", "r: 0", "lora.r", "must be at least 1, got 0"),
    ("alpha: 16", "alpha: 0", "lora.alpha", "must be greater than 0, got 0"),
    ("alpha: 16", "alpha: 16\n  dropout: 1.0", "lora.dropout", "must be in [0, 1), got 1.0"),
    ("alpha: 16", "alpha: 16\n  dropout: -0.1", "lora.dropout", "must be in [0, 1), got -0.1"),
    ("learning_rate: 2.0e-2", "learning_rate: -1.0e-3", "grpo.learning_rate", "must be greater than 0, got -0.001"),
    ("temperature: 1.0", "temperature: 0", "grpo.temperature", "must be greater than 0, got 0.0"),
    ("temperature: 1.0", "temperature: 1.0\n  top_p: 1.5", "grpo.top_p", "must be in (0, 1], got 1.5"),
    ("temperature: 1.0", "temperature: 1.0\n  top_p: 0", "grpo.top_p", "must be in (0, 1], got 0.0"),
    ("keep: 2", "keep: 0", "output.keep", "must be at least 1, got 0"),
    ("num_generations: 8", "num_generations: 1", "grpo.num_generations", "must be at least 2, got 1: GRPO's advantage"),
    ("num_generations: 8", "num_generations: 3", "grpo.num_generations",
     "per_device_train_batch_size x gradient_accumulation_steps = 16 is not a multiple of grpo.num_generations (3)"),
])
def test_wrong_type_or_value_names_the_field_and_the_range(tmp_path, old, new, field, expected):
    text = tiny_text((old, new))
    path, result = dry_run(tmp_path, text)
    assert_one_line_error(result, path, line_of(text, field.split(".")[1] + ":"), f"{field}: ", expected)


def test_the_generation_batch_counts_every_training_rank():
    two_ranks = tiny_text(("num_generations: 8", "num_generations: 32"), ("seed: 0", "resources: {training_gpus: [0, 1]}\nseed: 0"))
    assert parse_recipe(two_ranks).grpo.num_generations == 32  # 16 per device x 2 ranks = 32 completions
    with pytest.raises(RecipeError, match="x 2 training ranks x gradient_accumulation_steps = 32 is not a multiple"):
        parse_recipe(two_ranks.replace("num_generations: 32", "num_generations: 64"))


@pytest.mark.parametrize("old, new, field, expected", [
    ("{question}", "{questoin}", "dataset.prompt_template", "dataset has no field 'questoin' (fields: question, answer)"),
    ("answer_field: answer", "answer_field: solution", "dataset.answer_field", "dataset has no field 'solution'"),
    ("{question}", "{question", "dataset.prompt_template", "not a str.format template"),
])
def test_prompt_fields_are_checked_against_the_first_jsonl_row(tmp_path, old, new, field, expected):
    text = tiny_text((old, new))
    path, result = dry_run(tmp_path, text)
    assert_one_line_error(result, path, line_of(text, field.split(".")[1] + ":"), f"{field}: ", expected)


def test_a_jsonl_whose_first_line_is_not_an_object(tmp_path):
    (tmp_path / "rows.jsonl").write_text('["question", "answer"]\n')
    text = tiny_text((f"path: {TOY}", "path: rows.jsonl"))
    path, result = dry_run(tmp_path, text)
    assert_one_line_error(result, path, line_of(text, "rows.jsonl"), "dataset.path: the first line is not a JSON object")


def test_missing_required_key(tmp_path):
    text = tiny_text(("version: 1\n", ""))
    path, result = dry_run(tmp_path, text)
    first_key = line_of(text, "backend:")  # the root mapping starts at its first key
    assert_one_line_error(result, path, first_key, "version: missing required key")


def test_missing_dataset_file(tmp_path):
    text = tiny_text((f"path: {TOY}", "path: data/nowhere.jsonl"))
    path, result = dry_run(tmp_path, text)
    assert_one_line_error(result, path, line_of(text, "nowhere"), "dataset.path: no such file:",
                          str(tmp_path / "data" / "nowhere.jsonl"))


def test_relative_dataset_path_resolves_against_the_recipe(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.jsonl").write_text(TOY.read_text())
    _, result = dry_run(tmp_path, tiny_text((f"path: {TOY}", "path: data/mine.jsonl")))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("body", ["raise RuntimeError('oops\\nsecond line')\n", "import sys\nsys.exit(7)\n",
                                  "import os\nos._exit(9)\n"], ids=["raises", "sys-exit", "os-exit"])
def test_loading_a_recipe_never_runs_the_reward_module(tmp_path, monkeypatch, body):
    """--dry-run (and budget, lock, build) load the recipe: a module that raises or exits at import is not run
    (issue #13: it used to end those commands with its own exit code); training imports it, one line on failure."""
    from envkit.recipe.load import RecipeError
    from envkit.train.rewards import resolve_reward

    score = "\ndef score(prompts, completions, **_):\n    return []\n"  # it exists: only importing it fails
    (tmp_path / "hostile_reward_envkit.py").write_text(body + score)
    monkeypatch.syspath_prepend(str(tmp_path))
    _, result = dry_run(tmp_path, tiny_text(("name: length", "name: hostile_reward_envkit:score")))
    assert result.exit_code == 0, result.output
    if "os._exit" not in body:  # that one would end this test process: the point is that loading never imports it
        with pytest.raises(RecipeError, match=r"^reward 'hostile_reward_envkit:score': cannot import 'hostile_reward_envkit': "
                                              r"(RuntimeError: oops|SystemExit: 7)$"):
            resolve_reward("hostile_reward_envkit:score")


def test_a_reward_without_that_function_fails_when_training_starts(tmp_path, monkeypatch):
    from envkit.recipe.load import RecipeError
    from envkit.train.rewards import resolve_reward

    with pytest.raises(RecipeError, match="'envkit.train.rewards' has no function 'no_such_reward'"):
        resolve_reward("envkit.train.rewards:no_such_reward")


def test_user_reward_function_is_accepted(tmp_path, monkeypatch):
    (tmp_path / "my_reward_envkit.py").write_text("def score(prompts, completions, **_):\n    return [0.0] * len(completions)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _, result = dry_run(tmp_path, tiny_text(("name: length", "name: my_reward_envkit:score")))
    assert result.exit_code == 0, result.output


def test_invalid_yaml(tmp_path):
    text = tiny_text(("target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]", "target_modules: [q_proj, k_proj"))
    path, result = dry_run(tmp_path, text)
    opened = line_of(text, "target_modules:")
    assert_one_line_error(result, path, opened + 1, "invalid YAML: expected ',' or ']', but got ':'",
                          f"(while parsing a flow sequence at line {opened})")


def test_invalid_yaml_names_the_line(tmp_path):
    text = "version: 1\nmodel:\n  build: tiny\n   dtype: auto\n"
    path, result = dry_run(tmp_path, text)
    assert_one_line_error(result, path, 4, "invalid YAML: mapping values are not allowed here")


@pytest.mark.parametrize("text, line, expected", [
    ("- version: 1\n- model: tiny\n", 1, "expected a mapping, got a list"),
    ("just a sentence\n", 1, "expected a mapping, got a single value"),
    ("", None, "empty recipe"),
    ("version: 1\nmodel: tiny\ndataset: {name: x}\nrewards: [{name: length}]\n", 2,
     "model: expected a mapping, got a single value"),
])
def test_not_a_mapping(tmp_path, text, line, expected):
    path, result = dry_run(tmp_path, text)
    assert_one_line_error(result, path, line, expected)


def test_a_recipe_that_does_not_exist(tmp_path):
    result = CliRunner().invoke(main, ["train", str(tmp_path / "nope.yaml"), "--dry-run"])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert f"{tmp_path / 'nope.yaml'}: no such recipe file or shipped recipe (shipped: grpo-llama1b, grpo-llama3b, " in result.stderr


# --- the shipped recipes -------------------------------------------------------------------------------------

def test_recipes_list_names_the_shipped_recipes():
    result = CliRunner().invoke(main, ["recipes", "list"])
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert {"grpo-llama1b", "grpo-llama3b", "tiny"} <= set(names) and names == sorted(names)
    assert "invalid" not in result.stdout
    assert "meta-llama/Llama-3.2-1B-Instruct" in result.stdout and "toy.jsonl" in result.stdout


def test_recipes_show_prints_the_file():
    result = CliRunner().invoke(main, ["recipes", "show", "tiny"])
    assert result.exit_code == 0 and result.stdout == TINY


def test_recipes_show_unknown_name():
    result = CliRunner().invoke(main, ["recipes", "show", "tiny2"])
    assert result.exit_code == 2 and "tiny2: no such recipe" in result.stderr and "Traceback" not in result.output


def test_dry_run_prints_the_grpo_config_and_imports_no_torch_or_trl():
    probe = (
        "import json, sys\n"
        "from envkit.cli import main\n"
        "try:\n"
        "    main(['train', 'tiny', '--dry-run'])\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "heavy = sorted(m for m in ('torch', 'trl', 'transformers', 'peft', 'vllm', 'datasets', 'accelerate') if m in sys.modules)\n"
        "print(json.dumps({'exit': code, 'heavy': heavy}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    *printed, last = done.stdout.splitlines()
    assert json.loads(last) == {"exit": 0, "heavy": []}, done.stderr
    plan = json.loads("\n".join(printed))
    config = plan["grpo_config"]
    assert config["num_generations"] == 8 and config["max_steps"] == 20 and config["save_steps"] == 10
    assert config["use_cpu"] is True and config["use_vllm"] is False and config["reward_weights"] == [1.0, 0.1, 1.0]
    assert config["output_dir"] == str(Path("runs") / "tiny")


def test_dry_run_overrides():
    result = CliRunner().invoke(main, ["train", "tiny", "--dry-run", "--max-steps", "7", "--output", "/tmp/elsewhere"])
    config = json.loads(result.stdout)["grpo_config"]
    assert config["max_steps"] == 7 and config["output_dir"] == "/tmp/elsewhere"


# --- random documents ----------------------------------------------------------------------------------------

def _sections() -> dict[str, list[str]]:
    """Each recipe section's keys, from the schema (so new sections are fuzzed too)."""
    hints = typing.get_type_hints(Recipe)
    return {f.name: [g.name for g in dataclasses.fields(hints[f.name])]
            for f in dataclasses.fields(Recipe) if dataclasses.is_dataclass(hints[f.name])}


SECTIONS = _sections()
TOP = [f.name for f in dataclasses.fields(Recipe) if f.metadata.get("input", True)]
# Reward names the loader may import: a fixed list, so the fuzzer cannot import an arbitrary module.
REWARD_NAMES = ["length", "format", "exact_answer", "lenght", "", ":", "a:", ":b", "envkit.train.rewards:length",
                "envkit.train.rewards:nope", "no_such_module_envkit:f", "envkit.train.rewards:re", "json:loads"]
# The colon is left out of random text so that no random string names a module to import.
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=":"), max_size=20)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(), st.floats(allow_nan=True), text,
    st.sampled_from(["auto", "tiny", "bf16", "fp16", "colocate", "server", "dapo", "grpo", "fp8", "trl", "unsloth",
                     "data/toy.jsonl", str(TOY), "missing.jsonl", "openai/gsm8k", "1.0e-3", "yes", "~", *REWARD_NAMES]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text | scalars, inner, max_size=4),
                      max_leaves=12)
keys = st.sampled_from(TOP + [f for fields in SECTIONS.values() for f in fields] + ["name", "weight"]) | text


@st.composite
def recipe_documents(draw) -> dict:
    """The tiny recipe, then random edits: sections dropped or replaced, fields given random values, random keys."""
    doc = yaml.safe_load(tiny_text())
    for key in draw(st.lists(st.sampled_from(TOP), max_size=3)):
        doc.pop(key, None)
    for _ in range(draw(st.integers(0, 6))):
        section = draw(st.sampled_from(list(SECTIONS)))
        target = doc.setdefault(section, {}) if isinstance(doc.get(section), dict) else doc
        target[draw(st.sampled_from(SECTIONS[section]) | keys)] = draw(values)
    if draw(st.booleans()):
        reward = st.fixed_dictionaries({"name": st.sampled_from(REWARD_NAMES)}, optional={"weight": scalars})
        extra = st.dictionaries(keys, values, max_size=1)
        doc["rewards"] = draw(st.lists(st.builds(lambda r, e: {**e, **r}, reward, extra), max_size=3) | values)
    for _ in range(draw(st.integers(0, 2))):
        doc[draw(keys | scalars)] = draw(values)
    return doc


def dumped(doc) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


SHIPPED = [tiny_text(), (RECIPES / "grpo-llama1b.yaml").read_text()]


@st.composite
def mangled(draw) -> str:
    """Valid YAML text cut, spliced or sprinkled with YAML punctuation: near misses of the parser."""
    source = draw(st.sampled_from(SHIPPED))
    start = draw(st.integers(0, len(source)))
    end = draw(st.integers(start, min(len(source), start + 40)))
    pieces = st.sampled_from(list(":-[]{}&*!|>'\"#%@`,? \n\t\\") + ["!!int ", "&a ", "*a"])
    return source[:start] + "".join(draw(st.lists(pieces, max_size=6))) + source[end:]


@st.composite
def retagged(draw) -> str:
    """A shipped recipe with an explicit YAML tag before one value: ``model: !!int tiny``."""
    source = draw(st.sampled_from(SHIPPED))
    at = draw(st.sampled_from([i + 2 for i in range(len(source)) if source.startswith(": ", i)]))
    tag = draw(st.sampled_from(["!!int", "!!float", "!!bool", "!!timestamp", "!!binary", "!!null", "!!str", "!local"]))
    return f"{source[:at]}{tag} {source[at:]}"


documents = st.one_of(recipe_documents().map(dumped), mangled(), retagged(), st.text(max_size=200),
                      st.text(st.sampled_from(list("ab1 :-[]{}\n\t'\"#&*!|>?,%")), max_size=80))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(documents)
@example("[" * 5000)
@example("version: !!int one")
@example("version: 1\nmodel: {build: tiny}\nrewards: [{name: length}]\ndataset: {path: \"a\\0b\"}\n")
@example(tiny_text(("learning_rate: 2.0e-2", '"learning\\nrate": 1.0e-3')))
@example(tiny_text() + 'distributed: {accelerate_config: "a\\0b"}\n')
def test_random_documents_give_a_recipe_or_one_line_per_error(text):
    source = str(RECIPES / "fuzz.yaml")  # relative dataset paths resolve in recipes/, where data/toy.jsonl is
    try:
        recipe = parse_recipe(text, source)
    except RecipeError as exc:
        lines = str(exc).split("\n")
        assert all(line.startswith(f"{source}:") and line.isprintable() for line in lines), lines
        assert len(set(lines)) == len(lines), lines  # no problem said twice
    else:
        assert isinstance(recipe, Recipe) and recipe.rewards
        assert recipe.dataset.path is None or Path(recipe.dataset.path).is_absolute() and Path(recipe.dataset.path).is_file()


def test_explicit_tag_on_an_empty_key_is_a_recipe_error():  # found by the property test: IndexError in PyYAML
    from envkit.recipe.load import RecipeError, parse_recipe

    with pytest.raises(RecipeError, match="cannot read value '' as int"):
        parse_recipe("!!int : x\nversion: 1\n")


def test_a_reward_module_beside_the_recipe_is_found_without_pythonpath(tmp_path):
    from envkit.train.rewards import resolve_reward

    (tmp_path / "beside_reward_envkit.py").write_text("def score(prompts, completions, **_):\n    return [1.0] * len(completions)\n")
    _, result = dry_run(tmp_path, tiny_text(("name: length", "name: beside_reward_envkit:score")))
    assert result.exit_code == 0, result.output
    assert resolve_reward("beside_reward_envkit:score", tmp_path)([], ["a", "b"]) == [1.0, 1.0]


@pytest.mark.parametrize("written, value", [("1e-4", 1e-4), ("5E-6", 5e-6), ("+2e-3", 2e-3), (".5e-2", 0.005)])
def test_yaml_1_2_floats_are_numbers(tmp_path, written, value):
    """PyYAML reads 1e-4 as a string (YAML 1.1); almost every user writes learning rates that way (issue #14)."""
    from envkit.recipe.load import parse_recipe

    recipe = parse_recipe(tiny_text(("learning_rate: 2.0e-2", f"learning_rate: {written}")), str(tmp_path / "r.yaml"))
    assert recipe.grpo.learning_rate == value


def test_a_quoted_number_stays_a_string(tmp_path):
    _, result = dry_run(tmp_path, tiny_text(("learning_rate: 2.0e-2", 'learning_rate: "1e-4"')))
    assert result.exit_code == 2 and "expected a finite number, got str '1e-4'" in result.output


def test_a_misspelt_shipped_recipe_gets_the_closest_name():
    result = CliRunner().invoke(main, ["train", "tinny", "--dry-run"])
    assert result.exit_code == 2 and "tinny: no such recipe file or shipped recipe (did you mean tiny? shipped:" in result.stderr


def test_every_problem_of_a_recipe_is_reported_at_once(tmp_path):
    """Issue #15: one pass collects them all (types, keys and ranges at any depth), one line each, in line order,
    each naming the file, the line and the field; the first no longer hides the rest."""
    text = tiny_text(("learning_rate: 2.0e-2", "learning_rate: fast"), ("r: 8", "r: 0"), ("keep: 2", "keeep: 2"),
                     ("vllm:\n  enabled", "vllm_:\n  enabled"),
                     ("version: 1", "version: 1\nvllm:\n  server: {port: 0}"))
    path, result = dry_run(tmp_path, text)
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.removeprefix("envkit train: ").splitlines()
    expected = {"vllm.server.port": ("{port: 0}", "must be in [1, 65535], got 0: a port number"),
                "lora.r": ("r: 0", "must be at least 1, got 0"),
                "grpo.learning_rate": ("learning_rate: fast", "expected a finite number, got str 'fast'"),
                "vllm_": ("vllm_:", "unknown key (did you mean vllm?)"),
                "output.keeep": ("keeep:", "unknown key (did you mean keep?)")}
    said = {line.split(": ")[1]: line for line in lines}
    assert len(lines) == len(said) == len(expected), result.stderr
    for key, (marker, message) in expected.items():
        assert said[key] == f"{path}:{line_of(text, marker)}: {key}: {message}"
    numbers = [int(line.split(":")[1]) for line in lines]
    assert numbers == sorted(numbers)


def test_every_bound_is_field_metadata_with_help_at_any_depth():
    """The ranges live on the fields (TRL-style metadata), so a new bounded field is one line in the schema."""
    import dataclasses

    from envkit.binding import Bound
    from envkit.recipe.schema import GrpoSpec, VllmServerSpec

    def metadata(cls, name):
        return next(f.metadata for f in dataclasses.fields(cls) if f.name == name)

    port = metadata(VllmServerSpec, "port")["bound"]
    assert isinstance(port, Bound) and port.admits(8000) and not port.admits(70000)
    assert metadata(VllmServerSpec, "group_port")["help"] == "NCCL weight-sync rendezvous"
    assert "max_steps is unset" in metadata(GrpoSpec, "num_epochs")["help"]


def test_a_misspelt_reward_function_is_one_line_before_anything_loads(tmp_path):
    """Issue #24: the name surfaced 24 s in, after the model loaded; the module's source is read, not imported."""
    (tmp_path / "my_rewards_envkit.py").write_text("raise SystemExit('imported!')\n\n"
                                                   "def correctness(prompts, completions, **_):\n"
                                                   "    return [0.0] * len(completions)\n")
    _, result = dry_run(tmp_path, tiny_text(("name: length", "name: my_rewards_envkit:corectness")))
    assert result.exit_code == 2 and "imported!" not in result.output
    expected = "rewards[1].name: my_rewards_envkit.py has no function 'corectness' (did you mean correctness?)"
    assert expected in result.stderr
    _, fine = dry_run(tmp_path, tiny_text(("name: length", "name: my_rewards_envkit:correctness")))
    assert fine.exit_code == 0, fine.output


def test_a_missing_dataset_file_and_reward_come_with_the_other_errors(tmp_path):
    """Issue #24: a missing dataset file was reported only once every type error was fixed."""
    text = tiny_text((f"path: {TOY}", "path: data/nowhere.jsonl"), ("alpha: 16", "alpah: 16"),
                     ("name: length", "name: no_such_module_envkit:f"))
    path, result = dry_run(tmp_path, text)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 3, result.stderr
    assert "lora.alpah: unknown key" in lines[0] and "dataset.path: no such file" in lines[1]
    assert "rewards[1].name: cannot find module 'no_such_module_envkit'" in lines[2]


def test_in_the_image_a_recipe_not_in_the_working_folder_says_how_to_mount_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["train", "recipe.yaml", "--dry-run"])
    assert result.exit_code == 2 and "-v" not in result.output  # outside the image: the plain message
    monkeypatch.setenv("ENVKIT_IN_IMAGE", "1")
    result = CliRunner().invoke(main, ["train", "recipe.yaml", "--dry-run"])
    assert result.exit_code == 2
    assert result.output.startswith(f"envkit train: recipe.yaml: no such recipe file in {tmp_path}, the image's "
                                    "working folder, nor a shipped recipe")
    assert result.output.rstrip().endswith('mount the folder that holds it there: docker run ... -v "$PWD":/work '
                                           "IMAGE train recipe.yaml (podman alike)") and result.output.count("\n") == 1
