"""Coalescing of upstream calls through aiodataloader. The only module that imports it.

Reads that a bulk route could merge go through the DataLoader, whose batch function merges the
lookups that become ready together. Other reads are only deduplicated, which a map of the
batch's calls does without the loader's per-call future and dispatch; writes are never shared.

`Loaders` is built once per batch (aiodataloader binds the running loop, and its cache must not
outlive the batch); its `fetch` is the executor's I/O capability. `SharedInflight` lives as long
as the application and lets concurrent batches share identical in-flight reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Collection, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from aiodataloader import DataLoader

from gqlbatch.core.config import BulkRoute
from gqlbatch.core.errors import UpstreamError
from gqlbatch.core.wire import Fetched, Send, UpstreamCall, UpstreamResponse
from gqlbatch.upstreams.bulk import BulkGroup, BulkRoutes, split_response

__all__ = ["Loaders", "Send", "SharedInflight"]

_T = TypeVar("_T")


class _ReadLoader(DataLoader[UpstreamCall, "asyncio.Task[Fetched]"]):
    """GET and HEAD calls that a bulk route could merge: identical calls share one upstream
    call, and lookups that become ready together are merged into plural calls (this batch
    function is DESIGN §7's).

    It hands back one *task* per key instead of one response. aiodataloader resolves every key
    of a dispatch only when the whole batch function returns, so returning responses would make
    a fast call wait for the slowest call that became ready in the same loop turn. A task per
    key lets each item go on the moment its own call finishes, while the loader's cache still
    shares one task between identical calls.
    """

    def __init__(self, loaders: Loaders) -> None:
        super().__init__()
        # Weak: the batch's Loaders own this loader, not the other way round. A strong
        # reference both ways made every finished batch a reference cycle, which only the
        # cyclic collector frees, so its responses outlived it (issue 9's 1.4 GB).
        self._loaders = weakref.proxy(loaders)

    async def batch_load_fn(self, keys: list[UpstreamCall]) -> list[asyncio.Task[Fetched]]:
        groups, singles = self._loaders.bulk.group(keys)
        spawn = self._loaders.spawn
        tasks = {call: spawn(self._single(call)) for call in singles}
        for group in groups:
            shared = spawn(self._loaders.send_bulk(group))
            for call, key in group.members:
                tasks[call] = spawn(_member(shared, key, group))
        return [tasks[call] for call in keys]

    async def _single(self, call: UpstreamCall) -> Fetched:
        response = await self._loaders.send(call)
        return Fetched(response)


async def _member(
    shared: asyncio.Task[dict[str, UpstreamResponse]], key: str, group: BulkGroup
) -> Fetched:
    responses = await shared
    described = group.call.path + "?" + "&".join(f"{k}={v}" for k, v in group.call.query)
    response = responses[key]
    return Fetched(response, bulk_call=f"GET {described}")


class Loaders:
    """The per-batch fetch: reads coalesce and merge, writes always go upstream, all counted.

    Attributes:
        requested: calls items asked for.
        sent: calls that went upstream.
        deduplicated: reads answered by an identical read of this batch.
        merged: lookups answered by a plural call, minus the plural calls made.
    """

    def __init__(self, send: Send, bulk_routes: Mapping[str, Sequence[BulkRoute]]) -> None:
        self._send = send
        self.bulk = BulkRoutes(bulk_routes)
        self._reads = _ReadLoader(self)
        self._seen: set[UpstreamCall] = set()
        self._unmergeable: dict[UpstreamCall, asyncio.Future[Fetched | UpstreamError]] = {}
        self.requested = 0
        self.sent = 0
        self.deduplicated = 0
        self.merged = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        """A task that lives no longer than this batch (see `close`)."""
        task = asyncio.create_task(coro, name="gqlbatch:call")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Cancel the calls still running when the batch ends (its deadline passed): nothing
        this batch started may outlive it."""
        pending = [t for t in self._tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        for task in pending:
            if not task.cancelled():
                task.exception()  # retrieved: a failure after the deadline has no one to tell

    async def fetch(self, call: UpstreamCall) -> Fetched:
        """Fetch *call*, sharing the upstream call with identical reads of this batch."""
        self.requested += 1
        if not call.is_read:
            # POST, PUT, PATCH and DELETE are never merged or cached: each is its own call.
            response = await self.send(call)
            return Fetched(response)
        coalesced = call in self._seen
        self._seen.add(call)
        self.deduplicated += coalesced
        if self.bulk.can_merge(call):
            fetched = await (await self._reads.load(call))
        else:
            fetched = await self._read_once(call)
        return dataclasses.replace(fetched, coalesced=True) if coalesced else fetched

    async def _read_once(self, call: UpstreamCall) -> Fetched:
        # A read no bulk route can merge gains nothing from waiting for the DataLoader's
        # dispatch, and its per-key future, task and callbacks cost the engine measurably
        # (BENCHMARKS.md). The first caller sends it from its own task; identical calls of this
        # batch wait for that answer, as they would for the loader's cached one.
        #
        # The future holds the answer or a *copy* of the error, without a traceback, and each
        # caller raises a copy of its own: an error raised from here has this frame in its
        # traceback, so if the future held that same error, error, frame and future would form
        # a cycle that keeps the whole batch alive after it ends.
        shared = self._unmergeable.get(call)
        if shared is None:
            shared = self._unmergeable[call] = asyncio.get_running_loop().create_future()
            await self._send_once(call, shared)
        # shield: a waiter giving up must not cancel the answer the first caller awaits.
        outcome = await asyncio.shield(shared)
        if isinstance(outcome, UpstreamError):
            raise _copy(outcome)
        return outcome

    async def _send_once(
        self, call: UpstreamCall, shared: asyncio.Future[Fetched | UpstreamError]
    ) -> None:
        try:
            response = await self.send(call)
        except asyncio.CancelledError:
            shared.cancel()  # the batch's deadline: every item of the batch is cancelled too
            raise
        except UpstreamError as exc:
            shared.set_result(_copy(exc))
            return
        shared.set_result(Fetched(response))

    async def send(self, call: UpstreamCall) -> UpstreamResponse:
        """Send one call upstream, counting every attempt it took."""
        try:
            response = await self._send(call)
        except UpstreamError as exc:
            self.sent += exc.attempts
            raise
        self.sent += response.attempts
        return response

    async def send_bulk(self, group: BulkGroup) -> dict[str, UpstreamResponse]:
        """Send a plural call and split its answer by key."""
        self.merged += len(group.keys) - 1
        response = await self.send(group.call)
        return {
            key: part.with_attempts(response.attempts)
            for key, part in split_response(group, response).items()
        }


def _copy(error: UpstreamError) -> UpstreamError:
    """The same error, without a traceback: what a shared answer may hold."""
    copy = type(error)(error.message)
    copy.attempts = error.attempts
    return copy


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
