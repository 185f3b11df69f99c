"""Plans kept for batches that come again and again (issue 15, "prepare at the cost of what
changed"): a screen sends the same reads on every visit, and validating and planning them
was a quarter of what a sub-request cost (BENCHMARKS.md).

A plan is immutable and holds nothing of the request that made it, so one plan serves every
request that sends the same batch: same items, same options, both read-only or not. Only
batches without bodies, headers or compensations are kept, so that no client's data or
credentials stay in memory after its request; and only small ones (`MAX_ITEMS`,
`MAX_KEY_CHARS`). A batch that is refused
is not kept: it is refused again, the same way.

A batch that differs a little (the same screen for another user: one id changed) misses its
plan, but most of its items were parsed before, at the same place of another batch:
`PlanCache.items` keeps those (the same rule: no bodies, headers or compensations), and only
what changed is parsed. Planning (the dependency graph) is done anew: it is a batch's, not
an item's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable

from gqlbatch.core.kept import Kept
from gqlbatch.core.plan import Plan
from gqlbatch.core.request import SubRequest, holds_private

__all__ = ["ITEMS_KEPT", "KEPT", "MAX_ITEMS", "MAX_KEY_CHARS", "PlanCache"]

KEPT = 256
"""Plans kept (LRU), per server."""
ITEMS_KEPT = 2048
"""Parsed items kept (LRU), per server: each is at most 512 characters of JSON and what it
parses to, a few MiB in all."""
MAX_KEY_CHARS = 16_384
"""The largest batch kept, as JSON text: a screen's reads are well below it."""
MAX_ITEMS = MAX_KEY_CHARS // len('{"path":""},')
"""More items than this can never fit MAX_KEY_CHARS, the smallest item being 12 characters:
such a batch is planned as it comes, not written out as JSON only to be found too long."""


class PlanCache:
    """One server's plans, by the JSON of the batch that made each."""

    def __init__(self, kept: int = KEPT, items_kept: int = ITEMS_KEPT) -> None:
        self._plans: Kept[str, Plan] = Kept(kept)
        self.items: Kept[Hashable, SubRequest] = Kept(items_kept)
        """Items parsed before, for the batches whose plan is not kept (`parse_batch`)."""

    def plan(
        self, items: object, options: object, read_only: bool, make: Callable[[], Plan]
    ) -> Plan:
        """The plan for this batch: a kept one, or *make*'s, then kept if it may be.

        Raises:
            BatchRejected: from *make*; nothing is kept.
        """
        key = _key(items, options, read_only)
        if key is None:
            return make()
        return self._plans.recall(key, make)

    def __len__(self) -> int:
        return len(self._plans)


def _key(items: object, options: object, read_only: bool) -> str | None:
    """The batch as JSON text, or None when it is not to be kept."""
    if not isinstance(items, list) or len(items) > MAX_ITEMS:
        return None
    for item in items:
        if not isinstance(item, dict) or holds_private(item):
            return None
    try:
        key = json.dumps([items, options, read_only], separators=(",", ":"))
    except (TypeError, ValueError):  # not plain JSON: never kept, never guessed at
        return None
    return key if len(key) <= MAX_KEY_CHARS else None
