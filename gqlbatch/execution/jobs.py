"""Async batches (jobs): a batch accepted at once and run in the background, read while it runs
and after, cancelled on request (DESIGN §2 `submitBatch`, `Prefer: respond-async`).

A job is validated when it is submitted, so an invalid batch is refused then, as any batch is;
from then on its items' results are recorded in a `JobStore` as each one settles. Only the
client that submitted a job (its credentials' digest) can read or cancel it; to anyone else it
does not exist. A finished job is kept for `jobs_ttl_s`; at most `jobs_max` are kept at once,
and `jobs_max_per_client` of one client (`job_store` says what else each client is held to).

The store is this process's memory, where the job runs in the process that accepted it; or
Redis (`[store] url`), where any process reads a job and cancels it, and the job waits on a
queue (`JobQueue`) for any worker. A job outlives the process running it: each item's result is
kept as it settles, and an item that sends a write is marked as started first. When the
process dies, another worker resumes the job (`Jobs.run`): settled items are not run again,
and a write that started without a result is never sent blindly: it is OUTCOME_UNKNOWN, or
sent again with its `idempotencyKey`, which tells the upstream it is the same write
(`job_runs`, the half that runs jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Protocol

from gqlbatch.core.errors import (
    BatchRejected,
    ErrorCode,
    Problem,
    StoreUnavailable,
)
from gqlbatch.core.result import BatchOutcome, BatchStats, ItemResult
from gqlbatch.core.wire import BodyEncoding
from gqlbatch.execution.context import BatchContext
from gqlbatch.execution.idempotency import check_key, fingerprint, reused
from gqlbatch.execution.job_feeds import Feeds
from gqlbatch.execution.job_runs import CANCELLED, ContextFor, JobRuns
from gqlbatch.execution.job_store import (
    COMPACT_CHARS,
    KEPT,
    Job,
    JobSpec,
    JobState,
    JobStore,
    lines,
    opened,
    read,
    seal,
)
from gqlbatch.execution.offload import Offload
from gqlbatch.execution.planning import planned, request_budget, reserve_calls
from gqlbatch.execution.store_faults import Later

__all__ = ["ContextFor", "JobQueue", "Jobs"]


_ITEMS_A_TURN = 8
"""Items packed or read per turn of the event loop: each is an upstream answer or less."""


class JobQueue(Protocol):
    """Where jobs wait for a worker, in any process (`job_queue.SaqQueue`)."""

    async def enqueue(self, job_id: str) -> None:
        """Have some worker run *job_id* (`Jobs.run`), and another if that one dies."""
        ...


class Jobs:
    """Submitting, reading, following and cancelling jobs; running them, and resuming them."""

    def __init__(
        self,
        store: JobStore,
        *,
        ttl_s: int,
        max_jobs: int,
        attempts: int = 3,
        lease_s: int = 10,
        queue: JobQueue | None = None,
        offload: Offload | None = None,
        max_per_client: int = 100,
        max_bytes_per_client: int = 64 * 1024 * 1024,
        max_followers: int = 32,
        max_followers_per_client: int = 64,
        retry_after_s: int = 1,
        refusal: str | None = None,
        max_running: int = 10,
        max_running_per_client: int = 4,
        later: Later | None = None,
    ) -> None:
        """Without a *queue*, a job runs in the process that accepted it. A process running
        a job holds its lease (*lease_s*, renewed while it runs): the queue may deliver a job
        twice, and only one process runs it at a time. A large outcome is packed and read
        back by *offload*, off the event loop. The *max_…* limits are the store's, said
        again here for the messages that refuse a client. With *refusal*, no job is taken,
        and each submission is refused with it. Without a queue, at most *max_running* jobs
        run at once here, and *max_running_per_client* of one client; the others wait their
        turn, RUNNING with nothing done yet. What a running job must tell the store (its
        results, its end) goes through *later*: kept, and written when the store answers."""
        self._store = store
        self._later = later or Later()
        self._ttl_s = ttl_s
        self._max_jobs = max_jobs
        self._max_per_client = max_per_client
        self._max_bytes = max_bytes_per_client
        self._attempts = attempts
        self._lease_ms = lease_s * 1000
        self._queue = queue
        self._offload = offload
        self._retry_after_s = retry_after_s
        self._refusal = refusal
        self._running: dict[str, asyncio.Task[None]] = {}
        self._turns = _Turns(max_running, max_running_per_client)
        self._runs = JobRuns(
            store,
            later=self._later,
            attempts=attempts,
            lease_ms=lease_s * 1000,
            pack=self._packed,
        )
        self._feeds = Feeds(
            store,
            self._unpacked,
            per_job=max_followers,
            per_client=max_followers_per_client,
            retry_after_s=retry_after_s,
        )

    async def submit(
        self, items: object, options: object, ctx: BatchContext, *, scope: str = ""
    ) -> Job:
        """Validate the batch and start it (here, or on the queue); the job, at once. With an
        Idempotency-Key, the job that key started, if one is kept: a key starts one job,
        however often it is sent. *scope* is `engine.run_batch`'s.

        Raises:
            BatchRejected: the batch is invalid (nothing ran), or too many jobs are kept, by
                the server or for this client, or the key started a job of another batch.
            StoreUnavailable: the store did not answer; the job was not started.
        """
        if self._refusal is not None:
            raise BatchRejected([Problem(ErrorCode.INVALID_INPUT, self._refusal, field="Prefer")])
        key = ctx.idempotency_key
        if key is not None:
            check_key(key)  # refused as the batch door refuses it
        plan = await planned(items, options, ctx)  # refused now, not in the background
        # Its calls count against its request's, as those of a `batch` field do.
        calls = reserve_calls(plan, ctx)
        spec = JobSpec(
            items, options, ctx.forwarded, ctx.address, ctx.request_id, calls, key, scope
        )
        job = Job(_job_id(ctx.client, scope, key), ctx.client, len(plan.items), spec=spec)
        if key is not None:
            job.fingerprint = fingerprint(items, options, False)  # as run_batch's
        refused = await self._store.add(job)
        if refused == KEPT:
            return await self._kept(job)
        if refused is not None:
            raise self._full(refused)
        if self._queue is not None:
            await self._enqueue(self._queue, job)
            return job
        # The job has a budget of its own, of the calls it reserved: the request is over.
        own = dataclasses.replace(ctx, budget=request_budget(ctx.settings, calls))
        task = asyncio.create_task(self._in_turn(job, own), name="gqlbatch:job")
        self._running[job.id] = task
        task.add_done_callback(lambda _: self._running.pop(job.id, None))
        return job

    async def _in_turn(self, job: Job, ctx: BatchContext) -> None:
        # Each running job holds its results and its calls' answers: sixteen 30 MB jobs of
        # one client, run at once, took the process to 900 MiB (issue 24).
        async with self._turns.turn(job.client):
            await self.run(job.id, lambda _: ctx)

    async def _kept(self, job: Job) -> Job:
        """The job kept under *job*'s id: the one its Idempotency-Key started."""
        kept = await self._store.get(job.id)
        if kept is None:  # it expired this very moment: what a first send would get
            raise StoreUnavailable("the job of this Idempotency-Key was expiring")
        if kept.fingerprint != job.fingerprint:
            raise reused(
                "this Idempotency-Key already started a job of a different batch; use a new "
                "key for a new batch"
            )
        return await self._unpacked(kept)

    async def _enqueue(self, queue: JobQueue, job: Job) -> None:
        """Queue *job*; when the queue does not take it, end it (nothing ran) and refuse."""
        try:
            await queue.enqueue(job.id)
        except Exception as exc:  # the queue's Redis is away: saq raises redis-py's errors
            why = type(exc).__name__
            ended = (
                "the job could not be queued, so nothing ran; send the batch again (with a "
                "new Idempotency-Key, if it had one)"
            )
            self._later.soon(
                f"the end of job {job.id}",
                lambda: self._store.finish(job.id, job.client, JobState.FAILED, None, ended),
            )
            raise StoreUnavailable(why) from None

    def _full(self, limit: str) -> BatchRejected:
        if limit == "jobs.max_per_client":
            message = (
                f"these credentials already have {self._max_per_client} jobs kept "
                "(jobs.max_per_client); send it again once some have finished and expired, "
                "or cancel one"
            )
        else:
            message = (
                f"the server already keeps {self._max_jobs} jobs (jobs.max); "
                "send it again once some have finished and expired"
            )
        return BatchRejected(
            [Problem(ErrorCode.TOO_MANY_REQUESTS, message)], retry_after_s=self._retry_after_s
        )

    async def get(self, job_id: str, client: str) -> Job:
        """The job *job_id*, if *client* submitted it, with its outcome read.

        Raises:
            BatchRejected: JOB_NOT_FOUND, for an unknown, expired or someone else's job.
        """
        job = await self._store.get(job_id)
        if job is None or job.client != client:
            raise self._not_found(job_id)
        return await self._unpacked(job)

    def _not_found(self, job_id: str) -> BatchRejected:
        return BatchRejected(
            [
                Problem(
                    ErrorCode.JOB_NOT_FOUND,
                    f"no job {job_id[:64]!r} for these credentials; jobs are kept "
                    f"{self._ttl_s} s after they finish",
                    field="id",
                )
            ]
        )

    async def _unpacked(self, job: Job) -> Job:
        """*job* with its packed outcome read: decompressed off the event loop, and read an
        item at a time on it (json.loads holds the GIL, so a thread would not spare the loop
        the time of one large read)."""
        if job.packed is None:
            return job
        packed = job.packed
        large = len(packed) > COMPACT_CHARS and self._offload is not None
        text = (
            await self._offload(lambda: opened(packed))
            if large and self._offload
            else opened(packed)
        )
        stats: BatchStats | None = None
        results: dict[int, ItemResult] = {}
        for n, part in enumerate(read(text)):
            if isinstance(part, BatchStats):
                stats = part
            else:
                results[part.index] = part
            if large and n % _ITEMS_A_TURN == 0:
                await asyncio.sleep(0)
        assert stats is not None
        outcome = BatchOutcome(tuple(results[i] for i in sorted(results)), stats)
        return Job(job.id, job.client, job.total, job.state, results, outcome, None, job.error)

    async def _packed(self, outcome: BatchOutcome) -> tuple[str, str | None]:
        """*outcome* packed to be kept: written an item at a time on the event loop, and
        compressed off it when it is large; with a note when only its items' states,
        statuses and errors could be kept: it alone was over its client's bytes
        (jobs.max_bytes_per_client)."""
        text = await self._written(outcome)
        if len(text) > self._max_bytes:
            note = (
                f"the job's results took {len(text)} bytes, more than the {self._max_bytes} "
                "its client may keep (jobs.max_bytes_per_client): their bodies were not kept; "
                "states, statuses and errors were"
            )
            return seal(await self._written(_without_bodies(outcome))), note
        if len(text) > COMPACT_CHARS and self._offload is not None:
            return await self._offload(lambda: seal(text)), None
        return seal(text), None

    async def _written(self, outcome: BatchOutcome) -> str:
        written = []
        for n, line in enumerate(lines(outcome)):
            written.append(line)
            if n % _ITEMS_A_TURN == _ITEMS_A_TURN - 1:
                await asyncio.sleep(0)  # a turn of the loop for others
        return "\n".join(written)

    async def cancel(self, job_id: str, client: str) -> Job:
        """End *job_id* as CANCELLED, and stop its run gently: no item starts, the calls in
        flight finish (a write is never cut half-way), an atomic batch or group is rolled back,
        and what the run did is kept with the job once it has stopped. Whichever process runs
        it stops it (this one at once, another within a second).

        Raises:
            BatchRejected: JOB_NOT_FOUND, as `get`.
        """
        await self.get(job_id, client)
        await self._store.finish(job_id, client, JobState.CANCELLED, None, None)
        self._runs.halt(job_id, CANCELLED)
        return await self.get(job_id, client)

    async def follow(self, job_id: str, client: str) -> AsyncGenerator[ItemResult | Job, None]:
        """Each item's result as it settles (those already settled first), then the job
        once it has ended.

        Raises:
            BatchRejected: JOB_NOT_FOUND, as `get`, or TOO_MANY_REQUESTS past the followers
                of a job or a client; before anything is yielded.
        """
        try:
            feed = await self._feeds.join(job_id, client)
        except LookupError:
            raise self._not_found(job_id) from None
        # aclosing: a follower that leaves is counted out now, not when its generator is
        # collected.
        async with contextlib.aclosing(self._feeds.events(feed)) as events:
            async for event in events:
                yield event

    async def run(self, job_id: str, context_for: ContextFor) -> None:
        """Run *job_id* here, or resume it (`JobRuns.run`)."""
        await self._runs.run(job_id, context_for)

    async def hand_back(self, grace_s: float) -> None:
        """The process is stopping: its jobs go back to the queue (`JobRuns.hand_back`)."""
        await self._runs.hand_back(grace_s)

    async def close(self) -> None:
        """Cancel the jobs this process runs without a queue: the process is stopping."""
        running = list(self._running.values())
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)


def _job_id(client: str, scope: str, key: str | None) -> str:
    """A new job's id: random, or with an Idempotency-Key the key's own, so that a key sent
    again names the job it started (in the shape of a random one: 32 hex digits)."""
    if key is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"{client}|{scope}|{key}".encode()).hexdigest()[:32]


class _Turns:
    """At most *total* holders at once, and *per_key* of one key; the others wait, in turn."""

    def __init__(self, total: int, per_key: int) -> None:
        self._total = asyncio.Semaphore(total)
        self._per_key = per_key
        self._keys: dict[str, asyncio.Semaphore] = {}
        self._users: Counter[str] = Counter()

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        own = self._keys.setdefault(key, asyncio.Semaphore(self._per_key))
        self._users[key] += 1
        try:
            async with own, self._total:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._keys[key]


def _without_bodies(outcome: BatchOutcome) -> BatchOutcome:
    results = tuple(
        dataclasses.replace(r, body=None, body_encoding=BodyEncoding.EMPTY) for r in outcome.results
    )
    return BatchOutcome(results, outcome.stats, outcome.replayed)
