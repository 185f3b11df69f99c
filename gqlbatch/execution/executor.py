"""Runs a plan: a task per item that runs, started the moment its last dependency finishes.

Takes its I/O as a parameter (`fetch`) and never sees aiohttp or aiodataloader. Implements
DESIGN §4 "Scheduling", "Failure isolation" and "Deadlines", and §6 `forEach`. An item's
failure is returned as a value; only a bug in gqlbatch propagates as an exception.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from gqlbatch.core.budget import BatchBudget, RequestBudget
from gqlbatch.core.call import to_call
from gqlbatch.core.errors import (
    ErrorCode,
    ItemError,
    ReferenceNotFound,
)
from gqlbatch.core.evaluation import evaluate
from gqlbatch.core.placeholders import Scope
from gqlbatch.core.plan import Plan, PlannedItem
from gqlbatch.core.rendering import render_json
from gqlbatch.core.request import Mode, OnError
from gqlbatch.core.result import ElementResult, ItemResult, Route, State
from gqlbatch.core.types import JSON, Headers, RequestId, frozen_for_type_checkers
from gqlbatch.core.wire import SAFE_METHODS, Fetch, Fetched, UpstreamCall
from gqlbatch.execution.item_results import (
    ElementOutcome,
    element_error,
    failed,
    fanned_out,
    from_response,
    internal_error,
    not_run,
    skipped,
    status_error,
)

__all__ = ["Execution", "Fetch", "Halt", "Resumable", "execute"]


@frozen_for_type_checkers()
class Execution:
    """Results in the client's order, with the timings that `BatchStats` reports."""

    results: tuple[ItemResult, ...]
    wall_ms: float
    critical_path_ms: float


class Halt:
    """A run's way to be stopped gently: once `reason` is set, no item starts, the calls in
    flight finish, and the batch ends as it would at a failure under onError STOP (an atomic
    batch is then rolled back). A cancelled job stops this way: cutting a write half-way
    would leave its outcome unknown, and an atomic job must undo what it did."""

    __slots__ = ("reason",)

    def __init__(self) -> None:
        self.reason: str | None = None


@dataclass(frozen=True, slots=True)
class Resumable:
    """A job's run, made so that another process can take it over when this one stops."""

    settled: Mapping[int, ItemResult]
    """The results an earlier run left, by item index: those items are not run again."""
    before_write: Callable[[int], Awaitable[None]]
    """Told an item's index before that item sends a write, and awaited: a write sent when
    the process stops is then known as such, and never sent blindly again."""
    halt: Halt = field(default_factory=Halt)


async def execute(
    plan: Plan,
    fetch: Fetch,
    *,
    forwarded: Mapping[str, Headers] | None = None,
    max_concurrency: int,
    deadline_ms: int,
    budget: BatchBudget | None = None,
    on_result: Callable[[ItemResult], None] | None = None,
    resumable: Resumable | None = None,
) -> Execution:
    """Run every item of *plan* through *fetch* and return one result per item.

    Items still running when *deadline_ms* passes are CANCELLED with TIMEOUT; finished items
    keep their results. *budget* bounds the calls a forEach may add and the bytes every call
    may send; the engine has already charged it for the calls known before running.
    *on_result* is told each item's result as it settles (not those the deadline cancels).
    A job passes *resumable*: its settled items keep their results, untold.
    """
    budget = budget or BatchBudget(_UNLIMITED)
    run = _Run(plan, fetch, forwarded or {}, asyncio.Semaphore(max_concurrency), budget)
    run.on_result = on_result
    run.resumable = resumable
    started = run.started
    try:
        run.begin()
        await asyncio.wait([run.finished], timeout=deadline_ms / 1000)
    finally:
        # The deadline, a bug, or this batch cancelled from outside: nothing it started may go
        # on. Items left running would settle later with whatever the stop did to their calls
        # (a closed pool: "unreachable"), after their batch was over: a job resumed elsewhere
        # must find them unsettled.
        await run.stop()
    if run.finished.done():
        bug = run.finished.exception()
        if bug is not None:
            raise bug  # item failures are results; only a bug in gqlbatch gets here
    wall_ms = (time.perf_counter() - started) * 1000
    results = tuple(run.final(item, deadline_ms) for item in plan.items)
    return Execution(results, wall_ms, _critical_path_ms(plan, results))


class _Run:
    """The state of one execution: the results so far, and the items waiting for them.

    An item's task is started when what it waits for has settled: its dependencies, in order,
    and in SEQUENTIAL mode the item before it. No task waits on another's future: a dependent
    has nothing to do until then, and a dependency's failure settles it as SKIPPED without
    one. Items that become ready together (the dependents of one item) start in the same loop
    turn, so they call `fetch` together, which is what lets the DataLoader put their upstream
    calls in one batch.
    """

    def __init__(
        self,
        plan: Plan,
        fetch: Fetch,
        forwarded: Mapping[str, Headers],
        limit: asyncio.Semaphore,
        budget: BatchBudget,
    ) -> None:
        self._plan = plan
        self._fetch = fetch
        self._forwarded = forwarded
        self._limit = limit
        self._waits = _waits(plan)
        self._next_wait: dict[RequestId, int] = {}
        self._waiting_on: dict[RequestId, list[PlannedItem]] = {}
        self._results: dict[RequestId, ItemResult] = {}
        self._tasks: dict[RequestId, asyncio.Task[None]] = {}
        """Each running item's task, by its requestId."""
        self._stopped_by: RequestId | None = None
        self._budget = budget
        self.on_result: Callable[[ItemResult], None] | None = None
        self.resumable: Resumable | None = None
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Done when every item has settled, or with the exception of a bug."""
        self.started = time.perf_counter()

    def begin(self) -> None:
        """Settle the items a resumed job already has results for, then start every item
        that waits for nothing."""
        settled = {} if self.resumable is None else self.resumable.settled
        for item in self._plan.items:
            known = settled.get(item.index)
            if known is not None:
                self._settled(item, known, told=False)
        self._wake([item for item in self._plan.items if item.request_id not in self._results])

    async def stop(self) -> None:
        """Cancel the items still running, and wait until they have stopped."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def final(self, item: PlannedItem, deadline_ms: int) -> ItemResult:
        """The item's result, or CANCELLED with TIMEOUT when the deadline cut it short."""
        result = self._results.get(item.request_id)
        if result is not None:
            return result
        message = f"the batch deadline of {deadline_ms} ms passed before this item finished"
        return not_run(item, State.CANCELLED, ErrorCode.TIMEOUT, message)

    def _wake(self, items: list[PlannedItem]) -> None:
        # A worklist, not recursion: a failure skips its dependents, theirs, and so on down a
        # chain as long as the batch.
        queue = deque(items)
        while queue:
            item = queue.popleft()
            ready = self._ready(item)
            if isinstance(ready, ItemResult):
                queue.extend(self._settled(item, ready))
            elif ready:
                self._start(item)

    def _ready(self, item: PlannedItem) -> ItemResult | bool:
        """True when *item* may start; its SKIPPED result when a dependency, read in order,
        did not succeed; False while it waits (it is woken again when that one settles)."""
        waits = self._waits.get(item.request_id, ())
        position = self._next_wait.get(item.request_id, 0)
        while position < len(waits):
            on, skips = waits[position]
            result = self._results.get(on)
            if result is None:
                self._next_wait[item.request_id] = position
                self._waiting_on.setdefault(on, []).append(item)
                return False
            if skips and result.state is not State.SUCCEEDED:
                return skipped(item, result)
            position += 1
        return True

    def _start(self, item: PlannedItem) -> None:
        # Named "gqlbatch:…" so that tests can prove none outlives its batch.
        task = asyncio.create_task(self._settle(item), name=f"gqlbatch:item:{item.request_id}")
        self._tasks[item.request_id] = task

    async def _settle(self, item: PlannedItem) -> None:
        # The task's bookkeeping is done here rather than in a done callback, which would be
        # one more turn of the event loop for every item.
        try:
            try:
                result = await self._run(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # DESIGN §9: a bug fails its item, never the batch
                # Not STYLE R5's "hide bugs": the bug is logged with its traceback under an id
                # the client sees. But a batch whose writes already ran must still return
                # every result, so one item's bug is that item's failure, like any other.
                result = internal_error(item, exc)
            self._wake(self._settled(item, result))
        except asyncio.CancelledError:
            raise
        except BaseException as bug:  # past the item's own work: a bug of the batch's
            if not self.finished.done():
                self.finished.set_exception(bug)  # execute raises it
        finally:
            self._tasks.pop(item.request_id, None)

    def _settled(
        self, item: PlannedItem, result: ItemResult, *, told: bool = True
    ) -> list[PlannedItem]:
        """Record *item*'s result; the items that were waiting for it."""
        if told and result.duration_ms == 0:  # skipped or cancelled: never began
            result = dataclasses.replace(result, started_ms=self._ms_since_start())
        if result.state is State.FAILED and self._plan.options.on_error is OnError.STOP:
            self._stopped_by = self._stopped_by or item.request_id
        self._results[item.request_id] = result
        if told and self.on_result is not None:
            self.on_result(result)
        if len(self._results) == len(self._plan.items) and not self.finished.done():
            self.finished.set_result(None)
        return self._waiting_on.pop(item.request_id, [])

    async def _run(self, item: PlannedItem) -> ItemResult:
        # Started once everything it waits for has settled, its dependencies successfully.
        if self._stopped_by is not None:
            message = f"not started: item '{self._stopped_by}' failed and onError is STOP"
            return not_run(item, State.CANCELLED, ErrorCode.CANCELLED, message)
        halted = None if self.resumable is None else self.resumable.halt.reason
        if halted is not None:
            return not_run(item, State.CANCELLED, ErrorCode.CANCELLED, f"not started: {halted}")
        results = {dep: self._results[dep] for dep in item.depends_on} if item.depends_on else {}
        if item.for_each is not None:
            return await self._fan_out(item, results)
        return await self._call(item, results)

    def _ms_since_start(self, now: float | None = None) -> float:
        return ((time.perf_counter() if now is None else now) - self.started) * 1000

    async def _call(self, item: PlannedItem, deps: dict[RequestId, ItemResult]) -> ItemResult:
        started = time.perf_counter()
        began = self._ms_since_start(started)
        try:
            # Each call's placeholders are metered as they are written, then the call is
            # charged; without results, nothing is substituted and there is nothing to meter.
            meter = self._budget.meter() if deps else None
            call = to_call(item, Scope(deps) if deps else _NO_RESULTS, self._forwarded, meter)
            self._budget.charge_rendered(call.size)
            fetched = await self._send(item, call)
        except ItemError as exc:
            return failed(item, exc, _since(started), began)
        return from_response(item, call, fetched, _since(started), began)

    async def _send(self, item: PlannedItem, call: UpstreamCall) -> Fetched:
        async with self._limit:  # at most max_concurrency calls of the batch in flight
            if self.resumable is not None and call.method not in SAFE_METHODS:
                await self.resumable.before_write(item.index)
            return await self._fetch(call)

    async def _fan_out(self, item: PlannedItem, deps: dict[RequestId, ItemResult]) -> ItemResult:
        # DESIGN §6 forEach: one call per element, all through the same fetch, so element
        # calls are deduplicated and merged into bulk calls like any others.
        started = time.perf_counter()
        began = self._ms_since_start(started)
        try:
            elements = _elements(item, Scope(deps))
        except ItemError as exc:
            return failed(item, exc, _since(started), began)
        # The engine counted a literal list's calls before running, and one call for a list
        # from a placeholder: the rest of those are taken now that the list is known.
        calls = self._budget.request
        more = 0 if isinstance(item.for_each, list) else max(len(elements) - 1, 0)
        if not calls.take_calls(more):
            message = (
                f"forEach over {len(elements)} elements is more than the {calls.calls + 1} "
                "upstream calls left to this request (max_fanout); none of its calls were made"
            )
            return not_run(item, State.FAILED, ErrorCode.BATCH_TOO_LARGE, message)
        outcomes: dict[int, ElementOutcome] = {}
        leaders: list[tuple[int, UpstreamCall]] = []
        followers: list[tuple[int, UpstreamCall]] = []
        reads: set[UpstreamCall] = set()
        for i, value in enumerate(elements):
            try:
                scope = Scope(deps, item=value, index=i)
                call = to_call(item, scope, self._forwarded, self._budget.meter())
                self._budget.charge_rendered(call.size)
            except ItemError as exc:
                outcomes[i] = element_error(i, exc)
                continue
            if call in reads:
                followers.append((i, call))
                continue
            if call.is_read:
                reads.add(call)
            leaders.append((i, call))  # every write is its own call, however alike
        # One task per distinct call. An element whose read repeats another's (the same author
        # of ten posts) is fetched after the calls are made, when the batch's own cache answers
        # it at once: no task, and no wait of its own, for an answer another element waits for.
        sent = await asyncio.gather(*(self._element(item, call, i) for i, call in leaders))
        for (i, _), outcome in zip(leaders, sent, strict=True):
            outcomes[i] = outcome
        for i, call in followers:
            outcomes[i] = await self._element(item, call, i)
        ordered = [outcomes[i] for i in range(len(elements))]
        return fanned_out(item, ordered, _since(started), began)

    async def _element(self, item: PlannedItem, call: UpstreamCall, index: int) -> ElementOutcome:
        try:
            fetched = await self._send(item, call)
        except ItemError as exc:
            return element_error(index, exc)
        response = fetched.response
        error = status_error(call, fetched) if response.status >= 400 else None
        element = ElementResult(
            index=index,
            status=response.status,
            error=error,
            coalesced=fetched.coalesced,
            bulk_call=fetched.bulk_call,
        )
        return element, response.body, Route(call.upstream, call.method, call.path)


_UNLIMITED = RequestBudget(
    items=sys.maxsize,
    calls=sys.maxsize,
    rendered_bytes=sys.maxsize,
    response_bytes=sys.maxsize,
    max_call_bytes=sys.maxsize,
)
_NO_RESULTS = Scope({})
"""The scope of an item that depends on nothing (most of them): one, not one per item."""


def _elements(item: PlannedItem, scope: Scope) -> list[JSON]:
    if isinstance(item.for_each, list):
        return list(render_json(item.for_each, scope))
    assert item.for_each is not None
    value = evaluate(item.for_each, scope)
    if not isinstance(value, list):
        kind = "null" if value is None else type(value).__name__
        raise ReferenceNotFound(f"forEach {item.for_each.text} gave {kind}, not a list")
    return value


def _waits(plan: Plan) -> dict[RequestId, tuple[tuple[RequestId, bool], ...]]:
    """What each item waits for, in order, and whether its failure skips the item: its
    dependencies do; in SEQUENTIAL mode (plan.order, one at a time) the item before it is
    waited for only."""
    waits = {
        item.request_id: tuple((dep, True) for dep in item.depends_on)
        for item in plan.items
        if item.depends_on
    }
    if plan.options.mode is Mode.SEQUENTIAL:
        ids = [plan.items[i].request_id for i in plan.order]
        for previous, rid in itertools.pairwise(ids):
            waits[rid] = ((previous, False), *waits.get(rid, ()))
    return waits


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _critical_path_ms(plan: Plan, results: tuple[ItemResult, ...]) -> float:
    # The longest dependency chain by the items' own durations, computed in dependency order.
    longest: dict[RequestId, float] = {}
    for i in plan.order:
        item = plan.items[i]
        deps = item.depends_on
        before = max([longest[d] for d in deps]) if deps else 0.0
        longest[item.request_id] = before + results[i].duration_ms
    return max(longest.values(), default=0.0)
