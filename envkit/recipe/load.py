"""Load a recipe YAML into envkit.recipe.schema, with one-line errors that name file, line and field.

The YAML is composed (not loaded) so every value keeps its node and thus its line; the walk
follows the dataclass annotations.  Every problem becomes a RecipeError whose message is one
line, ``recipe.yaml:12: grpo.learnig_rate: unknown key (did you mean learning_rate?)``.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import hashlib
import importlib.machinery
import importlib.util
import json
import math
import re
import string
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from envkit.recipe.schema import BOUNDS, DatasetSpec, GrpoSpec, Recipe, gpu_count
from envkit.recipe.trl_fields import OWNED, key_problem, trl_type

BUILTIN_REWARDS = ("format", "exact_answer", "length")
# A local dataset file's suffix -> the datasets builder that reads it.
DATA_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
# YAML 1.2's float syntax (its core schema); PyYAML follows YAML 1.1, which needs a dot: 1.0e-4, not 1e-4.
YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+")


class RecipeError(ValueError):
    """A recipe problem, printed as one line by the CLI (exit 2).

    Keys, values and paths come from the user's YAML: line breaks and other unprintable characters
    in them are escaped (``learning\\nrate``) so the message stays one line.
    """

    def __init__(self, message: str):
        super().__init__("".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in message))


class _Where:
    def __init__(self, source: str):
        self.source = source

    def error(self, node: yaml.Node | None, path: str, message: str) -> RecipeError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return RecipeError(f"{self.source}{line}: {path + ': ' if path else ''}{message}")


MAX_BYTES = 1024 * 1024  # a recipe is ~1 KB; the bound keeps a wrong file (a log, a dataset) from a minute of parsing


def read_recipe(path: str | Path) -> str:
    """A recipe file's text, UTF-8 and at most MAX_BYTES, or a one-line RecipeError naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise RecipeError(f"{path}: larger than {MAX_BYTES // 2**20} MiB, not a recipe")
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
        context = f" ({exc.context} at line {opened.line + 1})" if opened and opened is not mark and opened.line != mark.line else ""
        raise RecipeError(f"{source}{line}: invalid YAML: {exc.problem or exc.context}{context}") from None
    except (yaml.YAMLError, ValueError) as exc:  # reader errors (control characters), odd encodings
        raise RecipeError(f"{source}: invalid YAML: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    except RecursionError:  # the composer recurses once per nesting level
        raise RecipeError(f"{source}: invalid YAML: nested too deeply") from None
    if root is None:
        raise RecipeError(f"{source}: empty recipe (expected a mapping with version: 1)")
    try:
        recipe = _build(Recipe, root, "", where)
    except RecursionError:
        raise where.error(root, "", "recursive YAML aliases are not allowed") from None
    recipe.source = source
    _check(recipe, root, where, Path(source).parent)
    return recipe


def _build(cls: type, node: yaml.Node, path: str, where: _Where) -> Any:
    if not isinstance(node, yaml.MappingNode):
        raise where.error(node, path, f"expected a mapping, got {_kind(node)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("yaml", True)}
    values: dict[str, Any] = {}
    passed: dict[str, Any] = {}  # grpo: TRL's GRPOConfig fields beyond envkit's (envkit.recipe.trl_fields)
    for key_node, value_node in node.value:
        key = _scalar(key_node, path, where)
        if key in values or key in passed:
            raise where.error(key_node, _join(path, str(key)), "duplicate key")
        if cls is GrpoSpec and isinstance(key, str) and key not in fields:
            kind = None if key in OWNED else trl_type(key)
            if kind is None:
                raise where.error(key_node, _join(path, key), key_problem(key, list(fields)))
            passed[key] = _value(kind, value_node, _join(path, key), where)
            continue
        if not isinstance(key, str) or key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(fields)})"
            raise where.error(key_node, _join(path, str(key)), f"unknown key{hint}")
        values[key] = _value(hints[key], value_node, _join(path, key), where)
    if passed:
        values["trl"] = passed
    for name, f in fields.items():
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise where.error(node, _join(path, name), "missing required key")
    return cls(**values)


def _value(kind: Any, node: yaml.Node, path: str, where: _Where) -> Any:
    if dataclasses.is_dataclass(kind):
        return _build(kind, node, path, where)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType) and isinstance(node, yaml.SequenceNode):
        kind = next((k for k in args if typing.get_origin(k) is list), kind)  # `[0, 1]` for `list[int] | int`
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is list:
        if not isinstance(node, yaml.SequenceNode):
            raise where.error(node, path, f"expected a list, got {_kind(node)}")
        return [_value(args[0], item, f"{path}[{i}]", where) for i, item in enumerate(node.value)]
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and (kind is Any or _accepts(kind, {})):
        return _plain(node, path, where)  # a TRL field's free-form mapping (generation_kwargs) or any value
    value = _scalar(node, path, where)
    if isinstance(value, str) and node.style is None and YAML12_FLOAT.fullmatch(value) and _accepts(kind, 0.5):
        value = float(value)  # 1e-4: a float in YAML 1.2, a string under PyYAML's YAML 1.1 rule
    if _accepts(kind, value):
        return float(value) if kind is float and isinstance(value, int) else value
    close = difflib.get_close_matches(value, _choices(kind), n=1) if isinstance(value, str) else []
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise where.error(node, path, f"expected {_describe(kind)}, got {_show(value)}{hint}")


def _choices(kind: Any) -> list[str]:
    """The string values a Literal (or a union holding Literals) allows."""
    if typing.get_origin(kind) is Literal:
        return [v for v in typing.get_args(kind) if isinstance(v, str)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return [v for k in typing.get_args(kind) for v in _choices(k)]
    return []


def _accepts(kind: Any, value: Any) -> bool:
    if kind is Any:
        return True
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(k, value) for k in typing.get_args(kind))
    if origin is Literal:
        return any(value == v and type(value) is type(v) for v in typing.get_args(kind))
    if origin is list:  # a single value never fills a list (lists are walked in _value)
        return False
    if kind is type(None):
        return value is None
    if kind is float:  # .inf and .nan are YAML floats; no recipe number means them
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _scalar(node: yaml.Node, path: str, where: _Where) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise where.error(node, path, f"expected a single value, got {_kind(node)}")
    try:
        return yaml.SafeLoader("").construct_object(node)
    except yaml.YAMLError as exc:
        raise where.error(node, path, f"cannot read value: {getattr(exc, 'problem', None) or exc}") from None
    except (ValueError, KeyError, AttributeError, IndexError, TypeError):  # an explicit tag on a wrong value: !!int abc, !!bool maybe
        raise where.error(node, path, f"cannot read value {node.value!r:.40} as {node.tag.rpartition(':')[2]}") from None


def _plain(node: yaml.Node, path: str, where: _Where) -> Any:
    """A mapping or list as plain Python (keys and values as YAML reads them)."""
    try:
        return yaml.SafeLoader("").construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError) as exc:  # TypeError: a list or mapping as a mapping's key
        raise where.error(node, path, f"cannot read value: {getattr(exc, 'problem', None) or exc}") from None


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(k) for k in typing.get_args(kind))
    if origin is Literal:
        return " or ".join(repr(v) if isinstance(v, str) else str(v) for v in typing.get_args(kind))
    if origin is list:
        return "a list"
    return {type(None): "null", float: "a finite number", int: "an integer", bool: "true/false", str: "a string",
            dict: "a mapping"}.get(kind, str(kind))


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, (bool, type(None))) else str(value).lower().replace("none", "null")
    return f"{type(value).__name__} {text[:40]}"


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


def _check(recipe: Recipe, root: yaml.Node, where: _Where, base: Path) -> None:
    """Checks across fields and against the disk: dataset file, reward import, exclusive keys."""
    model, data = recipe.model, recipe.dataset
    if (model.name is None) == (model.build is None):
        raise where.error(_node(root, "model"), "model", "give exactly one of name or build")
    if (data.path is None) == (data.name is None):
        raise where.error(_node(root, "dataset"), "dataset", "give exactly one of path (a local file) or name (registry)")
    _check_eval(recipe, root, where)
    for key in ("path", "eval_path"):
        if getattr(data, key) is not None:
            setattr(data, key, _data_file(base, getattr(data, key),
                                          lambda message, key=key: where.error(_node(root, "dataset", key), f"dataset.{key}", message)))
    if not recipe.rewards:
        raise where.error(_node(root, "rewards"), "rewards", "needs at least one reward")
    for i, reward in enumerate(recipe.rewards):
        problem = reward_problem(reward.name, base)
        if problem:
            raise where.error(_node(root, "rewards", i, "name"), f"rewards[{i}].name", problem)
    for key, bound in BOUNDS.items():
        section, name = key.split(".")
        value = getattr(getattr(recipe, section), name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not bound.admits(value):  # not null, not auto
            raise where.error(_node(root, section, name), key, f"must be {bound.describe()}, got {value}"
                              + (f": {bound.why}" if bound.why else ""))
    problem = generation_batch_problem(recipe)
    if problem:
        raise where.error(_node(root, "grpo", "num_generations"), "grpo.num_generations", problem)
    _check_prompt_fields(data, root, where)
    rank = recipe.vllm.max_lora_rank
    if rank is not None and rank < recipe.lora.r:
        raise where.error(_node(root, "vllm", "max_lora_rank"), "vllm.max_lora_rank",
                          f"must be at least lora.r ({recipe.lora.r}), got {rank}: vLLM cannot load a LoRA adapter of a higher rank")
    if recipe.backend == "unsloth" and recipe.vllm.mode == "server" and recipe.vllm.enabled is not False:
        raise where.error(_node(root, "vllm", "mode"), "vllm.mode", "backend: unsloth generates with its own vLLM in the "
                          "training process: use mode: colocate")
    _check_launch(recipe, root, where, base)


def _check_eval(recipe: Recipe, root: yaml.Node, where: _Where) -> None:
    """At most one source of evaluation rows; an eval_strategy only with one."""
    data = recipe.dataset
    given = [k for k in ("eval_path", "eval_split", "test_size") if getattr(data, k) is not None]
    if len(given) > 1:
        raise where.error(_node(root, "dataset", given[1]), f"dataset.{given[1]}", f"give at most one of eval_path, eval_split "
                          f"and test_size (also given: {given[0]})")
    if data.eval_split is not None and data.name is None:
        raise where.error(_node(root, "dataset", "eval_split"), "dataset.eval_split", "a split of the registry dataset "
                          "needs dataset.name; a local file: eval_path")
    size = data.test_size
    if size is not None and size >= 1 and size != int(size):
        raise where.error(_node(root, "dataset", "test_size"), "dataset.test_size", f"a fraction below 1 or a whole count of "
                          f"rows, got {size}")
    if not given and recipe.grpo.trl.get("eval_strategy", "no") != "no":
        raise where.error(_node(root, "grpo", "eval_strategy"), "grpo.eval_strategy", "nothing to evaluate: give "
                          "dataset.eval_path, eval_split or test_size")


def _check_launch(recipe: Recipe, root: yaml.Node, where: _Where, base: Path) -> None:
    """GPU assignment, vLLM parallelism and distributed settings (envkit.launch.plan relies on these)."""
    v, res, dist = recipe.vllm, recipe.resources, recipe.distributed

    def fail(keys: tuple[str | int, ...], message: str) -> RecipeError:
        return where.error(_node(root, *keys), ".".join(map(str, keys)), message)

    for name in ("tensor_parallel_size", "data_parallel_size"):
        if getattr(v, name) < 1:
            raise fail(("vllm", name), f"must be at least 1, got {getattr(v, name)}")
    for name in ("port", "group_port"):
        if not 1 <= getattr(v.server, name) <= 65535:
            raise fail(("vllm", "server", name), f"must be a port number (1-65535), got {getattr(v.server, name)}")
    if v.server.port == v.server.group_port:
        raise fail(("vllm", "server", "group_port"), f"must differ from vllm.server.port ({v.server.port})")
    if v.server.timeout_s <= 0:
        raise fail(("vllm", "server", "timeout_s"), "must be positive")
    for name in ("generation_gpus", "training_gpus"):
        gpus = getattr(res, name)
        if isinstance(gpus, int) and gpus < 1:
            raise fail(("resources", name), f"a count must be at least 1, got {gpus}")
        if isinstance(gpus, list) and (not gpus or min(gpus) < 0 or len(set(gpus)) < len(gpus)):
            raise fail(("resources", name), f"needs distinct GPU indices (0, 1, ...), got {gpus}")
    if isinstance(res.generation_gpus, list) and isinstance(res.training_gpus, list):
        shared = sorted(set(res.generation_gpus) & set(res.training_gpus))
        if shared:
            raise fail(("resources", "training_gpus"), f"GPU {shared[0]} is also a generation GPU: TRL refuses a GPU "
                       "shared by the vLLM server and a trainer")
    generation = gpu_count(res.generation_gpus)
    if v.mode == "server" and v.enabled is not False:
        if not generation:
            raise fail(("resources", "generation_gpus"), "vllm.mode: server needs the GPUs of the vLLM server, e.g. "
                       "generation_gpus: [0]")
        if v.tensor_parallel_size * v.data_parallel_size != generation:
            raise fail(("vllm", "tensor_parallel_size"), f"tensor_parallel_size x data_parallel_size = "
                       f"{v.tensor_parallel_size * v.data_parallel_size}, but resources.generation_gpus has {generation}: "
                       "make the product match (TP shards one model, DP replicates it)")
    else:
        if v.mode == "server":
            raise fail(("vllm", "mode"), "server mode needs vLLM: drop vllm.enabled: false or use mode: colocate")
        if generation:
            raise fail(("resources", "generation_gpus"), "only vllm.mode: server uses generation GPUs (colocate "
                       "generates on the training GPUs)")
        if v.data_parallel_size != 1:
            raise fail(("vllm", "data_parallel_size"), "applies to the vLLM server only (vllm.mode: server)")
        ranks = gpu_count(res.training_gpus) or 1
        if ranks % v.tensor_parallel_size:
            raise fail(("vllm", "tensor_parallel_size"), f"{v.tensor_parallel_size} must divide the {ranks} training "
                       "rank(s): colocated vLLM shards over groups of training ranks")
    if dist.num_machines < 1 or not 0 <= dist.machine_rank < dist.num_machines:
        raise fail(("distributed", "machine_rank"), f"needs 0 <= machine_rank < num_machines, got {dist.machine_rank} "
                   f"of {dist.num_machines}")
    if dist.num_machines > 1 and not dist.main_process_ip:
        raise fail(("distributed", "main_process_ip"), "num_machines > 1 needs the address of machine 0")
    if dist.main_process_port is not None and not 1 <= dist.main_process_port <= 65535:
        raise fail(("distributed", "main_process_port"), f"must be a port number (1-65535), got {dist.main_process_port}")
    if dist.accelerate_config is not None:
        if dist.backend != "ddp":
            raise fail(("distributed", "accelerate_config"), f"replaces backend: {dist.backend}; give one of the two")
        dist.accelerate_config = _local_file(base, dist.accelerate_config, lambda message: fail(("distributed", "accelerate_config"), message))
    launched = dist.num_machines > 1 or dist.backend != "ddp" or dist.accelerate_config is not None
    if launched and res.training_gpus is None and v.mode != "server":  # server mode trains on the GPUs left
        raise fail(("resources", "training_gpus"), "distributed settings start trainer ranks: name their GPUs "
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
    return (f"grpo.per_device_train_batch_size{per_rank} x gradient_accumulation_steps = {completions} is not a multiple "
            f"of grpo.num_generations ({g.num_generations}): TRL refuses it; make the batch a multiple of it")


def template_fields(template: str) -> list[str]:
    """The row fields a ``str.format`` template reads (``{question}``, ``{meta[id]}`` -> meta); ValueError if malformed.

    A positional field (``{}``, ``{0}``) is returned as written: the row is passed by name, so it cannot be filled.
    """
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    return list(dict.fromkeys(name.split(".")[0].split("[")[0] or "{}" for name in names))


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


def _check_prompt_fields(data: DatasetSpec, root: yaml.Node, where: _Where) -> None:
    """The template parses; for a local JSONL, its first row has the fields the prompt and answer read."""
    if data.prompt_template is not None:
        try:
            template_fields(data.prompt_template)
        except ValueError as exc:
            raise where.error(_node(root, "dataset", "prompt_template"), "dataset.prompt_template",
                              f"not a str.format template: {exc}") from None
    if data.path is None or Path(data.path).suffix.lower() not in (".jsonl", ".csv"):  # JSON, Parquet: checked when loaded
        return
    first = _first_row(data.path)
    if not isinstance(first, dict):
        raise where.error(_node(root, "dataset", "path"), "dataset.path", "the first line is not a JSON object"
                          if data.path.lower().endswith(".jsonl") else "no header line")
    problem = missing_columns(data, list(first))
    if problem:
        key, _, message = problem.partition(": ")
        raise where.error(_node(root, *key.split(".")), key, f"{message} in the first row of {data.path}")


def _first_row(path: str):
    """The first row of a JSONL file (its first non-blank line, parsed), or a CSV's header as a mapping of its
    column names; None if it cannot be read or parsed."""
    try:
        with open(path, encoding="utf-8", newline="") as lines:
            if path.lower().endswith(".csv"):
                header = next(csv.reader(lines), None)
                return dict.fromkeys(header) if header else None
            line = next((line for line in lines if line.strip()), "")
        return json.loads(line)
    except (OSError, UnicodeDecodeError, ValueError, csv.Error):
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
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
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
        return f"cannot find module {top!r} beside the recipe or on the Python path (put it beside the recipe, or set PYTHONPATH)"
    return None
