"""The GraphQL door's operations: `Query`, `Mutation` and `Subscription`, whose `batch`,
`submitBatch` and job fields hand their batches to the engine and its jobs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any, cast

import strawberry

from gqlbatch.core.errors import BatchRejected
from gqlbatch.core.request import with_defaults
from gqlbatch.core.result import (
    BatchOutcome,
    ItemResult,
)
from gqlbatch.doors.graphql.batches import field_outcome
from gqlbatch.doors.graphql.compiled import rejection
from gqlbatch.doors.graphql.context import Context
from gqlbatch.doors.graphql.inputs import BatchOptionsInput, SubRequestInput, plain_input
from gqlbatch.doors.graphql.results import (
    ROLLED_BACK,
    BatchResult,
    BatchStatsType,
    Cancelled,
    Failed,
    ItemResultType,
    Skipped,
    to_batch_result,
    to_stats,
)
from gqlbatch.doors.graphql.typed_data import union_of
from gqlbatch.execution.engine import stream_batch
from gqlbatch.execution.job_store import Job, JobState
from gqlbatch.execution.jobs import Jobs


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
        outcome = await field_outcome(ctx, scope, items, present, read_only)
    except BatchRejected as exc:
        raise rejection(exc) from None
    return to_batch_result(outcome)


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
        stats=None if job.outcome is None else to_stats(job.outcome.stats),
        error=job.error,
    )


def _jobs(ctx: Context) -> Jobs:
    assert ctx.jobs is not None, "the HTTP app gives every request its server's jobs"
    return ctx.jobs


@strawberry.type(description="The end of a streamed batch: what it cost, and how it ended.")
class BatchDone:
    stats: BatchStatsType
    rolled_back: bool = strawberry.field(description=ROLLED_BACK)
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


def subscription(succeeded: type) -> type:
    """The Subscription root, whose event unions name *succeeded*: the schema's own
    Succeeded type, which has `data` when upstreams have OpenAPI documents."""
    results = (succeeded, Failed, Skipped, Cancelled)
    batch_event = union_of(
        "BatchEvent",
        (*results, BatchDone),
        "One event of a streamed batch: an item's result, then the batch's end.",
    )
    job_event = union_of(
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
            stats=to_stats(event.stats), rolled_back=event.rolled_back, replayed=event.replayed
        )
    return event  # the engine's ItemResult: each result type's is_type_of knows it
