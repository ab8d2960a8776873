"""Load a recipe YAML into envkit.recipe.schema, with one-line errors that name file, line and field.

The YAML is composed (not loaded) so every value keeps its node and thus its line; the walk
follows the dataclass annotations.  Every problem becomes a RecipeError whose message is one
line, ``recipe.yaml:12: grpo.learnig_rate: unknown key (did you mean learning_rate?)``.
"""

from __future__ import annotations

import ast
import csv
import difflib
import hashlib
import importlib.machinery
import importlib.util
import io
import json
import re
import string
import sys
from pathlib import Path
from typing import Any

import yaml

from envkit.binding import FAILED, Binder, PlainFloat, Problem
from envkit.errors import RecipeError
from envkit.files import read_regular, read_regular_head
from envkit.recipe.schema import LINEAR_MODULES, DatasetSpec, Recipe, gpu_count

BUILTIN_REWARDS = ("format", "exact_answer", "length", "digits")
# A local dataset file's suffix -> the datasets builder that reads it.
DATA_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
# YAML 1.2's float syntax (its core schema); PyYAML follows YAML 1.1, which needs a dot: 1.0e-4, not 1e-4.
YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+")


class _Where:
    def __init__(self, source: str):
        self.source = source

    def error(self, node: yaml.Node | None, path: str, message: str) -> RecipeError:
        line = node.start_mark.line + 1 if node is not None else None
        error = RecipeError(f"{self.source}{f':{line}' if line else ''}: {path + ': ' if path else ''}{message}")
        error.line = line
        return error


MAX_FORMAT_WIDTH = 10_000  # a prompt_template's widths and precisions: a prompt is a few thousand characters
MAX_VALUES = 100_000  # a recipe holds ~100 values (a long reward list a few hundred)
FIRST_ROW_BYTES = 2**20  # a dataset's first row (or CSV header), read to check its columns
MAX_BYTES = 1024 * 1024  # a recipe is ~1 KB; the bound keeps a wrong file (a log, a dataset) from a minute of parsing


def read_recipe(path: str | Path) -> str:
    """A recipe file's text, UTF-8 and at most MAX_BYTES, or a one-line RecipeError naming the file."""
    path = Path(path)
    try:
        data = read_regular(path, MAX_BYTES)  # a FIFO or /dev/zero named as the recipe: refused, not waited on
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as read_text()
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: cannot read recipe: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc.strerror or exc}") from None


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    text = read_recipe(path)
    recipe = parse_recipe(text, str(path))
    recipe.sha256 = hashlib.sha256(text.encode()).hexdigest()
    return recipe


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Parse and validate; relative dataset paths resolve against the recipe's folder."""
    where = _Where(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        # An unclosed bracket or quote is noticed lines later: name where it opened too.
        opened = exc.context_mark if exc.problem and exc.context and exc.context_mark else None
        elsewhere = opened and opened is not mark and opened.line != mark.line
        context = f" ({exc.context} at line {opened.line + 1})" if elsewhere else ""
        raise RecipeError(f"{source}{line}: invalid YAML: {exc.problem or exc.context}{context}") from None
    except (yaml.YAMLError, ValueError) as exc:  # reader errors (control characters), odd encodings
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RecipeError(f"{source}: invalid YAML: {first}") from None
    except RecursionError:  # the composer recurses once per nesting level
        raise RecipeError(f"{source}: invalid YAML: nested too deeply") from None
    if root is None:
        raise RecipeError(f"{source}: empty recipe (expected a mapping with version: 1)")
    document = _Document(where)
    try:
        data = document.plain(root, "")
    except RecursionError:
        raise where.error(root, "", "recursive YAML aliases are not allowed") from None
    binder = Binder(strict=True, mapping="a mapping")
    recipe = binder.bind(Recipe, data) if data is not FAILED else FAILED
    errors = document.errors + [document.error(problem) for problem in binder.problems]
    if not errors:  # the checks across fields read a typed recipe
        recipe.source = source
        errors = _check(recipe, root, where, Path(source).parent)
    elif isinstance(data, dict):  # the disk's answers too, in the same report (issue #24: one fix at a time)
        errors += _check_disk(data, root, where, Path(source).parent)
    if errors:
        errors.sort(key=lambda e: e.line or 0)
        raise RecipeError("\n".join(str(e) for e in errors), escaped=True)  # one line each, each escaped
    return recipe


class _Document:
    """A composed YAML document as plain data for envkit.binding, remembering each value's and key's line."""

    def __init__(self, where: _Where):
        self.where = where
        self.left = MAX_VALUES  # the alias-expansion budget
        self.nodes: dict[str, yaml.Node] = {}
        self.keys: dict[str, yaml.Node] = {}
        self.errors: list[RecipeError] = []

    def plain(self, node: yaml.Node, path: str) -> Any:
        """The value of ``node``, its aliases expanded: each expansion counts against MAX_VALUES, so nested
        aliases (a billion values from a kilobyte) stop with one line instead of running out of memory."""
        self.left -= 1
        if self.left < 0:
            raise self.where.error(node, path, f"more than {MAX_VALUES} values once its YAML aliases are expanded: "
                                               "not a recipe (nested aliases?); write the values out")
        self.nodes[path] = node
        if isinstance(node, yaml.MappingNode):
            values: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.errors.append(self.where.error(key_node, path,
                                                        f"expected a single value, got {_kind(key_node)}"))
                    continue
                key = self._scalar(key_node, path)
                if key is FAILED:
                    continue
                at = _join(path, str(key))
                if key in values:
                    self.errors.append(self.where.error(key_node, at, "duplicate key"))
                    continue
                self.keys[at] = key_node
                values[key] = self.plain(value_node, at)
            return values
        if isinstance(node, yaml.SequenceNode):
            return [self.plain(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        value = self._scalar(node, path)
        if isinstance(value, str) and node.style is None and YAML12_FLOAT.fullmatch(value):
            return PlainFloat(value)  # 1e-4: a float in YAML 1.2, a string under PyYAML's YAML 1.1 rule
        return value

    def _scalar(self, node: yaml.Node, path: str) -> Any:
        try:
            return yaml.SafeLoader("").construct_object(node)
        except yaml.YAMLError as exc:
            why = getattr(exc, "problem", None) or exc
            self.errors.append(self.where.error(node, path, f"cannot read value: {why}"))
        except (ValueError, KeyError, AttributeError, IndexError, TypeError):  # a wrong explicit tag: !!int abc
            self.errors.append(self.where.error(node, path, f"cannot read value {node.value!r:.40} as "
                                                            f"{node.tag.rpartition(':')[2]}"))
        return FAILED

    def error(self, problem: Problem) -> RecipeError:
        """A binding problem as a RecipeError at its line: the key's, the value's or the enclosing mapping's."""
        parent = problem.path.rpartition(".")[0] if "." in problem.path else ""
        node = {"key": self.keys.get(problem.path), "parent": self.nodes.get(parent)}.get(problem.at) \
            or self.nodes.get(problem.path) or self.keys.get(problem.path)
        return self.where.error(node, problem.path, problem.message)


def _kind(node: yaml.Node) -> str:
    return {yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list"}.get(type(node), "a single value")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _node(root: yaml.Node, *keys: str | int) -> yaml.Node:
    """The node at a key path (for the line of a semantic error); the deepest existing one."""
    node = root
    for key in keys:
        if isinstance(node, yaml.MappingNode):
            found = [v for k, v in node.value if k.value == key]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            found = [node.value[key]]
        else:
            found = []
        if not found:
            return node
        node = found[0]
    return node


def _check(recipe: Recipe, root: yaml.Node, where: _Where, base: Path) -> list[RecipeError]:
    """Checks across fields and against the disk (dataset file, reward modules, exclusive keys); every problem."""
    errors: list[RecipeError] = []
    fail = _failing(errors, root, where)
    model, data = recipe.model, recipe.dataset
    if (model.name is None) == (model.build is None):
        fail(("model",), "give exactly one of name or build")
    if model.build == "tiny":  # envkit's own Llama: its layers are known without loading it (other models: at load)
        for i, target in enumerate(recipe.lora.target_modules):
            if target not in (*LINEAR_MODULES, "all-linear"):
                fail(("lora", "target_modules", i), f"{target!r} is not a linear layer of the tiny Llama "
                                                    f"({', '.join(LINEAR_MODULES)}, or all-linear)")
    if (data.path is None) == (data.name is None):
        fail(("dataset",), "give exactly one of path (a local file) or name (registry)")
    _check_eval(recipe, fail)
    for key, value in _dataset_files({"path": data.path, "eval_path": data.eval_path}, root, where, base,
                                     errors).items():
        setattr(data, key, value)  # None where missing: nothing to read the prompt fields from
    if not recipe.rewards:
        fail(("rewards",), "needs at least one reward")
    _check_rewards([reward.name for reward in recipe.rewards], base, fail)
    problem = generation_batch_problem(recipe)
    if problem:
        fail(("grpo", "num_generations"), problem)
    _check_prompt_fields(data, fail)
    rank = recipe.vllm.max_lora_rank
    if rank is not None and rank < recipe.lora.r:
        fail(("vllm", "max_lora_rank"), f"must be at least lora.r ({recipe.lora.r}), got {rank}: vLLM cannot load a "
             "LoRA adapter of a higher rank")
    if recipe.backend == "unsloth" and recipe.vllm.mode == "server" and recipe.vllm.enabled is not False:
        fail(("vllm", "mode"), "backend: unsloth generates with its own vLLM in the training process: "
             "use mode: colocate")
    _check_launch(recipe, fail, lambda value, keys: _local_file(base, value, lambda message: where.error(
        _node(root, *keys), ".".join(keys), message)), errors)
    return errors


def _check_disk(data: dict, root: yaml.Node, where: _Where, base: Path) -> list[RecipeError]:
    """The dataset files and reward modules of a recipe that did not bind (a wrong type elsewhere): read from its
    plain data, each one checked whose value is a string."""
    errors: list[RecipeError] = []
    dataset, rewards = data.get("dataset"), data.get("rewards")
    if isinstance(dataset, dict):
        _dataset_files(dataset, root, where, base, errors)
    if isinstance(rewards, list):
        names = [r.get("name") if isinstance(r, dict) else None for r in rewards]
        _check_rewards(names, base, _failing(errors, root, where))
    return errors


def _failing(errors: list[RecipeError], root: yaml.Node, where: _Where):
    """fail(keys, message): an error at the line of the value ``keys`` name (("rewards", 0, "name")), into errors."""
    def fail(keys: tuple[str | int, ...], message: str) -> None:
        path = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")
        errors.append(where.error(_node(root, *keys), path, message))

    return fail


def _dataset_files(values: dict, root: yaml.Node, where: _Where, base: Path,
                   errors: list[RecipeError]) -> dict[str, str | None]:
    """dataset.path and eval_path (those set as text) as absolute paths of existing files; an error each for one
    missing or unreadable, and None in its place."""
    found = {}
    for key in ("path", "eval_path"):
        if not isinstance(values.get(key), str):
            continue
        try:
            found[key] = _data_file(base, values[key], lambda message, key=key: where.error(
                _node(root, "dataset", key), f"dataset.{key}", message))
        except RecipeError as error:
            errors.append(error)
            found[key] = None
    return found


def _check_rewards(names: list, base: Path, fail) -> None:
    """Each reward name given as text, looked up without importing anything (reward_problem)."""
    for i, name in enumerate(names):
        problem = reward_problem(name, base) if isinstance(name, str) else None
        if problem:
            fail(("rewards", i, "name"), problem)


def _check_eval(recipe: Recipe, fail) -> None:
    """At most one source of evaluation rows; an eval_strategy only with one."""
    data = recipe.dataset
    given = [k for k in ("eval_path", "eval_split", "test_size") if getattr(data, k) is not None]
    if len(given) > 1:
        fail(("dataset", given[1]), f"give at most one of eval_path, eval_split and test_size (also given: {given[0]})")
    if data.eval_split is not None and data.name is None:
        fail(("dataset", "eval_split"), "a split of the registry dataset needs dataset.name; a local file: eval_path")
    size = data.test_size
    if size is not None and size >= 1 and size != int(size):
        fail(("dataset", "test_size"), f"a fraction below 1 or a whole count of rows, got {size}")
    if not given and recipe.grpo.trl.get("eval_strategy", "no") != "no":
        fail(("grpo", "eval_strategy"), "nothing to evaluate: give dataset.eval_path, eval_split or test_size")


def _check_launch(recipe: Recipe, fail, local_file, errors: list[RecipeError]) -> None:
    """GPU assignment, vLLM parallelism and distributed settings (envkit.launch.plan relies on these); the ranges
    of single fields (ports, sizes, counts) are the schema's bounds."""
    v, res, dist = recipe.vllm, recipe.resources, recipe.distributed
    if v.server.port == v.server.group_port:
        fail(("vllm", "server", "group_port"), f"must differ from vllm.server.port ({v.server.port})")
    for name in ("generation_gpus", "training_gpus"):
        gpus = getattr(res, name)
        if isinstance(gpus, int) and gpus < 1:
            fail(("resources", name), f"a count must be at least 1, got {gpus}")
        if isinstance(gpus, list) and (not gpus or min(gpus) < 0 or len(set(gpus)) < len(gpus)):
            fail(("resources", name), f"needs distinct GPU indices (0, 1, ...), got {gpus}")
    if isinstance(res.generation_gpus, list) and isinstance(res.training_gpus, list):
        shared = sorted(set(res.generation_gpus) & set(res.training_gpus))
        if shared:
            fail(("resources", "training_gpus"), f"GPU {shared[0]} is also a generation GPU: TRL refuses a GPU "
                 "shared by the vLLM server and a trainer")
    generation = gpu_count(res.generation_gpus)
    if v.mode == "server" and v.enabled is not False:
        if not generation:
            fail(("resources", "generation_gpus"), "vllm.mode: server needs the GPUs of the vLLM server, e.g. "
                 "generation_gpus: [0]")
        elif v.tensor_parallel_size * v.data_parallel_size != generation:
            fail(("vllm", "tensor_parallel_size"), f"tensor_parallel_size x data_parallel_size = "
                 f"{v.tensor_parallel_size * v.data_parallel_size}, but resources.generation_gpus has {generation}: "
                 "make the product match (TP shards one model, DP replicates it)")
    else:
        if v.mode == "server":
            fail(("vllm", "mode"), "server mode needs vLLM: drop vllm.enabled: false or use mode: colocate")
        if generation:
            fail(("resources", "generation_gpus"), "only vllm.mode: server uses generation GPUs (colocate "
                 "generates on the training GPUs)")
        if v.data_parallel_size != 1:
            fail(("vllm", "data_parallel_size"), "applies to the vLLM server only (vllm.mode: server)")
        ranks = gpu_count(res.training_gpus) or 1
        if ranks % v.tensor_parallel_size:
            fail(("vllm", "tensor_parallel_size"), f"{v.tensor_parallel_size} must divide the {ranks} training "
                 "rank(s): colocated vLLM shards over groups of training ranks")
    if not 0 <= dist.machine_rank < dist.num_machines:
        fail(("distributed", "machine_rank"), f"needs 0 <= machine_rank < num_machines, got {dist.machine_rank} "
             f"of {dist.num_machines}")
    if dist.num_machines > 1 and not dist.main_process_ip:
        fail(("distributed", "main_process_ip"), "num_machines > 1 needs the address of machine 0")
    if dist.accelerate_config is not None:
        if dist.backend != "ddp":
            fail(("distributed", "accelerate_config"), f"replaces backend: {dist.backend}; give one of the two")
        try:
            dist.accelerate_config = local_file(dist.accelerate_config, ("distributed", "accelerate_config"))
        except RecipeError as error:
            errors.append(error)
    launched = dist.num_machines > 1 or dist.backend != "ddp" or dist.accelerate_config is not None
    if launched and res.training_gpus is None and v.mode != "server":  # server mode trains on the GPUs left
        fail(("resources", "training_gpus"), "distributed settings start trainer ranks: name their GPUs "
             "(a list, or a count)")


def generation_batch_problem(recipe: Recipe) -> str | None:
    """Why TRL 1.16 would refuse the generation batch (GRPOConfig.__post_init__), or None.

    One generation batch is per_device_train_batch_size x training ranks x gradient_accumulation_steps
    completions and must hold whole groups of num_generations.  Ranks: resources.training_gpus per
    machine (1 when unset: stricter than TRL where the server-mode default leaves several).
    """
    g = recipe.grpo
    ranks = (gpu_count(recipe.resources.training_gpus) or 1) * recipe.distributed.num_machines
    completions = g.per_device_train_batch_size * ranks * g.gradient_accumulation_steps
    if completions % g.num_generations == 0:
        return None
    per_rank = f" x {ranks} training ranks" if ranks > 1 else ""
    return (f"grpo.per_device_train_batch_size{per_rank} x gradient_accumulation_steps = {completions} "
            f"is not a multiple of grpo.num_generations ({g.num_generations}): TRL refuses it; make the batch a multiple of it")


def template_fields(template: str) -> list[str]:
    """The row fields a ``str.format`` template reads (``{question}``, ``{meta[id]}`` -> meta); ValueError if malformed.

    A positional field (``{}``, ``{0}``) is returned as written: the row is passed by name, so it cannot be filled.
    What would only fail when the first prompt is formatted, at training start, is a ValueError here: an
    attribute (``{question.nope}``; the row's values are text and numbers), a conversion other than !r !s !a,
    a width or precision from the row (``{q:{w}}``) or above MAX_FORMAT_WIDTH (``{q:>2000000000}`` asks for
    gigabytes of padding).
    """
    fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
              if name is not None]
    for name, spec, conversion in fields:
        if "." in name.split("[")[0]:
            raise ValueError(f"{{{name}}}: an attribute of a field; name the field (or an item: {{field[key]}})")
        if conversion not in (None, "r", "s", "a"):
            raise ValueError(f"{{{name}!{conversion}}}: unknown conversion; use !r, !s or !a")
        if "{" in (spec or ""):
            raise ValueError(f"{{{name}:{spec}}}: a format taken from a field; write the width out")
        if any(int(number) > MAX_FORMAT_WIDTH for number in re.findall(r"\d+", spec or "")):
            raise ValueError(f"{{{name}:{spec}}}: a width or precision above {MAX_FORMAT_WIDTH}")
    return list(dict.fromkeys(name.split(".")[0].split("[")[0] or "{}" for name, _, _ in fields))


def _prompt_columns(data: DatasetSpec) -> list[tuple[str, str]]:
    """(recipe key, dataset column) pairs the prompt and answer read."""
    prompt = [("dataset.prompt_template", f) for f in template_fields(data.prompt_template)] if data.prompt_template \
        else [("dataset.prompt_field", data.prompt_field)]
    return prompt + [("dataset.answer_field", data.answer_field)]


def missing_columns(data: DatasetSpec, columns: list[str]) -> str | None:
    """Which key of the recipe names a column the dataset lacks, as an error message; None when all are there."""
    for key, column in _prompt_columns(data):
        if column not in columns:
            return f"{key}: dataset has no field {column!r} (fields: {', '.join(columns)})"
    return None


def _check_prompt_fields(data: DatasetSpec, fail) -> None:
    """The template parses; a local JSONL's first row or a CSV's header has the fields the prompt and answer read."""
    if data.prompt_template is not None:
        try:
            template_fields(data.prompt_template)
        except ValueError as exc:
            fail(("dataset", "prompt_template"), f"not a str.format template: {exc}")
            return
    if data.path is None or Path(data.path).suffix.lower() not in (".jsonl", ".csv"):  # JSON, Parquet: when loaded
        return
    first = _first_row(data.path)
    if not isinstance(first, dict):
        fail(("dataset", "path"), "the first line is not a JSON object" if data.path.lower().endswith(".jsonl")
             else "no header line")
        return
    problem = missing_columns(data, list(first))
    if problem:
        key, _, message = problem.partition(": ")
        fail(tuple(key.split(".")), f"{message} in the first row of {data.path}")


def _first_row(path: str):
    """The first row of a JSONL file (its first non-blank line, parsed), or a CSV's header as a mapping of its
    column names; None if it cannot be read or parsed."""
    try:  # its head only: a first line of gigabytes, a FIFO or a device is no first row
        head = read_regular_head(path, FIRST_ROW_BYTES).decode("utf-8")
        if path.lower().endswith(".csv"):
            header = next(csv.reader(io.StringIO(head, newline="")), None)
            return dict.fromkeys(header) if header else None
        return json.loads(next((line for line in head.splitlines() if line.strip()), ""))
    except (OSError, UnicodeDecodeError, ValueError, csv.Error, RecursionError):
        return None


def _data_file(base: Path, value: str, fail) -> str:
    """A local dataset file (_local_file) of a format datasets reads (DATA_FORMATS)."""
    if Path(value).suffix.lower() not in DATA_FORMATS:
        raise fail(f"{Path(value).name}: not a dataset file datasets can read; use {', '.join(DATA_FORMATS)}")
    return _local_file(base, value, fail)


def _local_file(base: Path, value: str, fail) -> str:
    """An existing file named relative to the recipe's folder, as an absolute path; else ``fail(message)``."""
    try:
        resolved = (base / value).resolve()
        found = resolved.is_file()
    except (OSError, ValueError, RuntimeError) as exc:  # a name too long, a NUL byte, a symbolic link loop
        raise fail(f"unusable path: {str(exc)[:80]}") from None
    if not found:
        raise fail(f"no such file: {resolved}")
    return str(resolved)


def reward_module(name: str) -> str | None:
    """The top-level module of a ``module:function`` reward (None for a builtin)."""
    return None if name in BUILTIN_REWARDS else name.partition(":")[0].split(".")[0]


def spec_beside(top: str, folder: Path | None):
    """The module spec of a top-level module in the recipe's folder (a reward module lives beside its recipe),
    or None.  Looking it up imports nothing."""
    return importlib.machinery.PathFinder.find_spec(top, [str(folder)]) if folder is not None else None


def find_module(top: str, folder: Path | None) -> bool:
    """A top-level module exists beside the recipe (searched first) or on the Python path; nothing imported."""
    try:
        return spec_beside(top, folder) is not None or importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def reward_problem(name: str, folder: Path | None = None) -> str | None:
    """What is wrong with a reward's name, without importing anything: loading a recipe (budget, lock, build,
    --dry-run) must not run user code, so a ``module:function`` is only looked up here (in ``folder``, the
    recipe's, then on the path) and imported when training starts (envkit.train.rewards.resolve_reward).
    None when it looks usable."""
    if name in BUILTIN_REWARDS:
        return None
    module_name, _, function = name.partition(":")
    if not module_name or not function:
        close = difflib.get_close_matches(name, BUILTIN_REWARDS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"unknown reward {name!r}: {hint}use a builtin ({', '.join(BUILTIN_REWARDS)}) or module:function"
    if not all(part.isidentifier() for part in module_name.split(".")) or not function.isidentifier():
        return f"{name!r} is not module:function (Python names, e.g. my_rewards:correctness)"
    top = reward_module(name)
    if top in sys.stdlib_module_names:
        return f"{module_name!r} is Python's standard library, not a reward module: name your own module:function"
    if not find_module(top, folder):
        return (f"cannot find module {top!r} beside the recipe or on the Python path "
                "(put it beside the recipe, or set PYTHONPATH)")
    return _missing_function(module_name, function, folder)


def _missing_function(module_name: str, function: str, folder: Path | None) -> str | None:
    """A top-level module's source read (not imported: no user code runs) for the function a reward names, so a
    misspelt name is one line with the closest, before the model loads (issue #24: it surfaced 24 s in).  None
    when found, or when the source cannot say: a package's submodule, a compiled module, a module-level
    ``__getattr__`` or ``import *`` that may provide it."""
    if "." in module_name:
        return None
    spec = spec_beside(module_name, folder) or importlib.util.find_spec(module_name)
    origin = Path(spec.origin) if spec and spec.origin else None
    if origin is None or origin.suffix != ".py":
        return None
    try:
        tree = ast.parse(origin.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None  # importing it says what is wrong, in one line (envkit.train.rewards.resolve_reward)
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}
    if function in names or "__getattr__" in names or "*" in names:
        return None
    functions = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    close = difflib.get_close_matches(function, functions, n=1)
    hint = f"did you mean {close[0]}?" if close else f"it defines {', '.join(functions) or 'no function'}"
    return f"{origin.name} has no function {function!r} ({hint})"
