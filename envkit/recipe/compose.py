"""A recipe's YAML as plain data for envkit.binding, each value's and key's line remembered.

The YAML is composed (never yaml.load'ed) so every value keeps its node and thus its line, and aliases are
expanded here against a budget (MAX_VALUES) instead of without bound.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import yaml

from envkit.binding import FAILED, PlainFloat, Problem, join

if TYPE_CHECKING:
    from envkit.errors import RecipeError
    from envkit.recipe.load import Where

MAX_VALUES = 100_000  # a recipe holds ~100 values (a long reward list a few hundred)
# YAML 1.2's float syntax (its core schema); PyYAML follows YAML 1.1, which needs a dot: 1.0e-4, not 1e-4.
YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+")


def compose(text: str, where: Where) -> yaml.Node:
    """The YAML's root node; invalid or empty YAML is one RecipeError (the line where it broke, and where an
    unclosed bracket or quote opened)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # An unclosed bracket or quote is noticed lines later: name where it opened too.
        opened = exc.context_mark if exc.problem and exc.context and exc.context_mark else None
        elsewhere = opened and opened is not mark and opened.line != mark.line
        context = f" ({exc.context} at line {opened.line + 1})" if elsewhere else ""
        raise where.at(mark.line + 1 if mark else None, "",
                       f"invalid YAML: {exc.problem or exc.context}{context}") from None
    except (yaml.YAMLError, ValueError) as exc:  # reader errors (control characters), odd encodings
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise where.at(None, "", f"invalid YAML: {first}") from None
    except RecursionError:  # the composer recurses once per nesting level
        raise where.at(None, "", "invalid YAML: nested too deeply") from None
    if root is None:
        raise where.at(None, "", "empty recipe (expected a mapping with version: 1)")
    return root


class Document:
    """A composed YAML document as plain data for envkit.binding, remembering each value's and key's line."""

    def __init__(self, where: Where):
        self.where = where
        self.left = MAX_VALUES  # the alias-expansion budget
        self.nodes: dict[str, yaml.Node] = {}
        self.keys: dict[str, yaml.Node] = {}
        self.errors: list[RecipeError] = []

    def read(self, root: yaml.Node) -> Any:
        """The whole document's value (plain); recursive aliases are one RecipeError."""
        try:
            return self.plain(root, "")
        except RecursionError:
            raise self.where.error(root, "", "recursive YAML aliases are not allowed") from None

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
                at = join(path, str(key))
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


def node_at(root: yaml.Node, *keys: str | int) -> yaml.Node:
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
