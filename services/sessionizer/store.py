"""A partition's state of one kind, which records its own changes.

Each stage keeps its per-partition state in these stores and writes what changed in a batch to
its changelog in the batch's transaction (compare quix-streams' `PartitionTransaction`). Every
change goes through the store (`put`, `pop`, or `for_update` for a value changed in place), so
no change can be left out of the changelog by forgetting to note it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=tuple[object, ...] | int)
V = TypeVar("V")


class TrackedState(Generic[K, V]):
    __slots__ = ("_changed", "_values")

    def __init__(self) -> None:
        self._values: dict[K, V] = {}
        self._changed: set[K] = set()

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: K) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[K]:
        return iter(self._values)

    def get(self, key: K) -> V | None:
        """The value, to read; changing it in place needs `for_update`."""
        return self._values.get(key)

    def values(self) -> Iterator[V]:
        return iter(self._values.values())

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(self._values.items())

    def for_update(self, key: K) -> V | None:
        """The value, to change in place: it goes to the changelog with the batch."""
        value = self._values.get(key)
        if value is not None:
            self._changed.add(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._values[key] = value
        self._changed.add(key)

    def pop(self, key: K) -> V | None:
        """Remove the value; the changelog gets a tombstone for it."""
        value = self._values.pop(key, None)
        if value is not None:
            self._changed.add(key)
        return value

    def take_changes(self) -> list[tuple[K, V | None]]:
        """The keys changed since the last call, sorted, with their values (None: removed)."""
        changed, self._changed = self._changed, set()
        return [(key, self._values.get(key)) for key in sorted(changed)]

    def load(self, key: K, value: V | None) -> None:
        """A value read back from the changelog: not a change."""
        if value is None:
            self._values.pop(key, None)
        else:
            self._values[key] = value
