"""Hypothesis mutations of a real document (a recipe, a facts file): the adversarial tests start from valid input
and break one place of it, which reaches deeper into the loaders than random documents do."""

from __future__ import annotations

from typing import Any, Callable

from hypothesis import strategies as st


def mutate(data: Any, draw, values, new_keys, same_type: Callable | None = None, depth: int = 0) -> None:
    """Change one place of ``data`` in place: walk down, replace a value (with ``same_type``, sometimes one of
    its own type), drop a key or add one (a key from ``new_keys``, a value from ``values``)."""
    if isinstance(data, dict) and data and (depth == 0 or draw(st.booleans())):
        key = draw(st.sampled_from(sorted(data, key=repr)))
        action = draw(st.sampled_from(["down", "down", "replace", "drop", "add"] + (["typed", "typed"] if same_type else [])))
        if action in ("down", "typed") and isinstance(data[key], (dict, list)) and data[key]:
            mutate(data[key], draw, values, new_keys, same_type, depth + 1)
        elif action == "typed":
            data[key] = same_type(data[key], draw)
        elif action == "drop":
            del data[key]
        elif action == "add":
            data[draw(new_keys)] = draw(values)
        else:
            data[key] = draw(values)
    elif isinstance(data, list) and data:
        index = draw(st.integers(0, len(data) - 1))
        if isinstance(data[index], (dict, list)) and data[index] and draw(st.booleans()):
            mutate(data[index], draw, values, new_keys, same_type, depth + 1)
        else:
            data[index] = same_type(data[index], draw) if same_type and draw(st.booleans()) else draw(values)
