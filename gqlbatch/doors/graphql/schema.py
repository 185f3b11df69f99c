"""The GraphQL door: Strawberry types, the `batch` fields, and the conversions to and from the
engine's plain values. One of the two modules that import strawberry (the other is `app.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import operator
from collections.abc import AsyncGenerator, Mapping
from datetime import timedelta
from keyword import iskeyword
from typing import Annotated, Any, TypeGuard, cast

import strawberry
from aiohttp import web
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError
from strawberry import UNSET
from strawberry.aiohttp.views import GraphQLView
from strawberry.annotation import StrawberryAnnotation
from strawberry.http import GraphQLRequestData
from strawberry.http.ides import get_graphql_ide_html
from strawberry.scalars import JSON
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.name_converter import NameConverter
from strawberry.types import ExecutionResult
from strawberry.types.base import StrawberryOptional
from strawberry.types.union import StrawberryUnion

from gqlbatch.core.config import Settings
from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem
from gqlbatch.core.openapi import Contract
from gqlbatch.core.placeholders import TemplateSyntaxError, parse_selectors, project
from gqlbatch.core.request import Mode, OnError, with_defaults
from gqlbatch.core.result import (
    BatchOutcome,
    BatchStats,
    ItemResult,
    RollbackState,
    State,
)
from gqlbatch.core.wire import BodyEncoding, Method
from gqlbatch.doors.caching import GET_ANSWER, GetAnswer, cached
from gqlbatch.doors.graphql.answer_types import AnswerTypes, ListOf, Member, Shape
from gqlbatch.doors.graphql.answer_types import Field as AnswerField
from gqlbatch.doors.graphql.compiled import TypedData, rejection
from gqlbatch.doors.graphql.documents import QueryLimits
from gqlbatch.doors.graphql.extensions import (
    GqlbatchSchema,
    ReleasingExecutionContext,
    RememberedNames,
    schema_extensions,
)
from gqlbatch.doors.graphql.graphiql import local_page, offline_notice
from gqlbatch.doors.graphql.persisted import PersistedQueries, PersistedQueryRefused
from gqlbatch.doors.graphql.websockets import SOCKETS, SocketAdapter
from gqlbatch.doors.http import CONTEXT, NO_STORE, in_door_shape, invalid, read_json
from gqlbatch.doors.http_cache import vary
from gqlbatch.doors.identity import has_credentials
from gqlbatch.execution import metrics
from gqlbatch.execution.context import BatchContext
from gqlbatch.execution.engine import run_batch, stream_batch
from gqlbatch.execution.job_store import Job, JobState
from gqlbatch.execution.jobs import Jobs

__all__ = [
    "BatchView",
    "Context",
    "GraphQLDoor",
    "answer_types",
    "build_schema",
    "plain_input",
    "rejection",
]

# Our enums, used as-is: strawberry.enum registers each (under the name given, or its class
# name) and returns the same class, so the annotations below name the engine's enums.
strawberry.enum(ErrorCode, description="Every error code gqlbatch reports.")
strawberry.enum(Method, name="HttpMethod", description="A sub-request's method.")
strawberry.enum(Mode, name="BatchMode", description="How items are scheduled.")
strawberry.enum(OnError, description="What a failure does to items not started.")
strawberry.enum(State, name="ItemState", description="Where an item ended.")
strawberry.enum(BodyEncoding, description="How `body` carries the upstream body.")


Context = BatchContext
"""What resolvers read through `info.context`: the engine's per-request context."""


# --------------------------------------------------------------------------------------------
# Inputs


@strawberry.input(description="A header to send with one sub-request.")
class HeaderInput:
    name: str
    value: str


@strawberry.input(
    description="The request that undoes a sub-request in an atomic batch; its placeholders "
    "may read every result of the batch, its own item's included."
)
class CompensationInput:
    path: str
    method: Method = Method.DELETE
    query: JSON | None = UNSET
    headers: list[HeaderInput] | None = UNSET
    body: JSON | None = UNSET


# The optional input fields default to UNSET, not None: the schema then publishes no `= null`
# default, so graphql-core leaves a field the client did not send out of the value, and
# Strawberry converts only the fields that were sent. With `= None`, every sub-request arrived
# with all twelve fields and converting them cost more than running the item (perf-log).
@strawberry.input(description="One REST call of a batch.")
class SubRequestInput:
    path: str = strawberry.field(
        description="Below the upstream's base URL; starts with '/'. Placeholders allowed."
    )
    request_id: strawberry.ID | None = strawberry.field(
        default=UNSET, description="Unique in the batch; defaults to the item's index."
    )
    method: Method = Method.GET
    query: JSON | None = strawberry.field(
        default=UNSET, description="Parameters as an object; a list value repeats the parameter."
    )
    headers: list[HeaderInput] | None = UNSET
    body: JSON | None = strawberry.field(default=UNSET, description="Any JSON; sent as JSON.")
    depends_on: list[strawberry.ID] | None = strawberry.field(
        default=UNSET, description="Items that must succeed first, beside those resultOf names."
    )
    upstream: str | None = strawberry.field(
        default=UNSET, description="A configured upstream; optional when there is only one."
    )
    timeout_ms: int | None = UNSET
    compensate: CompensationInput | None = strawberry.field(
        default=UNSET,
        description="For atomic batches and atomicity groups: how to undo this request.",
    )
    idempotency_key: str | None = strawberry.field(
        default=UNSET,
        description="Sent as Idempotency-Key; lets a POST or PATCH be retried safely.",
    )
    atomicity_group: str | None = strawberry.field(
        default=UNSET,
        description="OData's atomicity group: the items of a group run one at a time in list "
        "order, stop at the group's first failure, and then have their compensate requests "
        "run, newest first; other items are unaffected. dependsOn may name a group.",
    )
    for_each: JSON | None = strawberry.field(
        default=UNSET,
        description="Fan out: one call per element of a list, such as "
        "'{resultOf(posts)[*].userId}' or a literal JSON list. The other fields may use "
        "{item}, {item.field} and {index}.",
    )


@strawberry.input(description="How to run a batch.")
class BatchOptionsInput:
    mode: Mode | None = strawberry.field(default=UNSET, description="PARALLEL by default.")
    on_error: OnError | None = strawberry.field(default=UNSET, description="CONTINUE by default.")
    max_concurrency: int | None = UNSET
    timeout_ms: int | None = strawberry.field(
        default=UNSET, description="A deadline for the whole batch, in milliseconds."
    )
    atomic: bool | None = strawberry.field(
        default=UNSET,
        description="All or nothing: one item at a time in dependency order, stop at the "
        "first failure, then run each succeeded item's compensate request, newest first. "
        "False by default, unless the server's configuration says otherwise.",
    )


def _graphql_names(cls: type) -> tuple[tuple[str, str], ...]:
    # (Python name, GraphQL name) of each field, as the schema names them: default naming.
    names = NameConverter()
    return tuple(
        (field.python_name, names.from_field(field))
        for field in cls.__strawberry_definition__.fields  # type: ignore[attr-defined]
    )


_INPUT_NAMES = {
    cls: _graphql_names(cls)
    for cls in (SubRequestInput, CompensationInput, HeaderInput, BatchOptionsInput)
}


def plain_input(value: Any) -> Any:
    """An input value in the plain form the engine reads, which is what the REST door sends: an
    input object becomes a mapping keyed by its GraphQL names, without the fields left null.
    Scalars, enums and JSON values stay as they are (a JSON list is not copied)."""
    names = _INPUT_NAMES.get(type(value))
    if names is not None:
        return {
            graphql: plain_input(field)
            for python, graphql in names
            if (field := getattr(value, python)) is not None and field is not UNSET
        }
    if type(value) is list and value and type(value[0]) in _INPUT_NAMES:
        return [plain_input(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Outputs


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
        return _TYPE_NAMES[obj.state]

    @classmethod
    def is_type_of(cls, obj: Any, _info: Any) -> bool:
        # Strawberry's default checks isinstance against its own classes; the values here are
        # the engine's, whose state says which result type they are.
        return isinstance(obj, ItemResult) and _TYPE_NAMES[obj.state] == cls.__name__


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


@strawberry.type(description="One result per sub-request, in the order they were sent.")
class BatchResult:
    items: list[ItemResultType]
    stats: BatchStatsType
    rolled_back: bool = strawberry.field(
        description="True when an atomic batch or an atomicity group failed and its succeeded "
        "items were compensated."
    )
    replayed: bool = strawberry.field(
        description="True when this is the stored result of an earlier request with the same "
        "Idempotency-Key header; nothing was sent upstream again."
    )

    @strawberry.field(description="The result of one item, by its requestId.")
    def item(self, request_id: strawberry.ID) -> ItemResultType | None:
        return next((i for i in self.items if i.request_id == request_id), None)


# --------------------------------------------------------------------------------------------
# Resolvers and conversions

_TYPE_NAMES: dict[State, str] = {
    State.SUCCEEDED: "Succeeded",
    State.FAILED: "Failed",
    State.SKIPPED: "Skipped",
    State.CANCELLED: "Cancelled",
}


def _engine_input(
    ctx: Context, requests: list[SubRequestInput], options: BatchOptionsInput | None
) -> tuple[list[Any], object]:
    """The batch in the plain form the engine reads, with the GraphQL door's default options
    (`[doors.graphql]`) for those the client did not set."""
    present = None if options is None else plain_input(options)
    defaults = ctx.settings.door_options.get("graphql", {})
    return [plain_input(r) for r in requests], with_defaults(defaults, present)


async def _batch(
    ctx: Context,
    scope: str,
    requests: list[SubRequestInput],
    options: BatchOptionsInput | None,
    *,
    read_only: bool,
) -> BatchResult:
    items, present = _engine_input(ctx, requests, options)
    try:
        outcome = await _outcome(ctx, scope, items, present, read_only)
    except BatchRejected as exc:
        raise rejection(exc) from None
    return to_batch_result(outcome)


async def _outcome(
    ctx: Context, scope: str, items: list[Any], options: object, read_only: bool
) -> BatchOutcome:
    """Runs one `batch` field's batch, unless the compiled path already has (`finished`)."""
    finished = ctx.finished.get(scope) if ctx.finished is not None else None
    if finished is not None:
        return finished
    outcome = await run_batch(items, options, ctx, read_only=read_only, scope=scope)
    if ctx.seen is not None:
        ctx.seen(outcome)
    return outcome


async def compiled_batch(
    ctx: Context, scope: str, args: Mapping[str, Any], read_only: bool
) -> BatchOutcome:
    """One `batch` field's batch, from graphql-core's coerced arguments (the compiled path):
    input objects are already the plain mappings the engine reads, less their nulls.

    Raises:
        BatchRejected: as `run_batch`.
    """
    items = [_without_nulls(r) for r in args["requests"]]
    options = args.get("options")
    present = None if options is None else _without_nulls(options)
    defaults = ctx.settings.door_options.get("graphql", {})
    return await _outcome(ctx, scope, items, with_defaults(defaults, present), read_only)


def _without_nulls(value: Mapping[str, Any]) -> dict[str, Any]:
    # An input object as `plain_input` gives it: the fields left null are left out. The one
    # input object inside another is `compensate`; JSON values keep their nulls.
    return {
        k: _without_nulls(v) if k == "compensate" else v for k, v in value.items() if v is not None
    }


def to_batch_result(outcome: BatchOutcome) -> BatchResult:
    """The GraphQL value of a batch outcome.

    Its items are the engine's own `ItemResult`s: their attributes, and those of the errors,
    elements and rollbacks they hold, have the names the result types declare, so graphql-core
    reads them as they are (`body` has the one resolver). Building a Strawberry object for each item
    and each of its parts only to read it back was measurable (BENCHMARKS.md).
    """
    return BatchResult(
        items=cast(list[ItemResultType], list(outcome.results)),
        stats=_to_stats(outcome.stats),
        replayed=outcome.replayed,
        rolled_back=outcome.rolled_back,
    )


def _to_stats(stats: BatchStats) -> BatchStatsType:
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


@strawberry.type
class Query:
    @strawberry.field(
        description="Run a read-only batch (GET and HEAD only), so a screen can be a cacheable "
        "query. Any other method rejects the batch with METHOD_NOT_ALLOWED. Null, with an "
        "error naming it, when the batch is refused."
    )
    async def batch(
        self,
        info: strawberry.Info[Context, None],
        requests: list[SubRequestInput],
        options: BatchOptionsInput | None = None,
    ) -> BatchResult | None:
        return await _batch(info.context, str(info.path.key), requests, options, read_only=True)

    @strawberry.field(
        description="An async batch, with its results so far; null when there is none for "
        "these credentials (unknown, expired, or another client's)."
    )
    async def batch_job(
        self, info: strawberry.Info[Context, None], id: strawberry.ID
    ) -> BatchJob | None:
        try:
            return _to_job(await _jobs(info.context).get(str(id), info.context.client))
        except BatchRejected:
            return None  # the same answer whether it never existed or is someone else's


@strawberry.type
class Mutation:
    # Nullable, as Query.batch is: when one batch of a document is refused (its error names
    # it), the others' results stay in `data`. Non-null, the refusal of a third alias nulled
    # the whole response and lost the results of writes that two others had already run.
    @strawberry.field(
        description="Run a batch of REST sub-requests with any methods. Null, with an error "
        "naming it, when the batch is refused; other batches of the document keep their results."
    )
    async def batch(
        self,
        info: strawberry.Info[Context, None],
        requests: list[SubRequestInput],
        options: BatchOptionsInput | None = None,
    ) -> BatchResult | None:
        return await _batch(info.context, str(info.path.key), requests, options, read_only=False)

    @strawberry.field(
        description="Accept a batch at once and run it in the background: the job, to read "
        "with Query.batchJob. Refused at once, as batch is, when it is invalid."
    )
    async def submit_batch(
        self,
        info: strawberry.Info[Context, None],
        requests: list[SubRequestInput],
        options: BatchOptionsInput | None = None,
    ) -> BatchJob | None:
        ctx = info.context
        items, present = _engine_input(ctx, requests, options)
        try:
            job = await _jobs(ctx).submit(items, present, ctx, scope=str(info.path.key))
            return _to_job(job)
        except BatchRejected as exc:
            raise rejection(exc) from None


strawberry.enum(JobState, description="Where an async batch is.")


@strawberry.type(description="How far an async batch has got.")
class JobProgress:
    done: int = strawberry.field(description="Items with their result.")
    total: int


@strawberry.type(
    description="An async batch: submitted with submitBatch, read with batchJob while it runs "
    "and for jobs.ttl_s after. Only the credentials that submitted it can read it."
)
class BatchJob:
    id: strawberry.ID
    state: JobState
    progress: JobProgress
    items: list[ItemResultType] = strawberry.field(
        description="The results so far, in the order the items were sent."
    )
    stats: BatchStatsType | None = strawberry.field(description="Once the job succeeded.")
    error: str | None = strawberry.field(
        description="Why the job failed, when it did; for one that succeeded, what of its "
        "results could not be kept (their bodies, past jobs.max_bytes_per_client)."
    )


def _to_job(job: Job) -> BatchJob:
    return BatchJob(
        id=strawberry.ID(job.id),
        state=job.state,
        progress=JobProgress(done=job.done, total=job.total),
        items=cast(list[ItemResultType], job.items()),
        stats=None if job.outcome is None else _to_stats(job.outcome.stats),
        error=job.error,
    )


def _jobs(ctx: Context) -> Jobs:
    assert ctx.jobs is not None, "the HTTP app gives every request its server's jobs"
    return ctx.jobs


@strawberry.type(description="The end of a streamed batch: what it cost, and how it ended.")
class BatchDone:
    stats: BatchStatsType
    rolled_back: bool = strawberry.field(
        description="True when an atomic batch or an atomicity group failed and its succeeded "
        "items were compensated."
    )
    replayed: bool = strawberry.field(
        description="True when this is the stored result of an earlier request with the same "
        "Idempotency-Key header."
    )


async def _stream_batch(
    info: strawberry.Info[Context, None],
    requests: list[SubRequestInput],
    options: BatchOptionsInput | None = None,
) -> AsyncGenerator[object, None]:
    items, present = _engine_input(info.context, requests, options)
    events = stream_batch(items, present, info.context, scope=str(info.path.key))
    try:
        async for event in events:
            yield _event(event)
    except BatchRejected as exc:
        raise rejection(exc) from None


async def _follow_job(
    info: strawberry.Info[Context, None], id: strawberry.ID
) -> AsyncGenerator[object, None]:
    following = _jobs(info.context).follow(str(id), info.context.client)
    try:
        # aclosing: a follower that stops is counted out of the job's followers at once.
        async with contextlib.aclosing(following) as events:
            async for event in events:
                yield _to_job(event) if isinstance(event, Job) else event
    except BatchRejected as exc:
        raise rejection(exc) from None


def _subscription(succeeded: type) -> type:
    """The Subscription root, whose event unions name *succeeded*: the schema's own
    Succeeded type, which has `data` when upstreams have OpenAPI documents."""
    results = (succeeded, Failed, Skipped, Cancelled)
    batch_event = _union(
        "BatchEvent",
        (*results, BatchDone),
        "One event of a streamed batch: an item's result, then the batch's end.",
    )
    job_event = _union(
        "JobEvent",
        (*results, BatchJob),
        "One event of a followed job: an item's result, then the job once ended.",
    )
    batch = strawberry.subscription(
        _stream_batch,
        graphql_type=batch_event,
        description="Run a batch of REST sub-requests and stream it: each item's result the "
        "moment it is final (an atomic batch's or group's when the batch ends), then a "
        "BatchDone. A refused batch ends the stream with its error.",
    )
    batch_job = strawberry.subscription(
        _follow_job,
        graphql_type=job_event,
        description="Follow an async batch: each item's result as it settles (those already "
        "settled first), then the job itself once it has ended. Ends at once with "
        "JOB_NOT_FOUND when there is no such job for these credentials.",
    )
    return strawberry.type(type("Subscription", (), {"batch": batch, "batch_job": batch_job}))


def _event(event: ItemResult | BatchOutcome) -> object:
    if isinstance(event, BatchOutcome):
        return BatchDone(
            stats=_to_stats(event.stats), rolled_back=event.rolled_back, replayed=event.replayed
        )
    return event  # the engine's ItemResult: each result type's is_type_of knows it


# --------------------------------------------------------------------------------------------
# Typed data: Strawberry types for the answers the upstreams' OpenAPI documents describe


class _Answer(dict[str, Any]):
    """An answer given a type for `data`: a copy of its JSON object (or `{"items": list}`)
    that carries the name of its member type, which a plain dict cannot."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str, value: Mapping[str, Any]) -> None:
        super().__init__(value)
        self.type_name = type_name


class _AnswerUnion(StrawberryUnion):
    """TypedBody: a union whose values say their member (`_Answer.type_name`).

    Strawberry's own resolver tries each member in turn (and, for a `strawberry.cast` value,
    checks every member): with a document of 100 resources, typing an answer cost 170 us, most
    of it there (benchmarks/openapi.py). Strawberry takes a StrawberryUnion given as the
    annotation as it is, so this one answers by name, whatever the number of members.
    """

    def get_type_resolver(self, type_map: Any) -> Any:
        def member(root: Any, info: Any, type_: Any) -> str:
            return cast(_Answer, root).type_name

        return member


_SCALAR_TYPES: dict[str, Any] = {
    "String": str,
    "Int": int,
    "Float": float,
    "Boolean": bool,
    "JSON": JSON,
}


def read_field(source: Any, name: str) -> Any:
    """The schema's default resolver. A generated type's value is the upstream's JSON object
    (a dict); gqlbatch's own values are objects with attributes."""
    if isinstance(source, dict):
        return source.get(name)
    return getattr(source, name)


def _typed_classes(types: AnswerTypes) -> dict[str, type]:
    """A Strawberry type for each object and enum type of *types*, by name. The classes are
    made first and given their fields after, so that fields can name each other in cycles
    (`Comment.replies`); Strawberry reads the annotations when the schema is built."""
    named: dict[str, Any] = dict(_SCALAR_TYPES)
    for kind in types.enums:
        values = enum.Enum(kind.name, [(value, value) for value in kind.values])  # type: ignore[misc]
        named[kind.name] = strawberry.enum(values, name=kind.name, description=kind.description)
    classes = {spec.name: type(spec.name, (), {"__annotations__": {}}) for spec in types.objects}
    named.update(classes)
    for spec in types.objects:
        cls = classes[spec.name]
        for index, field in enumerate(spec.fields):
            _add_field(cls, index, field, _annotation(field.shape, named))
        strawberry.type(cls, name=spec.name, description=spec.description)
    return classes


def _union(name: str, classes: tuple[type, ...], description: str) -> Any:
    """The union type *name* of *classes*, which are known only when the schema is built (a
    union of one class is that class, which Strawberry still makes a union)."""
    members = functools.reduce(operator.or_, classes)
    return Annotated[members, strawberry.union(name, description=description)]


def _annotation(shape: Shape, named: Mapping[str, Any]) -> Any:
    inner = list[_annotation(shape.of, named)] if isinstance(shape, ListOf) else named[shape.name]  # type: ignore[misc]
    return inner | None if shape.nullable else inner


def _add_field(cls: type, index: int, field: AnswerField, annotation: Any) -> None:
    # A key that is a plain Python name is read by `read_field`, at no cost beyond a getattr;
    # another (`@type`, `class`, `big-id`) has a resolver of its own.
    key = field.key
    if key == field.name and key.isidentifier() and not iskeyword(key) and key[0] != "_":
        cls.__annotations__[key] = annotation
        setattr(cls, key, strawberry.field(name=field.name, description=field.description))
        return

    def read(root: Any) -> Any:
        return root.get(key) if isinstance(root, dict) else None

    python = f"_key_{index}"
    cls.__annotations__[python] = annotation
    setattr(
        cls,
        python,
        strawberry.field(
            read, name=field.name, description=field.description, graphql_type=annotation
        ),
    )


def _succeeded_with_data(types: AnswerTypes, classes: Mapping[str, type]) -> type:
    """Succeeded with `data`: the answer as the type its operation's document gives it."""
    members = tuple(classes[name] for name in types.members)
    typed_body = _AnswerUnion(
        name="TypedBody",
        type_annotations=tuple(StrawberryAnnotation(member) for member in members),
        description="An answer as the type its upstream's OpenAPI document gives it.",
    )

    def data(root: Any) -> Any:
        return _typed(types, cast(ItemResult, root))

    field = strawberry.field(
        data,
        graphql_type=StrawberryOptional(of_type=typed_body),
        description="The body as the type its upstream's OpenAPI document gives this "
        "operation's answer with this status; null when no operation matches, that status "
        "has no object or array schema, or the body is not the JSON the schema describes. "
        "An array answer is a ...List with `items`; a forEach item's is an ...Each whose "
        "`items` hold each element's, null where an element failed.",
    )
    succeeded = type("Succeeded", (Succeeded,), {"data": field})
    return strawberry.type(succeeded, description=Succeeded.__strawberry_definition__.description)  # type: ignore[attr-defined]


def _compiled_data(types: AnswerTypes) -> TypedData:
    """What the compiled path needs to write `data` as this schema's resolvers do."""
    keys = {o.name: {f.name: f.key for f in o.fields} for o in types.objects}
    return TypedData(answer=functools.partial(_typed_value, types), keys=keys)


def _typed(types: AnswerTypes, item: ItemResult) -> _Answer | None:
    """The item's `data` for Strawberry: its answer, marked with its member type."""
    found = _typed_value(types, item)
    return None if found is None else _Answer(*found)


def _typed_value(types: AnswerTypes, item: ItemResult) -> tuple[str, dict[str, Any]] | None:
    """The member type of the item's answer, and the JSON object its fields read; None when
    `data` is null. Nothing is copied: only the union's own value needs a type name."""
    if item.route is None or item.status is None:
        return None
    if item.elements is not None:
        return _each_value(types, item)
    member = types.member(*item.route, item.status)
    if member is None:
        return None
    value = _member_value(member, item.body)
    return None if value is None else (member.type_name, value)


def _each_value(types: AnswerTypes, item: ItemResult) -> tuple[str, dict[str, Any]] | None:
    """A forEach item's answers: each element's slot as `data` would be for it alone."""
    assert item.route is not None and item.elements is not None and isinstance(item.body, list)
    status = next((e.status for e in item.elements if e.error is None and e.status), None)
    member = types.member(*item.route, status) if status is not None else None
    if member is None:
        return None
    slots = [
        None if element.error is not None else _member_value(member, body)
        for element, body in zip(item.elements, item.body, strict=True)
    ]
    return types.each[member.type_name], {"items": slots}


def _member_value(member: Member, body: Any) -> dict[str, Any] | None:
    """*body* as the object *member*'s fields read; None when it is not the JSON its schema
    describes."""
    if member.wraps_list:
        return {"items": body} if isinstance(body, list) else None
    return body if isinstance(body, dict) else None


# --------------------------------------------------------------------------------------------
# Schema


def possible_types(schema: strawberry.Schema) -> dict[str, list[str]]:
    """Each interface and union of *schema*, with its member types: Apollo Client's
    `possibleTypes`, without which its cache drops fragments on `ItemResult` silently."""
    types = schema.introspect()["__schema"]["types"]
    return {
        t["name"]: [member["name"] for member in t["possibleTypes"]]
        for t in types
        if t["kind"] in ("INTERFACE", "UNION") and not t["name"].startswith("__")
    }


def graphiql_page() -> str:
    """Strawberry's GraphiQL page, as it loads its files from unpkg.com."""
    return get_graphql_ide_html(graphql_ide="graphiql")


def build_schema(
    limits: QueryLimits | None = None,
    max_operations: int = 10,
    answers: AnswerTypes | None = None,
    *,
    compiled: bool = True,
    trusted: frozenset[str] | None = None,
) -> strawberry.Schema:
    """The gqlbatch GraphQL schema, with *limits* on query depth, aliases and tokens, and up
    to *max_operations* operations per HTTP request (an array of them in one POST). With
    *answers*, Succeeded has `data`, typed by the upstreams' OpenAPI documents. `compiled`
    answers `batch` operations on the compiled path (`doors.graphql.compiled`); without it,
    graphql-core executes every operation, which is the reference the tests compare with.
    With *trusted* (SHA-256 digests), only those documents run, over HTTP and websockets."""
    succeeded: type = Succeeded
    if answers is not None and answers.members:
        succeeded = _succeeded_with_data(answers, _typed_classes(answers))
    return GqlbatchSchema(
        query=Query,
        mutation=Mutation,
        subscription=_subscription(succeeded),
        types=[succeeded, Failed, Skipped, Cancelled],
        extensions=schema_extensions(
            limits or QueryLimits(),
            frozenset(o.name for o in answers.objects) if answers is not None else frozenset(),
            run_batch=compiled_batch if compiled else None,
            typed=None if answers is None or not answers.members else _compiled_data(answers),
            trusted=trusted,
        ),
        execution_context_class=ReleasingExecutionContext,
        config=StrawberryConfig(
            name_converter=RememberedNames(),
            batching_config={"max_operations": max_operations},
            default_resolver=read_field,
        ),
    )


@functools.cache
def builtin_type_names() -> frozenset[str]:
    """The names gqlbatch's own schema takes: a generated type with one of them is renamed."""
    types = build_schema().introspect()["__schema"]["types"]
    return frozenset(t["name"] for t in types)


def answer_types(contracts: Mapping[str, Contract]) -> AnswerTypes:
    """The types of the answers *contracts* describe, named around gqlbatch's own."""
    return AnswerTypes(contracts, reserved=builtin_type_names())


# --------------------------------------------------------------------------------------------
# The HTTP view


GRAPHQL_RESPONSE = "application/graphql-response+json"


_HTTP_CODES = {405: ErrorCode.METHOD_NOT_ALLOWED, 413: ErrorCode.REQUEST_TOO_LARGE}


class BatchView(GraphQLView[Context, None]):
    """Strawberry's aiohttp view with a fresh gqlbatch `Context` per request."""

    def __init__(
        self,
        *,
        settings: Settings,
        persisted: PersistedQueries | None = None,
        answers: AnswerTypes | None = None,
    ) -> None:
        limits = QueryLimits(
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_query_aliases,
            max_tokens=settings.max_query_tokens,
            introspection=settings.introspection,
            max_select_paths=settings.max_select_paths,
        )
        super().__init__(
            schema=build_schema(
                limits,
                settings.max_operations,
                answers,
                trusted=None if persisted is None else persisted.trusted,
            ),
            graphql_ide="graphiql" if settings.graphiql else None,
            # A websocket is not covered by CORS: Strawberry refuses one whose Origin is
            # neither the gateway's own nor listed (cross-site websocket hijacking).
            allowed_origins=settings.cors.origins,
            connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_s),
            # A burst of operations on one websocket runs back to back on the loop: 2,000
            # follow requests over 20 websockets held it a second (issue 24).
            max_subscriptions_per_connection=settings.ws_max_operations,
        )
        self._settings = settings
        self._persisted = persisted or PersistedQueries(None)
        self._vary = vary(settings.forwarded_header_names())
        page = self.graphql_ide_html if settings.graphiql else ""
        self._ide_page = local_page(page) if settings.graphiql_assets_dir else offline_notice(page)

    websocket_adapter_class = SocketAdapter

    async def create_websocket_response(
        self, request: web.Request, subprotocol: str | None
    ) -> web.WebSocketResponse:
        # Counted per client and per address, and closed once idle (`doors.graphql.websockets`).
        context = request[CONTEXT]
        protocols = [subprotocol] if subprotocol else []
        return await request.app[SOCKETS].open(request, protocols, context.client, context.address)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if "Upgrade" in request.headers:
            try:
                return await self._answer(request)
            finally:
                request.app[SOCKETS].closed(request)
        return await self._answer(request)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        # Strawberry answers a request it cannot take (no query, a bad `variables`, PUT) with
        # its reason as plain text; here it is a GraphQL error with a code, as every other
        # refusal is.
        answer = None
        if request.method == "GET" and CONTEXT in request and "Upgrade" not in request.headers:
            # A read-only screen: cacheable, from what its batches' upstreams allowed.
            request[GET_ANSWER] = answer = GetAnswer()
            request[CONTEXT] = dataclasses.replace(request[CONTEXT], seen=answer.outcomes.append)
        try:
            response = await self.run(request=request)
        except HTTPException as exc:
            code = _HTTP_CODES.get(exc.status_code, ErrorCode.INVALID_INPUT)
            return in_door_shape(request, exc.status_code, code, exc.reason)
        if answer is None:
            return response
        credentials = has_credentials(request[CONTEXT].client)
        return cached(request, response, answer, credentials=credentials, vary=self._vary)

    async def process_result(self, request: web.Request, result: ExecutionResult) -> Any:
        answer = request.get(GET_ANSWER)
        if result.errors and answer is not None:
            answer.errors = True  # an answer with errors is never cached
        return await super().process_result(request, result)

    async def execute_single(
        self,
        request: web.Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: web.Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        # Persisted queries: the document a hash names, over GET or POST, per operation of
        # an operation batch; a refusal is that operation's answer, as Apollo's link reads it.
        try:
            document = await self._persisted.document(request_data.query, request_data.extensions)
        except PersistedQueryRefused as exc:
            metrics.refused(exc.code.value)
            error = GraphQLError(exc.message, extensions={"code": exc.code.value})
            return ExecutionResult(data=None, errors=[error])
        registering = document is request_data.query
        if not registering:
            request_data = dataclasses.replace(request_data, query=document)
        result = await super().execute_single(
            request=request,
            request_adapter=request_adapter,
            sub_response=sub_response,
            context=context,
            root_value=root_value,
            request_data=request_data,
        )
        # Kept once it has parsed and validated: a document that cannot run is never stored.
        if registering and (result.data is not None or not _request_errors(result.errors)):
            await self._persisted.register(document, request_data.extensions, context.client)
        return result

    async def render_graphql_ide(self, request: web.Request) -> web.Response:
        return web.Response(text=self._ide_page, content_type="text/html")

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET with a persisted-query hash has no `query` either; it wants its data, even
        # from a plain fetch(), whose Accept is */*.
        return "extensions" not in request.query_params and super().should_render_graphql_ide(
            request
        )

    async def reject_websocket(self, request: web.Request) -> web.Response:
        return in_door_shape(
            request,
            403,
            ErrorCode.FORBIDDEN_ORIGIN,
            f"a websocket from {request.headers.get('Origin')!r} is refused: only the "
            "gateway's own origin and those of [cors] origins may open one",
        )

    def is_websocket_request(self, request: web.Request) -> TypeGuard[web.Request]:
        # Strawberry builds a WebSocketResponse for every request to find out, a measurable
        # share of a small batch's CPU (BENCHMARKS.md); only a request that asks to upgrade
        # can be one.
        return "Upgrade" in request.headers and super().is_websocket_request(request)

    async def get_sub_response(self, request: web.Request) -> web.Response:
        # GraphQL over HTTP: a client that prefers application/graphql-response+json gets it,
        # with 400 for request errors (no data at all); application/json stays 200 throughout.
        response = web.Response(headers={"Cache-Control": NO_STORE})
        if _prefers_graphql_response(request.headers.get("Accept", "")):
            response.content_type = GRAPHQL_RESPONSE
        return response

    def decode_json(self, data: str | bytes) -> object:
        """A request body, or GET's `variables`, read strictly: a JSON object, or an array of
        them (operation batching: Apollo's BatchHttpLink, graphql-request's batchRequests), no
        deeper than max_json_depth, no NaN, no document over max_query_bytes (refused before
        parsing it), and no more operations than max_operations.

        Raises:
            BatchRejected: which the `front_door` middleware answers in GraphQL's shape.
        """
        settings = self._settings
        document = read_json(data, settings.max_json_depth)
        operations = document if isinstance(document, list) else [document]
        if not operations:
            raise invalid("an array of GraphQL operations needs at least one")
        if isinstance(document, list) and len(document) > settings.max_operations:
            raise BatchRejected(
                [
                    Problem(
                        ErrorCode.BATCH_TOO_LARGE,
                        f"{len(document)} operations in one request, over the limit of "
                        f"{settings.max_operations} (max_operations)",
                    )
                ]
            )
        for operation in operations:
            _check_operation(operation, settings.max_query_bytes)
        return document

    def create_response(self, response_data: Any, sub_response: web.Response) -> web.Response:
        media = sub_response.content_type
        if isinstance(response_data, list):  # a batch of operations: each is its own answer
            response_data = [_without_null_data(answer) for answer in response_data]
            return super().create_response(response_data, sub_response)
        request_error = _is_request_error(response_data)
        response_data = _without_null_data(response_data)
        response = super().create_response(response_data, sub_response)
        if media == GRAPHQL_RESPONSE:
            response.content_type = GRAPHQL_RESPONSE
            if request_error:
                response.set_status(400)
        return response

    async def get_context(self, request: web.Request, response: object) -> Context:
        context = request[CONTEXT]
        if isinstance(response, web.WebSocketResponse):
            # One context serves every operation of the connection: each operation gets a
            # budget of its own from OperationSetup, as each HTTP request does.
            return dataclasses.replace(context, budget=None)
        return context


class GraphQLDoor:
    """`/graphql`. Its schema gains the answers' types once the upstreams' OpenAPI documents
    are read, which happens in a start-up hook (a document may be served by this very event
    loop), after the route was added; the route calls whichever view is current."""

    def __init__(self, settings: Settings, persisted: PersistedQueries) -> None:
        self._settings = settings
        self._persisted = persisted
        self.view = BatchView(settings=settings, persisted=persisted)

    def type_answers(self, contracts: Mapping[str, Contract]) -> None:
        """Serve the schema with the types of the answers *contracts* describe."""
        answers = answer_types(contracts)
        self.view = BatchView(settings=self._settings, persisted=self._persisted, answers=answers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return await self.view(request)


def _check_operation(operation: object, max_query_bytes: int) -> None:
    """Raises:
    BatchRejected: INVALID_INPUT for a non-object, REQUEST_TOO_LARGE for a long document."""
    if not isinstance(operation, dict):
        kind = "null" if operation is None else type(operation).__name__
        raise invalid(f'a GraphQL request is a JSON object such as {{"query": "..."}}, not {kind}')
    query = operation.get("query")
    if isinstance(query, str) and len(query.encode(errors="replace")) > max_query_bytes:
        raise BatchRejected(
            [
                Problem(
                    ErrorCode.REQUEST_TOO_LARGE,
                    f"the GraphQL document is over the {max_query_bytes}-byte limit "
                    "(max_query_bytes); pass large values as variables",
                    field="query",
                )
            ]
        )


def _prefers_graphql_response(accept: str) -> bool:
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in (GRAPHQL_RESPONSE, "application/json"):
            return media == GRAPHQL_RESPONSE
    return False


def _without_null_data(answer: Any) -> Any:
    # A request that never reached execution (it did not parse or validate) has no `data`
    # entry at all (GraphQL spec, "Response Format"; graphql-http's audits D586 and 5E5B);
    # Strawberry writes `"data": null`. A field error keeps its data.
    if _is_request_error(answer):
        return {k: v for k, v in answer.items() if k != "data"}
    return answer


def _request_errors(errors: list[GraphQLError] | None) -> bool:
    """Whether *errors* are a request's (parse, validation), which carry no path."""
    return bool(errors) and all(not e.path for e in errors or ())


def _is_request_error(data: Any) -> bool:
    # Parse and validation errors carry no path; a field error (a rejected batch) has one.
    if not isinstance(data, dict) or data.get("data") is not None:
        return False
    return all(not e.get("path") for e in data.get("errors") or [])
