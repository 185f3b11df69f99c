"""What a server remembers between requests, bounded: the values last used, by key (LRU), at
most so many of them and, where their sizes differ by orders of magnitude, at most so heavy in
all. Parsed GraphQL documents, their errors, compiled operations, plans and parsed items are
each kept in one of these.

Pure and stdlib-only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Kept"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Kept(Generic[K, V]):
    """Values by key, the least recently used forgotten first: past *entries* values, or past
    *max_weight* in all when it is given (each value weighs what it was put with; one heavier
    than that alone is never kept). *forgotten* is told each value it lets go of, with its
    key and weight, for an owner that counts what it keeps by more than weight."""

    def __init__(
        self,
        entries: int,
        *,
        max_weight: int | None = None,
        forgotten: Callable[[K, V, int], None] | None = None,
    ) -> None:
        self._entries = entries
        self._max_weight = max_weight
        self._forgotten = forgotten
        self._kept: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.weight = 0
        """What the values kept weigh together."""
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        """The value kept for *key*, now the most recently used; None when there is none."""
        found = self._kept.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._kept.move_to_end(key)
        return found[0]

    def put(self, key: K, value: V, weight: int = 0) -> None:
        """Keep *value* for *key*, forgetting the least recently used past the bounds."""
        if self._max_weight is not None and weight > self._max_weight:
            return
        old = self._kept.pop(key, None)
        if old is not None:
            self.weight -= old[1]
        self._kept[key] = (value, weight)
        self.weight += weight
        while len(self._kept) > self._entries or (
            self._max_weight is not None and self.weight > self._max_weight
        ):
            key, (value, gone) = self._kept.popitem(last=False)
            self.weight -= gone
            if self._forgotten is not None:
                self._forgotten(key, value, gone)

    __setitem__ = put

    def recall(self, key: K, make: Callable[[], V], weight: int = 0) -> V:
        """The value kept for *key*, else *make*'s, then kept (with *weight*). Nothing is kept
        when *make* raises: the same key makes again."""
        found = self._kept.get(key)
        if found is not None:
            self.hits += 1
            self._kept.move_to_end(key)
            return found[0]
        self.misses += 1
        value = make()
        self.put(key, value, weight)
        return value

    def __len__(self) -> int:
        return len(self._kept)
