"""The one entry point both doors use: validate, plan and execute a batch.

A door translates its wire format into plain items and options, calls `run_batch`, and renders
the `BatchOutcome`; it never builds plans or loaders itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Mapping

from gqlbatch.core.budget import BatchBudget, current_budget
from gqlbatch.core.config import Settings
from gqlbatch.core.errors import BatchRejected, StoreUnavailable
from gqlbatch.core.openapi import Contract
from gqlbatch.core.plan import Plan, widest_step
from gqlbatch.core.result import BatchOutcome, BatchStats, ItemResult
from gqlbatch.core.upstream_settings import BulkRoute
from gqlbatch.core.wire import Fetch
from gqlbatch.execution import metrics
from gqlbatch.execution.answer_check import checking_answers
from gqlbatch.execution.atomic import roll_back
from gqlbatch.execution.context import BatchContext, OnResult
from gqlbatch.execution.executor import Resumable, execute
from gqlbatch.execution.idempotency import check_key, fingerprint
from gqlbatch.execution.limits import Admission
from gqlbatch.execution.planning import planned, request_budget, take_budget
from gqlbatch.upstreams.loaders import Loaders
from gqlbatch.upstreams.retries import Retrying

__all__ = ["admit_early", "bulk_routes", "run_batch", "stream_batch"]

batch_log = logging.getLogger("gqlbatch.batch")


def bulk_routes(
    settings: Settings, contracts: Mapping[str, Contract]
) -> dict[str, tuple[BulkRoute, ...]]:
    """Each upstream's bulk routes: configured, then those its document shows (`infer_bulk`)
    that no configured route already matches."""
    routes = {}
    for name, upstream in settings.upstreams.items():
        contract = contracts.get(name) if upstream.infer_bulk else None
        found = contract.bulk_routes if contract is not None else ()
        configured = {r.match for r in upstream.bulk}
        routes[name] = upstream.bulk + tuple(r for r in found if r.match not in configured)
    return routes


async def run_batch(
    items: object,
    options: object,
    ctx: BatchContext,
    *,
    read_only: bool = False,
    scope: str = "",
    on_result: OnResult | None = None,
    resumable: Resumable | None = None,
) -> BatchOutcome:
    """Validate, admit, plan and execute a batch; one result per item, in the client's order.

    With an Idempotency-Key, a repeat of the same batch is answered from the store. *scope*
    tells apart several batches of one request that share its key (GraphQL aliases).
    *on_result* is told each item's result the moment it is final, for a door that streams
    them; an item whose result is only final at the end (a deadline, a rollback, a replay) is
    not told, and the outcome has every result. A job passes *resumable* (`executor.Resumable`).

    Raises:
        BatchRejected: the batch is invalid, the client is over its outstanding-call limit, or
            the key was used for another batch; nothing was sent upstream.
    """
    started = time.perf_counter()
    try:
        if ctx.idempotency is None or ctx.idempotency_key is None:
            running = _run(items, options, ctx, read_only, on_result, resumable)
            # A job's run stops when cancelled (another process resumes it); any other batch
            # runs to its end (docs/security.md "Client disconnect"), as run_once does too.
            outcome = await (running if resumable is not None else _to_the_end(running))
        else:
            key = f"{ctx.client}|{scope}|{check_key(ctx.idempotency_key)}"
            outcome = await ctx.idempotency.run_once(
                key,
                fingerprint(items, options, read_only),
                lambda: _run(items, options, ctx, read_only, on_result, resumable),
            )
    except BatchRejected as exc:
        _log_rejected(ctx, started, exc)
        metrics.record_refusal(time.perf_counter() - started)
        raise
    metrics.record_batch(outcome, time.perf_counter() - started)
    if batch_log.isEnabledFor(logging.INFO):
        _log_batch(
            ctx,
            started,
            {
                "outcome": "replayed" if outcome.replayed else "ran",
                "items": len(outcome.results),
                "states": dict(Counter(r.state.value for r in outcome.results)),
                "upstream_calls": 0 if outcome.replayed else outcome.stats.upstream_calls,
                "calls_saved": outcome.stats.calls_saved,
                "retries": 0 if outcome.replayed else outcome.stats.retries,
            },
        )
    return outcome


async def stream_batch(
    items: object,
    options: object,
    ctx: BatchContext,
    *,
    read_only: bool = False,
    scope: str = "",
) -> AsyncIterator[ItemResult | BatchOutcome]:
    """`run_batch`, told as it goes: each item's result the moment it is final, then the
    results that were only final at the end, then the outcome.

    Raises:
        BatchRejected: on the first step, before anything is yielded (nothing ran).
    """
    arrived: asyncio.Queue[ItemResult | None] = asyncio.Queue()
    task = asyncio.create_task(
        run_batch(
            items, options, ctx, read_only=read_only, scope=scope, on_result=arrived.put_nowait
        ),
        name="gqlbatch:streamed-batch",
    )
    task.add_done_callback(lambda _: arrived.put_nowait(None))
    told: set[int] = set()
    try:
        while (result := await arrived.get()) is not None:
            told.add(result.index)
            yield result
    finally:
        if not task.done():
            # The reader left (a closed connection): the batch still finishes, as it does when
            # a client drops a plain request, and its result is dropped with it.
            task.add_done_callback(_retrieved)
    try:
        outcome = task.result()  # raises what the batch raised: a refusal comes before any result
    finally:
        del task  # as in `_to_the_end`: no cycle through a refusal's traceback
    for result in outcome.results:
        if result.index not in told:
            yield result
    yield outcome


async def _to_the_end(running: Coroutine[object, object, BatchOutcome]) -> BatchOutcome:
    """*running*, in a task of its own that its caller's cancellation (a client that went
    away) does not stop: its writes are never cut half-way; its result is then dropped."""
    task = asyncio.create_task(running, name="gqlbatch:batch")
    task.add_done_callback(_retrieved)
    try:
        return await asyncio.shield(task)
    finally:
        # A refusal raised through here has this frame in its traceback, and the task holds
        # the refusal: with `task` still a local, the two form a cycle that kept a refused
        # batch, its items and its body, until the next full collection (54 MB a request
        # for a body of a million numbers, tests/test_memory.py).
        del task


def _retrieved(task: asyncio.Task[BatchOutcome]) -> None:
    if not task.cancelled():
        task.exception()


async def admit_early(ctx: BatchContext) -> None:
    """Refuse a client that is already at its limit before its body is even read, so that
    refusing under overload costs less than admitting. Logged like any refused batch.

    Raises:
        BatchRejected: TOO_MANY_REQUESTS.
    """
    if ctx.outstanding is None:
        return
    try:
        await ctx.outstanding.check(ctx.client, ctx.address)
    except StoreUnavailable:
        return  # unknown, so not refused here: a batch of the request is, when admitted
    except BatchRejected as exc:
        _log_rejected(ctx, time.perf_counter(), exc)
        raise


def _log_rejected(ctx: BatchContext, started: float, exc: BatchRejected) -> None:
    _log_batch(
        ctx, started, {"outcome": "rejected", "code": exc.code.value, "problems": len(exc.problems)}
    )


def _log_batch(ctx: BatchContext, started: float, fields: dict[str, object]) -> None:
    # One structured line per batch, whatever became of it (DESIGN §10 "Observability").
    line = {
        "event": "batch",
        "request_id": ctx.request_id,
        "client": ctx.client,
        **fields,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    # The fields are the line: a JSON log writes them as its keys, a text log as one object.
    batch_log.info("batch", extra={"fields": line})


async def _run(
    items: object,
    options: object,
    ctx: BatchContext,
    read_only: bool,
    on_result: OnResult | None = None,
    resumable: Resumable | None = None,
) -> BatchOutcome:
    # A client at its limit was refused before its body was read (admit_early), and `admit`
    # checks again below, once the batch is known to be valid.
    outstanding = ctx.outstanding
    if ctx.budget is None:  # one budget for the checks and the run of this batch
        ctx = dataclasses.replace(ctx, budget=request_budget(ctx.settings))
    plan = await planned(items, options, ctx, read_only=read_only)
    budget = BatchBudget(take_budget(plan, ctx))
    if outstanding is None:
        return await _execute(plan, ctx, budget, None, on_result, resumable)
    want = min(_concurrency(plan, ctx.settings), widest_step(plan) or sys.maxsize)
    async with outstanding.admit(ctx.client, ctx.address, want) as admission:
        return await _execute(plan, ctx, budget, admission, on_result, resumable)


def _concurrency(plan: Plan, settings: Settings) -> int:
    """The calls *plan* may have in flight at once: its own option, never past the server's."""
    return min(plan.options.max_concurrency or settings.max_concurrency, settings.max_concurrency)


async def _execute(
    plan: Plan,
    ctx: BatchContext,
    budget: BatchBudget,
    admission: Admission | None,
    on_result: OnResult | None = None,
    resumable: Resumable | None = None,
) -> BatchOutcome:
    settings = ctx.settings
    deadline_ms = min(
        plan.options.timeout_ms or settings.batch_timeout_ms, settings.batch_timeout_ms
    )
    retrying = Retrying(
        ctx.send,
        settings.retries,
        deadline=time.monotonic() + deadline_ms / 1000,
        timeouts_ms={name: u.timeout_ms for name, u in settings.upstreams.items()},
    )
    send = retrying.send if admission is None else admission.guard(retrying.send)
    loaders = Loaders(send, bulk_routes(settings, ctx.contracts))
    fetch: Fetch = loaders.fetch
    checked = {
        n: u.validate_responses
        for n, u in settings.upstreams.items()
        if u.validate_responses != "off"
    }
    if checked and ctx.contracts:
        fetch = checking_answers(fetch, ctx.contracts, checked, budget.request, ctx.offload)
    # Set in this task, so every task the batch starts (items, calls) inherits it.
    token = current_budget.set(budget)
    try:
        execution = await execute(
            plan,
            fetch,
            forwarded=ctx.forwarded,
            max_concurrency=_concurrency(plan, settings),
            deadline_ms=deadline_ms,
            budget=budget,
            # A result an atomic batch or group may still undo is not final until the end.
            on_result=None if plan.options.atomic or plan.groups else on_result,
            resumable=resumable,
        )
        results = execution.results
        if plan.options.atomic or plan.groups:
            cancelled = resumable is not None and resumable.halt.reason is not None
            results = await roll_back(
                plan, results, fetch, ctx.forwarded, budget, cancelled=cancelled
            )
    finally:
        await loaders.close()
        current_budget.reset(token)
    stats = BatchStats(
        sub_requests=len(plan.items),
        calls_requested=loaders.requested,
        upstream_calls=loaders.sent,
        # A plural call that lacked some keys is followed by those lookups alone, so a batch
        # can send more calls than it asked for; nothing was saved then, and the count stays 0.
        calls_saved=max(loaders.requested - loaders.sent, 0),
        saved_by_dedupe=loaders.deduplicated,
        saved_by_bulk=loaders.merged,
        wall_ms=execution.wall_ms,
        critical_path_ms=execution.critical_path_ms,
        response_bytes=budget.response_bytes,
        retries=loaders.retries,
    )
    return BatchOutcome(results, stats)
