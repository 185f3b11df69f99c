"""The one entry point both doors use: validate, plan and execute a batch.

A door translates its wire format into plain items and options, calls `run_batch`, and renders
the `BatchOutcome`; it never builds plans or loaders itself.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field

from gqlbatch.atomic import roll_back
from gqlbatch.config import Settings
from gqlbatch.errors import BatchRejected
from gqlbatch.executor import execute
from gqlbatch.idempotency import IdempotencyStore, check_key, fingerprint
from gqlbatch.limits import OutstandingCalls
from gqlbatch.loaders import Loaders, Send
from gqlbatch.plan import Plan, build_plan, known_calls
from gqlbatch.request import READ_METHODS, Method, Rules, parse_batch
from gqlbatch.result import BatchOutcome, BatchStats
from gqlbatch.retries import Retrying
from gqlbatch.types import Headers

__all__ = ["BatchContext", "admit_early", "prepare", "run_batch"]

batch_log = logging.getLogger("gqlbatch.batch")


def prepare(items: object, options: object, settings: Settings, *, read_only: bool = False) -> Plan:
    """Validate and plan a batch without running anything.

    Raises:
        BatchRejected: with every problem found; nothing may be sent upstream.
    """
    rules = Rules(
        upstreams=frozenset(settings.upstreams),
        default_upstream=settings.default_upstream(),
        max_items=settings.max_items,
        max_fanout=settings.max_fanout,
        methods=READ_METHODS if read_only else frozenset(Method),
    )
    return build_plan(parse_batch(items, options, rules), max_fanout=settings.max_fanout)


@dataclass(frozen=True, slots=True)
class BatchContext:
    """Everything about the caller and the server that running a batch needs; each door
    builds one per request."""

    settings: Settings
    send: Send
    forwarded: Mapping[str, Headers] = field(default_factory=dict)
    """The allow-listed incoming headers, per upstream."""
    client: str = "anonymous"
    """Who the batch counts against for the outstanding-call limit and idempotency keys."""
    outstanding: OutstandingCalls | None = None
    idempotency: IdempotencyStore | None = None
    idempotency_key: str | None = None
    """The request's Idempotency-Key header, if it sent one."""
    request_id: str = ""
    """The request's X-Request-Id, or one made up for it; it names the batch's log line."""


async def run_batch(
    items: object,
    options: object,
    ctx: BatchContext,
    *,
    read_only: bool = False,
    scope: str = "",
) -> BatchOutcome:
    """Validate, admit, plan and execute a batch; one result per item, in the client's order.

    With an Idempotency-Key, a repeat of the same batch is answered from the store. *scope*
    tells apart several batches of one request that share its key (GraphQL aliases).

    Raises:
        BatchRejected: the batch is invalid, the client is over its outstanding-call limit, or
            the key was used for another batch; nothing was sent upstream.
    """
    started = time.perf_counter()
    try:
        if ctx.idempotency is None or ctx.idempotency_key is None:
            outcome = await _run(items, options, ctx, read_only)
        else:
            key = f"{ctx.client}|{scope}|{check_key(ctx.idempotency_key)}"
            outcome = await ctx.idempotency.run_once(
                key,
                fingerprint(items, options, read_only),
                lambda: _run(items, options, ctx, read_only),
            )
    except BatchRejected as exc:
        _log_rejected(ctx, started, exc)
        raise
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
            },
        )
    return outcome


def admit_early(ctx: BatchContext) -> None:
    """Refuse a client that is already at its limit before its body is even read, so that
    refusing under overload costs less than admitting. Logged like any refused batch.

    Raises:
        BatchRejected: TOO_MANY_REQUESTS.
    """
    if ctx.outstanding is None:
        return
    try:
        ctx.outstanding.check(ctx.client)
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
    batch_log.info(json.dumps(line, separators=(",", ":")))


async def _run(items: object, options: object, ctx: BatchContext, read_only: bool) -> BatchOutcome:
    if ctx.outstanding:
        ctx.outstanding.check(ctx.client)
    plan = prepare(items, options, ctx.settings, read_only=read_only)
    concurrency = _concurrency(plan, ctx)
    admission = ctx.outstanding.admit(ctx.client, concurrency) if ctx.outstanding else nullcontext()
    with admission:
        return await _execute(plan, ctx.settings, ctx.send, ctx.forwarded, concurrency)


def _concurrency(plan: Plan, ctx: BatchContext) -> int:
    """How many upstream calls this batch may have in flight at once. The executor holds it to
    that, so it is exactly what the batch reserves against the outstanding-call limits: never
    more than it can use (its calls, when known before running), than it asked for, or than
    one client may hold, so that any single valid batch can be admitted."""
    settings = ctx.settings
    limit = min(plan.options.max_concurrency or settings.max_concurrency, settings.max_concurrency)
    known = known_calls(plan.items)
    if known is not None:
        limit = min(limit, max(known, 1))
    if ctx.outstanding is not None:
        limit = min(limit, ctx.outstanding.largest_admissible())
    return limit


async def _execute(
    plan: Plan,
    settings: Settings,
    send: Send,
    forwarded: Mapping[str, Headers],
    concurrency: int,
) -> BatchOutcome:
    deadline_ms = min(
        plan.options.timeout_ms or settings.batch_timeout_ms, settings.batch_timeout_ms
    )
    retrying = Retrying(
        send,
        settings.retries,
        deadline=time.monotonic() + deadline_ms / 1000,
        timeouts_ms={name: u.timeout_ms for name, u in settings.upstreams.items()},
    )
    loaders = Loaders(retrying.send, {name: u.bulk for name, u in settings.upstreams.items()})
    try:
        execution = await execute(
            plan,
            loaders.fetch,
            forwarded=forwarded,
            max_fanout=settings.max_fanout,
            max_concurrency=concurrency,
            deadline_ms=deadline_ms,
        )
        results = execution.results
        if plan.options.atomic:
            results = await roll_back(plan, results, loaders.fetch, forwarded)
    finally:
        await loaders.close()
    stats = BatchStats(
        sub_requests=len(plan.items),
        calls_requested=loaders.requested,
        upstream_calls=loaders.sent,
        calls_saved=loaders.requested - loaders.sent,
        saved_by_dedupe=loaders.deduplicated,
        saved_by_bulk=loaders.merged,
        wall_ms=execution.wall_ms,
        critical_path_ms=execution.critical_path_ms,
    )
    return BatchOutcome(results, stats)
