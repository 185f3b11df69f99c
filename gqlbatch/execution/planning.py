"""A batch checked and planned before anything runs, and what its request may spend on it
(DESIGN §9): `prepare` is pure; `planned` runs it for a request, from the plans kept for
batches sent again, and off the event loop when the check is large.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from gqlbatch.core.budget import RequestBudget
from gqlbatch.core.compensation import with_compensations
from gqlbatch.core.config import Settings
from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem
from gqlbatch.core.openapi import Contract
from gqlbatch.core.plan import Plan, PlannedItem, build_plan, known_calls, static_calls
from gqlbatch.core.references import reference_problems
from gqlbatch.core.request import KnownItems, parse_batch
from gqlbatch.core.request_fields import Rules
from gqlbatch.core.schema_checks import TooSlowForTheLoop, count_values, on_the_loop
from gqlbatch.core.wire import READ_METHODS, Method
from gqlbatch.execution.context import BatchContext
from gqlbatch.execution.offload import INLINE_VALUES

__all__ = ["planned", "prepare", "request_budget", "reserve_calls", "take_budget"]


def prepare(
    items: object,
    options: object,
    settings: Settings,
    *,
    read_only: bool = False,
    contracts: Mapping[str, Contract] = MappingProxyType({}),
    known: KnownItems | None = None,
    budget: RequestBudget | None = None,
) -> Plan:
    """Validate and plan a batch without running anything; an item whose upstream has an
    OpenAPI document (*contracts*, by upstream) is also checked against it, at the cost of
    its request's *budget* (a fresh one by default). Items in *known* (parsed before) are not
    parsed again.

    Raises:
        BatchRejected: with every problem found; nothing may be sent upstream.
    """
    rules = Rules(
        upstreams=frozenset(settings.upstreams),
        default_upstream=settings.default_upstream(),
        max_items=settings.max_items,
        max_fanout=settings.max_fanout,
        methods=READ_METHODS if read_only else frozenset(Method),
        door_paths=settings.batch_paths + settings.operations_paths,
    )
    parsed = parse_batch(items, options, rules, known)
    parsed = with_compensations(parsed, settings.upstreams, rules)
    checks = None
    if contracts:
        checks = functools.partial(
            _contract_problems,
            contracts=contracts,
            settings=settings,
            budget=budget or request_budget(settings),
        )
    return build_plan(parsed, max_fanout=settings.max_fanout, checks=checks)


def _contract_problems(
    items: Sequence[PlannedItem],
    contracts: Mapping[str, Contract],
    settings: Settings,
    budget: RequestBudget,
) -> list[Problem]:
    """What the upstreams' OpenAPI documents say is wrong with the planned *items*: their
    routes, queries and bodies, then the fields their placeholders select. Read from the
    planned items, whose placeholders the planner parsed once."""
    problems = []
    for item in items:
        request = item.request
        contract = contracts.get(request.upstream)
        if contract is not None:
            strict = settings.upstreams[request.upstream].strict_routes
            problems += contract.problems(
                request, strict_routes=strict, budget=budget, body=item.body
            )
    return problems + reference_problems(items, contracts)


def request_budget(settings: Settings, calls: int | None = None) -> RequestBudget:
    """A fresh budget for one HTTP request (DESIGN §9: its limits hold for all its batches);
    with *calls*, no more upstream calls than that (a job's, reserved when it was submitted)."""
    return RequestBudget(
        items=settings.max_items,
        calls=settings.max_fanout if calls is None else calls,
        rendered_bytes=settings.max_rendered_batch_bytes,
        response_bytes=settings.max_batch_response_bytes,
        max_call_bytes=settings.max_rendered_call_bytes,
        checked_values=settings.max_checked_values,
        documents_s=settings.max_document_check_ms / 1000,
    )


async def planned(
    items: object, options: object, ctx: BatchContext, *, read_only: bool = False
) -> Plan:
    """`prepare`, for a batch of *ctx*'s request: from the plans kept for batches sent again,
    and off the event loop when its bodies are large to check against OpenAPI documents.

    Raises:
        BatchRejected: as `prepare`.
    """
    budget = ctx.budget or request_budget(ctx.settings)

    def off_loop() -> Plan:
        # Nothing the loop's batches share is read off it: no kept plans or items.
        return prepare(
            items,
            options,
            ctx.settings,
            read_only=read_only,
            contracts=ctx.contracts,
            budget=budget,
        )

    if ctx.offload is not None and _heavy(items, ctx.contracts):
        return await ctx.offload(off_loop)
    plans = ctx.plans

    def make() -> Plan:
        known = None if plans is None else plans.items
        return prepare(
            items,
            options,
            ctx.settings,
            read_only=read_only,
            contracts=ctx.contracts,
            known=known,
            budget=budget,
        )

    if ctx.offload is None or not ctx.contracts:
        return make() if plans is None else plans.plan(items, options, read_only, make)
    # A document's pattern may take long on a short string: on the loop it gets a few
    # milliseconds, then the check is made again off it, as a large one is.
    values, token = budget.checked_values, on_the_loop.set(True)
    try:
        return make() if plans is None else plans.plan(items, options, read_only, make)
    except TooSlowForTheLoop:
        budget.checked_values = values  # counted again where it is made again
    finally:
        on_the_loop.reset(token)
    return await ctx.offload(off_loop)


def _heavy(items: object, contracts: Mapping[str, Contract]) -> bool:
    """Whether the bodies of *items* hold more JSON values than a check on the loop may take
    (counted no further than that)."""
    if not contracts or not isinstance(items, list):
        return False
    left = INLINE_VALUES
    for item in items:
        if isinstance(item, dict) and "body" in item:
            left -= count_values(item["body"], left + 1)
            if left < 0:
                return True
    return False


def reserve_calls(plan: Plan, ctx: BatchContext) -> int:
    """Take the items and calls of a batch that will run later, as a job, from its request's
    budget: the calls known now, and, when a forEach's list is known only when it runs, all the
    calls the request has left. The upstream calls the job may make.

    Issue 24: 3 operations of 10 `submitBatch` aliases each made 30 jobs, and 27,232 upstream
    calls, from one request whose `batch` fields together may make 1,000.

    Raises:
        BatchRejected: BATCH_TOO_LARGE, when the request has fewer left.
    """
    budget = take_budget(plan, ctx)
    calls = static_calls(plan.items)
    if known_calls(plan.items) is None:
        calls, budget.calls = calls + budget.calls, 0
    return calls


def take_budget(plan: Plan, ctx: BatchContext) -> RequestBudget:
    """Take *plan*'s items and calls from its request's budget (a fresh one without).

    Raises:
        BatchRejected: BATCH_TOO_LARGE, when the request has fewer left.
    """
    budget = ctx.budget or request_budget(ctx.settings)
    calls = static_calls(plan.items)
    if budget.take_batch(len(plan.items), calls):
        return budget
    message = (
        f"this batch's {len(plan.items)} items and {calls} upstream calls are more than the "
        f"{budget.items} items and {budget.calls} calls left to this request "
        f"(max_items {ctx.settings.max_items}, max_fanout {ctx.settings.max_fanout}, "
        "shared by every batch of one request)"
    )
    raise BatchRejected([Problem(ErrorCode.BATCH_TOO_LARGE, message, field="requests")])
