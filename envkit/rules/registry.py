"""The check catalog's one type: a Registry of checks (or patches), each with a stable ID and a short name.

Every registry envkit has is listed in envkit.catalog (the doctor's checks, the recipe checks, the launch checks,
the checks from knowledge/incompatibilities.json, the TRL patches); `envkit doctor --explain` finds any entry of
any of them.  IDs are one space: registering an ID that any registry already holds is refused, whichever
registry it is in (tests/test_catalog.py checks the whole catalog).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from envkit.facts import Facts
    from envkit.rules.base import Finding


class Entry(Protocol):
    id: str  # EK301, EKP001
    name: str  # vllm-torch, server-lora-sync


E = TypeVar("E", bound=Entry)

# Every registered ID -> the name of the registry that holds it: one ID space across all registries.
_OWNERS: dict[str, str] = {}


class Registry(Mapping[str, E], Generic[E]):
    """Entries by ID, iterated in ID order.  ``run`` is the one runner of checks: each entry's finding on the facts
    (and the registry's inputs, for the recipe and launch checks), in ID order."""

    def __init__(self, name: str) -> None:
        self.name = name  # says where an ID is taken: "doctor checks", "launch checks"...
        self._entries: dict[str, E] = {}

    def register(self, entry: E) -> E:
        owner = _OWNERS.get(entry.id)
        if owner is not None:
            raise ValueError(f"duplicate check id {entry.id}: already in the {owner}")
        _OWNERS[entry.id] = self.name
        self._entries[entry.id] = entry
        return entry

    def find(self, key: str) -> E | None:
        """An entry by ID (``EK301``, any case) or by name (``vllm-torch``)."""
        key = key.strip()
        return self._entries.get(key.upper()) or next((e for e in self._entries.values() if e.name == key.lower()),
                                                      None)

    def run(self, facts: Facts, *inputs) -> list[Finding]:
        """The finding of every check (envkit.rules.base.Rule.finding) on ``facts`` and ``inputs``, in ID order."""
        return [check.finding(facts, *inputs) for check in self.values()]

    def __getitem__(self, key: str) -> E:
        return self._entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
