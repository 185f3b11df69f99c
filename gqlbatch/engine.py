"""The one entry point both doors use: validate, plan and execute a batch.

A door translates its wire format into plain items and options, calls `run_batch`, and renders
the `BatchOutcome`; it never builds plans or loaders itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field

from gqlbatch.config import Settings
from gqlbatch.executor import execute
from gqlbatch.limits import OutstandingCalls
from gqlbatch.loaders import Loaders, Send
from gqlbatch.plan import Plan, build_plan, static_calls
from gqlbatch.request import READ_METHODS, Method, Rules, parse_batch
from gqlbatch.result import BatchOutcome, BatchStats
from gqlbatch.types import Headers

__all__ = ["BatchContext", "prepare", "run_batch"]


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
    """Who the batch counts against for the outstanding-call limit."""
    outstanding: OutstandingCalls | None = None


async def run_batch(
    items: object, options: object, ctx: BatchContext, *, read_only: bool = False
) -> BatchOutcome:
    """Validate, admit, plan and execute a batch; one result per item, in the client's order.

    Raises:
        BatchRejected: the batch is invalid, or the client is over its outstanding-call limit;
            nothing was sent upstream.
    """
    plan = prepare(items, options, ctx.settings, read_only=read_only)
    admission = (
        ctx.outstanding.admit(ctx.client, static_calls(plan.items))
        if ctx.outstanding
        else nullcontext()
    )
    with admission:
        return await _execute(plan, ctx.settings, ctx.send, ctx.forwarded)


async def _execute(
    plan: Plan, settings: Settings, send: Send, forwarded: Mapping[str, Headers]
) -> BatchOutcome:
    loaders = Loaders(send, {name: u.bulk for name, u in settings.upstreams.items()})
    execution = await execute(
        plan,
        loaders.fetch,
        forwarded=forwarded,
        max_fanout=settings.max_fanout,
        max_concurrency=min(
            plan.options.max_concurrency or settings.max_concurrency, settings.max_concurrency
        ),
        deadline_ms=min(
            plan.options.timeout_ms or settings.batch_timeout_ms, settings.batch_timeout_ms
        ),
    )
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
    return BatchOutcome(execution.results, stats)
