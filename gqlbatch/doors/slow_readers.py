"""Clients that do not read their answers: cut once their answer has waited too long.

A client that never reads holds the bytes written for it, in the server's memory (issue 24:
eight such clients held 1.2 GiB for a minute and more, for JSON, NDJSON and websocket
answers alike). Every connection that has sent a request is watched; once a second, each
whose written bytes have waited `write_timeout_s` with none taken is cut, and its buffers go.
A client that reads, however slowly, is never cut. Part of the application, not of the
listener: gunicorn's workers serve it too.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from gqlbatch.execution import metrics

__all__ = ["SLOW_READERS", "SlowReaders", "cutting_slow_readers"]


class SlowReaders:
    """The connections of one application, and when each last had its answer taken."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._watched: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self._waiting: dict[asyncio.BaseTransport, tuple[int, float]] = {}

    def watch(self, transport: asyncio.BaseTransport | None) -> None:
        """Watch the connection of a request (a set's add: each connection once)."""
        if transport is not None:
            self._watched.add(transport)

    async def cut(self) -> None:
        """Cut the slow readers as they go past the deadline; runs until cancelled."""
        while True:
            await asyncio.sleep(min(self._timeout_s / 4, 1.0))
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> None:
        """Cut each connection whose written bytes have waited the deadline with none taken."""
        waiting: dict[asyncio.BaseTransport, tuple[int, float]] = {}
        for transport in list(self._watched):
            # Asked for what it does, not for its class: uvloop's transports (what `gqlbatch
            # serve` runs on) are not subclasses of asyncio's, and a check of the class
            # skipped every connection there (issue 24: eight clients held 360 MiB).
            buffered = getattr(transport, "get_write_buffer_size", None)
            size = buffered() if buffered is not None else 0
            if size == 0:
                continue
            before, since = self._waiting.get(transport, (size + 1, now))
            since = now if size < before else since  # some were taken: it reads, slowly
            if now - since >= self._timeout_s:
                transport.abort()  # type: ignore[attr-defined]
                metrics.record_closed("slow_reader")
                continue
            waiting[transport] = (size, since)
        self._waiting = waiting


SLOW_READERS: Final = web.AppKey("slow_readers", SlowReaders)


async def cutting_slow_readers(app: web.Application) -> AsyncIterator[None]:
    """The cleanup context that cuts *app*'s slow readers while it serves."""
    task = asyncio.create_task(app[SLOW_READERS].cut(), name="gqlbatch-server:slow-readers")
    yield
    task.cancel()
    await asyncio.wait([task])
