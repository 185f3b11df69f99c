"""The one entry point both doors use: validate, plan and execute a batch.

A door translates its wire format into plain items and options, calls `run_batch`, and renders
the `BatchOutcome`; it never builds plans or loaders itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from gqlbatch.config import Settings
from gqlbatch.executor import execute
from gqlbatch.loaders import Loaders, Send
from gqlbatch.plan import Plan, build_plan
from gqlbatch.request import READ_METHODS, Method, Rules, parse_batch
from gqlbatch.result import BatchOutcome, BatchStats
from gqlbatch.types import Headers

__all__ = ["prepare", "run_batch"]


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


async def run_batch(
    items: object,
    options: object,
    *,
    settings: Settings,
    send: Send,
    forwarded: Mapping[str, Headers] | None = None,
    read_only: bool = False,
) -> BatchOutcome:
    """Validate, plan and execute a batch; one result per item, in the client's order.

    Raises:
        BatchRejected: the batch is invalid; nothing was sent upstream.
    """
    plan = prepare(items, options, settings, read_only=read_only)
    loaders = Loaders(send, {name: u.bulk for name, u in settings.upstreams.items()})
    execution = await execute(
        plan,
        loaders.fetch,
        forwarded=forwarded or {},
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
