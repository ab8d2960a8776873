"""The checks across a recipe's fields and against the disk, once it is read: each field alone is the schema's
(types, bounds); here what depends on several fields (exactly one of name or build), on the disk (the dataset
file and its first row, a reward module) or on TRL's rules (the generation batch).  Every problem is collected,
each at the line of the value it names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from envkit.recipe.batch import generation_batch_problem
from envkit.recipe.compose import node_at
from envkit.recipe.dataset import data_file, first_row, missing_columns, template_fields
from envkit.recipe.paths import FileProblem
from envkit.recipe.reward_lookup import reward_problem
from envkit.recipe.schema import LINEAR_MODULES, DatasetSpec, Recipe
from envkit.recipe.topology import check_topology

if TYPE_CHECKING:
    from envkit.errors import RecipeError
    from envkit.recipe.load import Where

# fail(keys, message): a problem at the value that keys name (("rewards", 0, "name"))
Fail = Callable[[tuple[str | int, ...], str], None]


def check(recipe: Recipe, root: yaml.Node, where: Where, base: Path) -> list[RecipeError]:
    """Checks across fields and against the disk (dataset file, reward modules, exclusive keys); every problem.
    The dataset's paths become absolute (None where missing); ``base`` is the recipe's folder."""
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
    for key, value in _dataset_files({"path": data.path, "eval_path": data.eval_path}, base, fail).items():
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
    check_topology(recipe, fail, base)
    return errors


def check_disk(data: dict, root: yaml.Node, where: Where, base: Path) -> list[RecipeError]:
    """The dataset files and reward modules of a recipe that did not bind (a wrong type elsewhere): read from its
    plain data, each one checked whose value is a string."""
    errors: list[RecipeError] = []
    fail = _failing(errors, root, where)
    dataset, rewards = data.get("dataset"), data.get("rewards")
    if isinstance(dataset, dict):
        _dataset_files(dataset, base, fail)
    if isinstance(rewards, list):
        _check_rewards([r.get("name") if isinstance(r, dict) else None for r in rewards], base, fail)
    return errors


def _failing(errors: list[RecipeError], root: yaml.Node, where: Where) -> Fail:
    """fail(keys, message): an error at the line of the value ``keys`` name (("rewards", 0, "name")), into errors."""
    def fail(keys: tuple[str | int, ...], message: str) -> None:
        path = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")
        errors.append(where.error(node_at(root, *keys), path, message))

    return fail


def _dataset_files(values: dict, base: Path, fail: Fail) -> dict[str, str | None]:
    """dataset.path and eval_path (those set as text) as absolute paths of existing files; a problem each for one
    missing or unreadable, and None in its place."""
    found = {}
    for key in ("path", "eval_path"):
        if not isinstance(values.get(key), str):
            continue
        try:
            found[key] = data_file(base, values[key])
        except FileProblem as problem:
            fail(("dataset", key), str(problem))
            found[key] = None
    return found


def _check_rewards(names: list, base: Path, fail: Fail) -> None:
    """Each reward name given as text, looked up without importing anything (reward_problem)."""
    for i, name in enumerate(names):
        problem = reward_problem(name, base) if isinstance(name, str) else None
        if problem:
            fail(("rewards", i, "name"), problem)


def _check_eval(recipe: Recipe, fail: Fail) -> None:
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


def _check_prompt_fields(data: DatasetSpec, fail: Fail) -> None:
    """The template parses; a local JSONL's first row or a CSV's header has the fields the prompt and answer read."""
    if data.prompt_template is not None:
        try:
            template_fields(data.prompt_template)
        except ValueError as exc:
            fail(("dataset", "prompt_template"), f"not a str.format template: {exc}")
            return
    if data.path is None or Path(data.path).suffix.lower() not in (".jsonl", ".csv"):  # JSON, Parquet: when loaded
        return
    first = first_row(data.path)
    if not isinstance(first, dict):
        fail(("dataset", "path"), "the first line is not a JSON object" if data.path.lower().endswith(".jsonl")
             else "no header line")
        return
    problem = missing_columns(data, list(first))
    if problem:
        key, _, message = problem.partition(": ")
        fail(tuple(key.split(".")), f"{message} in the first row of {data.path}")
