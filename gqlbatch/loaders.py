"""Coalescing of upstream calls through aiodataloader. The only module that imports it.

`Loaders` is built once per batch (aiodataloader binds the running loop, and its cache must not
outlive the batch) and its `fetch` is the executor's I/O capability.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiodataloader import DataLoader

from gqlbatch.call import Fetched, UpstreamCall, UpstreamResponse
from gqlbatch.errors import UpstreamError

__all__ = ["Loaders", "Send"]

Send = Callable[[UpstreamCall], Awaitable[UpstreamResponse]]


class _ReadLoader(DataLoader[UpstreamCall, UpstreamResponse]):
    """GET and HEAD calls: identical calls in one batch share one upstream call."""

    def __init__(self, send: Send) -> None:
        super().__init__()
        self._send = send

    async def batch_load_fn(
        self, keys: list[UpstreamCall]
    ) -> list[UpstreamResponse | UpstreamError]:
        # One value or one error per key, in order. Errors are caught per call rather than with
        # gather(return_exceptions=True), which would hand a CancelledError back as a value.
        return list(await asyncio.gather(*(self._one(call) for call in keys)))

    async def _one(self, call: UpstreamCall) -> UpstreamResponse | UpstreamError:
        try:
            return await self._send(call)
        except UpstreamError as exc:
            return exc


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
        return Fetched(await self._reads.load(call), coalesced=coalesced)

    @property
    def saved(self) -> int:
        """Calls that coalescing made unnecessary so far."""
        return self.requested - self.sent

    async def _counted_send(self, call: UpstreamCall) -> UpstreamResponse:
        self.sent += 1
        return await self._send(call)
