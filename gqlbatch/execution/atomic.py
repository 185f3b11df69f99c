"""Atomic batches (DESIGN §5) and atomicity groups: when an item fails, undo the items of its
batch (or its group) that succeeded, newest first.

REST APIs have no transactions across requests, so "atomic" here means: validate everything,
run one item at a time in dependency order, stop at the first failure, then run the
compensating request each succeeded item declared, in reverse order, and say plainly what was
and was not undone. It takes its I/O (`fetch`) as a parameter, as the executor does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from gqlbatch.core.budget import BatchBudget
from gqlbatch.core.call import to_call
from gqlbatch.core.errors import ItemError
from gqlbatch.core.placeholders import Scope
from gqlbatch.core.plan import Plan, PlannedItem
from gqlbatch.core.result import ItemResult, Rollback, RollbackState, State
from gqlbatch.core.types import Headers, RequestId
from gqlbatch.core.wire import SAFE_METHODS, Fetch

__all__ = ["roll_back"]


async def roll_back(
    plan: Plan,
    results: tuple[ItemResult, ...],
    fetch: Fetch,
    forwarded: Mapping[str, Headers],
    budget: BatchBudget,
    *,
    cancelled: bool = False,
) -> tuple[ItemResult, ...]:
    """*results*, with the succeeded items of each all-or-nothing unit that did not wholly
    succeed compensated, newest first: the whole batch when it is atomic, else each of its
    atomicity groups. An atomic batch *cancelled* while it ran (a job its client cancelled)
    is undone whole, even if its last item finished after the cancel: its client chose
    nothing."""
    units = [plan.order] if plan.options.atomic else list(plan.groups.values())
    by_id = {r.request_id: r for r in results}
    updated = list(results)
    undo_all = cancelled and plan.options.atomic
    for members in units:  # each in the order its items ran
        if not undo_all and all(results[i].state is State.SUCCEEDED for i in members):
            continue
        for index in reversed(members):
            if results[index].state is State.SUCCEEDED:
                rollback = await _undo(plan.items[index], by_id, fetch, forwarded, budget)
                updated[index] = dataclasses.replace(results[index], rollback=rollback)
    return tuple(updated)


async def _undo(
    item: PlannedItem,
    results: Mapping[RequestId, ItemResult],
    fetch: Fetch,
    forwarded: Mapping[str, Headers],
    budget: BatchBudget,
) -> Rollback:
    if item.compensation is None:
        if item.request.method in SAFE_METHODS:
            return Rollback(RollbackState.NOT_NEEDED, "a read changes nothing upstream")
        return Rollback(
            RollbackState.NOT_ROLLED_BACK,
            "no compensate was declared, so this item's effect was not undone",
        )
    try:
        # Within the limit of one call, and not charged: a compensation must not be refused
        # for the bytes its batch spent.
        call = to_call(item.compensation, Scope(results), forwarded, budget.meter(alone=True))
        fetched = await fetch(call)
    except ItemError as exc:
        return Rollback(
            RollbackState.ROLLBACK_FAILED,
            f"the compensating request failed: {exc.code}: {exc.message}",
        )
    status = fetched.response.status
    said = f"{call.method} {call.path} answered {status}"
    if status >= 400:
        return Rollback(
            RollbackState.ROLLBACK_FAILED, f"the compensating request failed: {said}", status
        )
    return Rollback(RollbackState.ROLLED_BACK, said, status)
