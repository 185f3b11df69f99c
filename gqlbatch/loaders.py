"""Coalescing of upstream calls through aiodataloader. The only module that imports it.

`Loaders` is built once per batch (aiodataloader binds the running loop, and its cache must not
outlive the batch) and its `fetch` is the executor's I/O capability.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from aiodataloader import DataLoader

from gqlbatch.call import Fetched, UpstreamCall, UpstreamResponse

__all__ = ["Loaders", "Send"]

Send = Callable[[UpstreamCall], Coroutine[Any, Any, UpstreamResponse]]


class _ReadLoader(DataLoader[UpstreamCall, "asyncio.Task[UpstreamResponse]"]):
    """GET and HEAD calls: identical calls in one batch share one upstream call.

    The batch function hands back one *task* per key instead of one response. aiodataloader
    resolves every key of a batch only when the whole batch function returns, so returning
    responses would make a fast call wait for the slowest call that happened to become ready in
    the same loop turn. A task per key lets each item go on the moment its own call finishes,
    while the loader's cache still shares one task between identical calls.
    """

    def __init__(self, send: Send) -> None:
        super().__init__()
        self._send = send

    async def batch_load_fn(self, keys: list[UpstreamCall]) -> list[asyncio.Task[UpstreamResponse]]:
        return [asyncio.create_task(self._send(call)) for call in keys]


class Loaders:
    """The per-batch fetch: reads coalesce, writes always go upstream, and both are counted."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._reads = _ReadLoader(self._counted_send)
        self._seen: set[UpstreamCall] = set()
        self.requested = 0
        self.sent = 0

    async def fetch(self, call: UpstreamCall) -> Fetched:
        """Fetch *call*, sharing the upstream call with identical reads of this batch."""
        self.requested += 1
        if not call.is_read:
            # POST, PUT, PATCH and DELETE are never merged or cached: each is its own call.
            return Fetched(await self._counted_send(call))
        coalesced = call in self._seen
        self._seen.add(call)
        task = await self._reads.load(call)
        return Fetched(await task, coalesced=coalesced)

    @property
    def saved(self) -> int:
        """Calls that coalescing made unnecessary so far."""
        return self.requested - self.sent

    async def _counted_send(self, call: UpstreamCall) -> UpstreamResponse:
        self.sent += 1
        return await self._send(call)
