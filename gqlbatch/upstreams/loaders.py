"""Coalescing of upstream calls through aiodataloader. The only module that imports it.

Every read is a DataLoader `load`: the loader's cache deduplicates the identical reads of a
batch, and its batch function merges the lookups that become ready together into plural calls
(bulk routes) and sends the others alone. Writes are never shared.

`Loaders` is built once per batch (aiodataloader binds the running loop, and its cache must not
outlive the batch); its `fetch` is the executor's I/O capability. Sharing in-flight reads
across batches is `inflight.py`'s.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar, cast

from aiodataloader import DataLoader

from gqlbatch.core.errors import UpstreamError
from gqlbatch.core.upstream_settings import BulkRoute
from gqlbatch.core.wire import Fetched, Send, UpstreamCall, UpstreamResponse
from gqlbatch.upstreams.bulk import BulkGroup, BulkRoutes, split_response

__all__ = ["Loaders"]

_T = TypeVar("_T")
Outcome = Fetched | UpstreamError
"""What a read's task ends with: its answer, or a copy of its error without a traceback.

Errors are returned, not raised, across the tasks: one error raised to several waiters gathers
their frames in its traceback, and a task that held it, through those frames, would keep the
whole batch in a reference cycle after it ends. Each waiter raises a copy of its own."""


class _Answer:
    """The one answer identical reads of a batch share: the DataLoader's value for a key, which
    its cache hands every identical read. The first read to await it fetches it, from its own
    task (*fetch*: the call alone, or its row of a plural call); the others wait for that
    answer, and are counted as deduplicated. A task per key, which the batch function would
    otherwise start, cost more than the DataLoader itself (BENCHMARKS.md)."""

    __slots__ = ("_answer", "_fetch", "readers")

    def __init__(self, fetch: Callable[[], Awaitable[Outcome]]) -> None:
        self._fetch = fetch
        self.readers = 0
        self._answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    async def outcome(self) -> tuple[Outcome, bool]:
        """The answer, and whether another read fetched it (this one was deduplicated)."""
        self.readers += 1
        if self.readers > 1:
            # shield: a waiter giving up must not cancel the answer the first reader awaits.
            return await asyncio.shield(self._answer), True
        try:
            outcome = await self._fetch()
        except asyncio.CancelledError:
            self._answer.cancel()  # the batch's deadline: its waiters are cancelled too
            raise
        self._answer.set_result(outcome)
        return outcome, False


class _ReadLoader(DataLoader[UpstreamCall, _Answer]):
    """GET and HEAD calls: identical calls share one upstream call (the loader's cache), and
    lookups that become ready together are merged into plural calls (this batch function is
    DESIGN §7's).

    It hands back one `_Answer` per key instead of one response. aiodataloader resolves every
    key of a dispatch only when the whole batch function returns, so returning responses would
    make a fast call wait for the slowest call that became ready in the same loop turn. An
    answer per key lets each item go on the moment its own call finishes, while the loader's
    cache still shares one answer between identical calls.
    """

    def __init__(self, loaders: Loaders) -> None:
        super().__init__()
        # Weak: the batch's Loaders own this loader, not the other way round. A strong
        # reference both ways made every finished batch a reference cycle, which only the
        # cyclic collector frees, so its responses outlived it (issue 9's 1.4 GB).
        self._loaders = cast(Loaders, weakref.proxy(loaders))

    async def batch_load_fn(self, keys: list[UpstreamCall]) -> list[_Answer]:
        loaders = self._loaders
        groups, singles = loaders.bulk.group(keys)
        answers = {call: _Answer(functools.partial(_alone, loaders, call)) for call in singles}
        for group in groups:
            plural = loaders.spawn(loaders.send_bulk(group))
            for call, key in group.members:
                answers[call] = _Answer(
                    functools.partial(_member, plural, call, key, group, loaders)
                )
        return [answers[call] for call in keys]


async def _alone(loaders: Loaders, call: UpstreamCall) -> Outcome:
    """A read sent on its own: its answer, or its error (see `Outcome`). A function of the
    loader's weak proxy, not a method bound to the Loaders: the answer, in the loader's cache,
    must not hold the Loaders that holds the loader."""
    try:
        return Fetched(await loaders.send(call))
    except UpstreamError as exc:
        return _copy(exc)


async def _member(
    plural: asyncio.Task[dict[str, UpstreamResponse | None] | UpstreamError],
    call: UpstreamCall,
    key: str,
    group: BulkGroup,
    loaders: Loaders,
) -> Outcome:
    # shield: the plural call answers every member, whichever of them gives up first.
    responses = await asyncio.shield(plural)
    if isinstance(responses, UpstreamError):
        return responses
    response = responses[key]
    if response is None:
        # The plural answer has no row for this key: the lookup is sent as written, so the
        # item carries the upstream's own answer (its 404, headers and body), not one made up.
        return await _alone(loaders, call)
    described = group.call.path + "?" + "&".join(f"{k}={v}" for k, v in group.call.query)
    return Fetched(response, bulk_call=f"GET {described}")


class Loaders:
    """The per-batch fetch: reads coalesce and merge, writes always go upstream, all counted.

    Attributes:
        requested: calls items asked for.
        sent: calls that went upstream, each once, however many attempts it took.
        retries: attempts beyond each call's first (so upstream saw `sent + retries` requests).
        deduplicated: reads answered by an identical read of this batch.
        merged: lookups answered by a plural call, minus the plural calls made.
    """

    def __init__(self, send: Send, bulk_routes: Mapping[str, Sequence[BulkRoute]]) -> None:
        self._send = send
        self.bulk = BulkRoutes(bulk_routes)
        self._reads = _ReadLoader(self)
        self.requested = 0
        self.sent = 0
        self.retries = 0
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
        answer = await self._reads.load(call)
        outcome, coalesced = await answer.outcome()
        if isinstance(outcome, UpstreamError):
            raise _copy(outcome)
        if coalesced:
            self.deduplicated += 1
            return Fetched(outcome.response, coalesced=True, bulk_call=outcome.bulk_call)
        return outcome

    async def send(self, call: UpstreamCall) -> UpstreamResponse:
        """Send one call upstream, counting it and the retries it took."""
        try:
            response = await self._send(call)
        except UpstreamError as exc:
            self._count(exc.attempts)
            raise
        self._count(response.attempts)
        return response

    def _count(self, attempts: int) -> None:
        # A call refused before it went out (its budget spent) took no attempt.
        if attempts:
            self.sent += 1
            self.retries += attempts - 1

    async def send_bulk(
        self, group: BulkGroup
    ) -> dict[str, UpstreamResponse | None] | UpstreamError:
        """Send a plural call and split its answer by key (None: a key it has no row for,
        which the member fetches alone), or its error (see `Outcome`)."""
        try:
            response = await self.send(group.call)
            parts = split_response(group, response)
        except UpstreamError as exc:
            return _copy(exc)
        # Saved: the lookups the plural call answered, beyond the one call it cost.
        self.merged += max(sum(part is not None for part in parts.values()) - 1, 0)
        return {
            key: None if part is None else part.with_attempts(response.attempts)
            for key, part in parts.items()
        }


def _copy(error: UpstreamError) -> UpstreamError:
    """The same error, without a traceback: what a shared answer may hold."""
    copy = type(error)(error.message)
    copy.attempts = error.attempts
    return copy
