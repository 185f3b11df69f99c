"""What the server remembers between requests stays within its bounds (`core.kept.Kept`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gqlbatch.core.kept import Kept


def test_the_least_recently_used_is_forgotten_first() -> None:
    kept: Kept[str, int] = Kept(2)
    kept["a"], kept["b"] = 1, 2
    assert kept.get("a") == 1  # now b is the least recently used
    kept["c"] = 3
    assert (kept.get("a"), kept.get("b"), kept.get("c")) == (1, None, 3)


def test_values_are_forgotten_past_their_weight() -> None:
    kept: Kept[str, str] = Kept(100, max_weight=10)
    kept.put("a", "aaaa", 4)
    kept.put("b", "bbbb", 4)
    kept.put("c", "cccc", 4)  # 12 > 10: a goes
    assert (kept.get("a"), len(kept), kept.weight) == (None, 2, 8)
    kept.put("huge", "x" * 11, 11)  # heavier than all the bound: never kept, nothing forgotten
    assert (kept.get("huge"), len(kept), kept.weight) == (None, 2, 8)


def test_recall_makes_once_and_keeps_nothing_when_making_fails() -> None:
    kept: Kept[str, int | None] = Kept(4)
    made = []
    assert kept.recall("k", lambda: made.append(1)) is None  # None is a value like any other
    assert kept.recall("k", lambda: made.append(2)) is None
    assert made == [1] and (kept.hits, kept.misses) == (1, 1)

    def fails() -> int:
        raise ValueError("no")

    for _ in range(2):
        with pytest.raises(ValueError):
            kept.recall("bad", fails)
    assert len(kept) == 1


@given(
    st.lists(st.tuples(st.integers(0, 20), st.integers(0, 30)), max_size=200),
    st.integers(1, 8),
    st.integers(1, 60),
)
def test_the_bounds_hold_whatever_is_put(
    puts: list[tuple[int, int]], entries: int, max_weight: int
) -> None:
    kept: Kept[int, int] = Kept(entries, max_weight=max_weight)
    for key, weight in puts:
        kept.put(key, weight, weight)
        assert len(kept) <= entries and kept.weight <= max_weight
        # the last value put is kept unless it alone is too heavy; weights add up
        assert (kept.get(key) == weight) is (weight <= max_weight)
    found = [kept.get(key) for key in range(21)]
    assert kept.weight == sum(w for w in found if w is not None)  # each value is its weight
