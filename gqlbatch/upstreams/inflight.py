"""Sharing identical in-flight reads across concurrent batches, on the upstreams that allow it
(`share_inflight`). Lives as long as the application; each batch's own deduplication is
`loaders.py`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from gqlbatch.core.wire import Send, UpstreamCall, UpstreamResponse

__all__ = ["SharedInflight"]


class SharedInflight:
    """Lets concurrent batches share identical in-flight reads on the upstreams that allow it.

    Two calls are shared only when they are equal in every part, headers (and so credentials)
    included, so one user's response never reaches another. Nothing is cached: a call is shared
    only while it is in flight.
    """

    def __init__(self, send: Send, upstreams: Collection[str]) -> None:
        self._send = send
        self._upstreams = frozenset(upstreams)
        self._inflight: dict[UpstreamCall, asyncio.Future[UpstreamResponse]] = {}
        self.shared = 0

    @property
    def sender(self) -> Send:
        """What a batch sends with: this object's `send` when an upstream shares in-flight
        reads, otherwise the client's own, without a pass-through await on every call."""
        return self.send if self._upstreams else self._send

    async def send(self, call: UpstreamCall) -> UpstreamResponse:
        """Send *call*, or wait for the identical call another batch already has in flight."""
        if not call.is_read or call.upstream not in self._upstreams:
            return await self._send(call)
        running = self._inflight.get(call)
        if running is not None:
            self.shared += 1
            # shield: one batch giving up (its deadline) must not cancel the others' call.
            return await asyncio.shield(running)
        task = asyncio.create_task(self._send(call), name="gqlbatch:shared-call")
        self._inflight[call] = task
        task.add_done_callback(lambda _: self._inflight.pop(call, None))
        return await asyncio.shield(task)
