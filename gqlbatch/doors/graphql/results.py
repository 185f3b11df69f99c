"""The GraphQL door's result types: an item's result as an interface with a type per state,
a batch's result and stats, and the conversion of the engine's outcome to them."""

from __future__ import annotations

from typing import Any, cast

import strawberry
from graphql import GraphQLError
from strawberry.scalars import JSON

from gqlbatch.core.errors import ErrorCode
from gqlbatch.core.evaluation import project
from gqlbatch.core.placeholders import TemplateSyntaxError, parse_selectors
from gqlbatch.core.result import (
    BatchOutcome,
    BatchStats,
    ItemResult,
    RollbackState,
    State,
)
from gqlbatch.core.wire import BodyEncoding
from gqlbatch.doors.graphql.context import Context
from gqlbatch.doors.graphql.writers import TYPE_NAMES


@strawberry.type(description="An HTTP header.")
class Header:
    # A result's headers stay the engine's (name, value) pairs, read here when a query asks
    # for them: a Header object per header of every item cost as much as the fields most
    # queries ask for. Strawberry hands each resolver the pair as `self`.
    @strawberry.field
    def name(self) -> str:
        return cast(tuple[str, str], self)[0]

    @strawberry.field
    def value(self) -> str:
        return cast(tuple[str, str], self)[1]


@strawberry.type(name="ItemError", description="Why an item did not succeed.")
class ItemErrorType:
    code: ErrorCode
    message: str


@strawberry.type(
    name="ElementResult",
    description="One call of a forEach item; its body is at `index` in the item's body.",
)
class ElementResultType:
    index: int
    status: int | None
    error: ItemErrorType | None
    coalesced: bool
    bulk_call: str | None


strawberry.enum(
    RollbackState, description="What became of a succeeded item when its atomic batch failed."
)


@strawberry.type(name="Rollback", description="The compensation of one item of an atomic batch.")
class RollbackType:
    state: RollbackState
    status: int | None
    message: str


def _duration_ms(root: ItemResult) -> float:
    # Rounded as it is read; the engine keeps the exact value.
    return round(root.duration_ms, 3)


def _started_ms(root: ItemResult) -> float:
    return round(root.started_ms, 3)


@strawberry.interface(name="ItemResult", description="The outcome of one sub-request.")
class ItemResultType:
    request_id: strawberry.ID
    index: int
    state: State
    status: int | None
    headers: list[Header]
    body_encoding: BodyEncoding
    error: ItemErrorType | None
    duration_ms: float = strawberry.field(resolver=_duration_ms)
    started_ms: float = strawberry.field(
        resolver=_started_ms,
        description="When its call began, in ms from the batch's start (an item that never "
        "began: when it was settled). With durationMs, its bar on a waterfall.",
    )
    attempts: int
    coalesced: bool = strawberry.field(
        description="True when another item's identical upstream call served this one."
    )
    bulk_call: str | None = strawberry.field(
        description="The plural call a bulk route merged this lookup into, when one did."
    )
    elements: list[ElementResultType] | None = strawberry.field(
        description="For a forEach item: each element's status or error, in order."
    )
    rollback: RollbackType | None = strawberry.field(
        description="In a failed atomic batch: whether this item was undone."
    )

    @strawberry.field(
        description="The upstream body. `select` keeps only the given paths, such as "
        '["id", "author.name"]; a list body is projected element by element.'
    )
    def body(
        self, info: strawberry.Info[Context, None], select: list[str] | None = None
    ) -> JSON | None:
        # `self` is the engine's ItemResult (see `to_batch_result`), whose `body` is the data.
        body = cast(ItemResult, self).body
        if not select:
            return body
        return _selected(body, select, info.context.settings.max_select_paths)

    @classmethod
    def resolve_type(cls, obj: Any, _info: Any, _type: Any) -> str:
        # The values are the engine's ItemResults (see `to_batch_result`): the state names the
        # type.
        return TYPE_NAMES[obj.state]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        # Strawberry's default checks isinstance against its own classes; the values here are
        # the engine's, whose state says which result type they are.
        return isinstance(obj, ItemResult) and TYPE_NAMES[obj.state] == cls.__name__


def _selected(body: Any, select: list[str], max_paths: int) -> Any:
    if len(select) > max_paths:
        raise GraphQLError(
            f"body(select:) names {len(select)} paths; at most {max_paths} (max_select_paths)",
            extensions={"code": ErrorCode.QUERY_TOO_COMPLEX},
        )
    try:
        paths = tuple(parse_selectors(s) for s in select)
    except TemplateSyntaxError as exc:
        raise GraphQLError(str(exc), extensions={"code": ErrorCode.INVALID_INPUT}) from None
    return project(body, paths)


@strawberry.type(description="The upstream answered with a status below 400.")
class Succeeded(ItemResultType):
    pass


@strawberry.type(description="The call failed; `error` says why, `status` and `body` are kept.")
class Failed(ItemResultType):
    pass


@strawberry.type(description="Not run because an item it depends on did not succeed.")
class Skipped(ItemResultType):
    failed_dependency: strawberry.ID


@strawberry.type(description="Not finished: the batch deadline passed, or onError STOP.")
class Cancelled(ItemResultType):
    pass


@strawberry.type(name="BatchStats", description="What the batch cost, next to its lower bound.")
class BatchStatsType:
    sub_requests: int = strawberry.field(description="Items in the batch.")
    calls_requested: int = strawberry.field(
        description="Upstream calls the items asked for; a forEach item asks one per element."
    )
    upstream_calls: int = strawberry.field(
        description="Calls actually sent upstream, each counted once however many attempts it took."
    )
    calls_saved: int = strawberry.field(description="callsRequested minus upstreamCalls.")
    saved_by_dedupe: int = strawberry.field(
        description="Reads answered by an identical read of the same batch."
    )
    saved_by_bulk: int = strawberry.field(
        description="Lookups answered by a bulk route's plural call, minus the plural calls."
    )
    wall_ms: float
    critical_path_ms: float = strawberry.field(
        description="The longest chain of dependent items, by their own durations."
    )
    response_bytes: int = strawberry.field(
        description="Upstream body bytes the batch read; the request may read "
        "max_batch_response_bytes in all."
    )
    retries: int = strawberry.field(
        description="Attempts beyond each call's first; the upstream saw upstreamCalls + "
        "retries requests."
    )


ROLLED_BACK = (
    "True when an atomic batch or an atomicity group failed and its succeeded items were "
    "compensated."
)
"""`rolledBack`, on a batch's result and on a streamed batch's end alike."""


@strawberry.type(description="One result per sub-request, in the order they were sent.")
class BatchResult:
    items: list[ItemResultType]
    stats: BatchStatsType
    rolled_back: bool = strawberry.field(description=ROLLED_BACK)
    replayed: bool = strawberry.field(
        description="True when this is the stored result of an earlier request with the same "
        "Idempotency-Key header; nothing was sent upstream again."
    )

    @strawberry.field(description="The result of one item, by its requestId.")
    def item(self, request_id: strawberry.ID) -> ItemResultType | None:
        return next((i for i in self.items if i.request_id == request_id), None)


def to_batch_result(outcome: BatchOutcome) -> BatchResult:
    """The GraphQL value of a batch outcome.

    Its items are the engine's own `ItemResult`s: their attributes, and those of the errors,
    elements and rollbacks they hold, have the names the result types declare, so graphql-core
    reads them as they are (`body` has the one resolver). Building a Strawberry object for each item
    and each of its parts only to read it back was measurable (BENCHMARKS.md).
    """
    return BatchResult(
        items=cast(list[ItemResultType], list(outcome.results)),
        stats=to_stats(outcome.stats),
        replayed=outcome.replayed,
        rolled_back=outcome.rolled_back,
    )


def to_stats(stats: BatchStats) -> BatchStatsType:
    return BatchStatsType(
        sub_requests=stats.sub_requests,
        calls_requested=stats.calls_requested,
        upstream_calls=stats.upstream_calls,
        calls_saved=stats.calls_saved,
        saved_by_dedupe=stats.saved_by_dedupe,
        saved_by_bulk=stats.saved_by_bulk,
        wall_ms=round(stats.wall_ms, 3),
        critical_path_ms=round(stats.critical_path_ms, 3),
        response_bytes=stats.response_bytes,
        retries=stats.retries,
    )
