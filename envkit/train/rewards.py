"""Builtin reward functions, in TRL's signature ``f(prompts, completions, **columns) -> list[float]``.

Completions are strings, or message lists when the dataset is conversational; the dataset's
``answer`` column arrives as a keyword argument.
"""

from __future__ import annotations

import re
from pathlib import Path

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_FINAL = re.compile(r"####\s*(-?[\d,]*\.?\d+)")


def _text(completion) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else completion


def extract_number(text: str) -> str | None:
    """The GSM8K answer (``#### 42``) or else the last number in the text, without commas."""
    found = _FINAL.search(text)
    if found:
        return found.group(1).replace(",", "")
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "").rstrip(".") if numbers else None


def _same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def exact_answer(prompts, completions, answer=None, **_) -> list[float]:
    """1.0 when the completion's number equals the reference answer's, else 0.0."""
    answers = answer if answer is not None else [None] * len(completions)
    return [1.0 if _same(extract_number(_text(c)), extract_number(str(a))) else 0.0 for c, a in zip(completions, answers)]


def format(prompts, completions, **_) -> list[float]:  # shadows the builtin: it is the recipe's reward name
    """1.0 when the completion ends with a final answer line ``#### <number>``, else 0.0."""
    return [1.0 if re.search(r"####\s*-?[\d,.]+\s*$", _text(c)) else 0.0 for c in completions]


def length(prompts, completions, **_) -> list[float]:
    """Prefers concise completions: 1.0 for an empty one down to 0.0 at 1000 characters."""
    return [max(0.0, 1.0 - len(_text(c)) / 1000) for c in completions]


def digits(prompts, completions, **_) -> list[float]:
    """The share of the completion's characters that are digits (0.0 for an empty one): a number-shaped answer,
    what a model that knows no arithmetic yet can learn first (the tiny recipe's signal)."""
    return [sum(ch.isdigit() for ch in _text(c)) / len(_text(c)) if _text(c) else 0.0 for c in completions]


def resolve_reward(name: str, folder: Path | None = None):
    """The reward function for a builtin name or ``module:function`` (the loader checked its form and that the
    module exists, beside the recipe in ``folder`` or on the path: envkit.recipe.reward_lookup.reward_problem).
    Importing it runs the user's code, so this happens when training starts, never while a recipe is only loaded;
    a module that fails or exits at import is one line."""
    import importlib
    import sys

    from envkit.errors import RecipeError
    from envkit.exitcodes import Terminated
    from envkit.recipe.reward_lookup import BUILTIN_REWARDS, reward_module, spec_beside

    if name in BUILTIN_REWARDS:
        return globals()[name]
    module_name, _, function = name.partition(":")
    if spec_beside(reward_module(name), folder) is not None and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))  # the module beside the recipe, as the loader found it
    try:
        module = importlib.import_module(module_name)
    except Terminated:  # SIGTERM while it imports (envkit.cli.run): stop, as everywhere else
        raise
    except (Exception, SystemExit) as exc:  # SystemExit: a module that calls sys.exit() at import
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise RecipeError(f"reward {name!r}: cannot import {module_name!r}: {type(exc).__name__}: {detail}") from None
    found = getattr(module, function, None)
    if not callable(found):
        raise RecipeError(f"reward {name!r}: {module_name!r} has no function {function!r}")
    return found
