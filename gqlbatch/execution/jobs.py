"""Async batches (jobs): a batch accepted at once and run in the background, read while it runs
and after, cancelled on request (DESIGN §2 `submitBatch`, `Prefer: respond-async`).

A job is validated when it is submitted, so an invalid batch is refused then, as any batch is;
from then on its items' results are recorded in a `JobStore` as each one settles. Only the
client that submitted a job (its credentials' digest) can read or cancel it; to anyone else it
does not exist. A finished job is kept for `jobs_ttl_s`; at most `jobs_max` are kept at once.

The store is this process's memory, where the job runs in the process that accepted it; or
Redis (`[store] url`), where any process reads a job and cancels it, and the job waits on a
queue (`JobQueue`) for any worker. A job outlives the process running it: each item's result is
kept as it settles, and an item that sends a write is marked as started first. When the
process dies, another worker resumes the job (`Jobs.run`): settled items are not run again,
and a write that started without a result is never sent blindly: it is OUTCOME_UNKNOWN, or
sent again with its `idempotencyKey`, which tells the upstream it is the same write.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem, mask_internal
from gqlbatch.core.plan import PlannedItem
from gqlbatch.core.request_scope import current_request_id
from gqlbatch.core.result import BatchOutcome, ErrorInfo, ItemResult, State
from gqlbatch.core.types import Headers
from gqlbatch.execution.engine import BatchContext, planned, request_budget, run_batch
from gqlbatch.execution.executor import Resumable

__all__ = [
    "ContextFor",
    "Job",
    "JobQueue",
    "JobSpec",
    "JobState",
    "JobStore",
    "Jobs",
    "MemoryJobStore",
]


class JobState(StrEnum):
    """Where a job is."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    """Finished: every item has its result (items may have failed, as in any batch)."""
    FAILED = "FAILED"
    """Ended without an outcome: refused when it ran (a limit), or broken by a bug."""
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What any process needs to run a job: the batch as submitted, and who sent it. Kept
    while the job runs, dropped when it ends: its headers may carry credentials."""

    items: Any
    """The items in the engine's plain form (JSON)."""
    options: Any
    forwarded: Mapping[str, Headers]
    address: str
    request_id: str

    def to_json(self) -> dict[str, Any]:
        forwarded = {name: [list(h) for h in headers] for name, headers in self.forwarded.items()}
        return {
            "items": self.items,
            "options": self.options,
            "forwarded": forwarded,
            "address": self.address,
            "request_id": self.request_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        forwarded = {
            name: tuple((str(k), str(v)) for k, v in headers)
            for name, headers in data["forwarded"].items()
        }
        return cls(data["items"], data["options"], forwarded, data["address"], data["request_id"])


@dataclass
class Job:
    """What is known of a job: its state and the results so far."""

    id: str
    client: str
    total: int
    state: JobState = JobState.RUNNING
    results: dict[int, ItemResult] = field(default_factory=dict)
    """The results settled so far, by item index."""
    outcome: BatchOutcome | None = None
    error: str | None = None
    spec: JobSpec | None = field(default=None, repr=False)
    """How to run it; None once it has ended."""
    started: set[int] = field(default_factory=set)
    """Items that began sending a write (settled or not): the ones a resumed job must not
    send blindly."""

    @property
    def done(self) -> int:
        """Items with their result."""
        return len(self.results)

    def items(self) -> list[ItemResult]:
        """The results so far, in the client's order."""
        return [self.results[i] for i in sorted(self.results)]


class JobStore(Protocol):
    """Where jobs are kept: this process's memory, or one that processes share."""

    async def add(self, job: Job) -> bool:
        """Keep a new job; False when the store already keeps its most."""
        ...

    async def get(self, job_id: str) -> Job | None:
        """The job as it is now, or None when it is unknown or expired."""
        ...

    async def record(self, job_id: str, result: ItemResult) -> None:
        """Keep one item's settled result."""
        ...

    async def mark_started(self, job_id: str, index: int) -> None:
        """Keep that item *index* is about to send a write."""
        ...

    async def take(self, job_id: str, runner: str, lease_ms: int) -> int | None:
        """Make *runner* the one process that runs the job, for *lease_ms*; the number of this
        run (1 the first time), or None while another runner's lease lasts."""
        ...

    async def renew(self, job_id: str, runner: str, lease_ms: int) -> bool:
        """Extend *runner*'s lease; False when it has lost it (it lapsed, another took it)."""
        ...

    async def release(self, job_id: str, runner: str) -> None:
        """End *runner*'s lease, if it still holds it: the next runner need not wait."""
        ...

    async def finish(
        self, job_id: str, state: JobState, outcome: BatchOutcome | None, error: str | None
    ) -> bool:
        """End a running job (start its expiry, drop its spec); False when it had ended."""
        ...

    async def changed(self, job_id: str) -> None:
        """Return when the job may have news (a result, its end)."""
        ...


class MemoryJobStore:
    """Jobs in this process's memory; finished ones go `ttl_s` after they end."""

    def __init__(
        self, *, ttl_s: int, max_jobs: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_s = ttl_s
        self._max_jobs = max_jobs
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._ended: dict[str, float] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._runs: dict[str, int] = {}

    async def add(self, job: Job) -> bool:
        self._expire()
        if len(self._jobs) >= self._max_jobs:
            return False
        self._jobs[job.id] = job
        return True

    async def get(self, job_id: str) -> Job | None:
        self._expire()
        return self._jobs.get(job_id)

    async def record(self, job_id: str, result: ItemResult) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.results[result.index] = result
            self._wake(job_id)

    async def mark_started(self, job_id: str, index: int) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.started.add(index)

    async def take(self, job_id: str, runner: str, lease_ms: int) -> int | None:
        holder, until = self._leases.get(job_id, (runner, 0.0))
        if job_id not in self._jobs or (holder != runner and until > self._clock()):
            return None
        self._leases[job_id] = (runner, self._clock() + lease_ms / 1000)
        self._runs[job_id] = self._runs.get(job_id, 0) + 1
        return self._runs[job_id]

    async def renew(self, job_id: str, runner: str, lease_ms: int) -> bool:
        holder, until = self._leases.get(job_id, ("", 0.0))
        if holder != runner or until <= self._clock():
            return False
        self._leases[job_id] = (runner, self._clock() + lease_ms / 1000)
        return True

    async def release(self, job_id: str, runner: str) -> None:
        if self._leases.get(job_id, ("", 0.0))[0] == runner:
            del self._leases[job_id]

    async def finish(
        self, job_id: str, state: JobState, outcome: BatchOutcome | None, error: str | None
    ) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.state is not JobState.RUNNING:
            return False
        job.state, job.outcome, job.error, job.spec = state, outcome, error, None
        if outcome is not None:
            job.results = {r.index: r for r in outcome.results}
        self._ended[job_id] = self._clock()
        self._wake(job_id)
        return True

    async def changed(self, job_id: str) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(waiter)
        await waiter

    def _wake(self, job_id: str) -> None:
        for waiter in self._waiters.pop(job_id, []):
            if not waiter.done():
                waiter.set_result(None)

    def _expire(self) -> None:
        now = self._clock()
        for job_id in [j for j, ended in self._ended.items() if now - ended > self._ttl_s]:
            del self._jobs[job_id], self._ended[job_id]
            self._leases.pop(job_id, None)
            self._runs.pop(job_id, None)

    def __len__(self) -> int:
        return len(self._jobs)


log = logging.getLogger("gqlbatch.jobs")

_WATCH_S = 0.5
"""How often a running job renews its lease and looks whether another process cancelled it."""


class JobQueue(Protocol):
    """Where jobs wait for a worker, in any process (`job_queue.SaqQueue`)."""

    async def enqueue(self, job_id: str) -> None:
        """Have some worker run *job_id* (`Jobs.run`), and another if that one dies."""
        ...


ContextFor = Callable[[Job], BatchContext]
"""The context a job's batch runs in, built in the process that runs it."""


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
    ) -> None:
        """Without a *queue*, a job runs in the process that accepted it. A process running
        a job holds its lease (*lease_s*, renewed while it runs): the queue may deliver a job
        twice, and only one process runs it at a time."""
        self._store = store
        self._ttl_s = ttl_s
        self._max_jobs = max_jobs
        self._attempts = attempts
        self._lease_ms = lease_s * 1000
        self._queue = queue
        self._running: dict[str, asyncio.Task[None]] = {}

    async def submit(self, items: object, options: object, ctx: BatchContext) -> Job:
        """Validate the batch and start it (here, or on the queue); the job, at once.

        Raises:
            BatchRejected: the batch is invalid (nothing ran), or too many jobs are kept.
        """
        plan = await planned(items, options, ctx)  # refused now, not in the background
        spec = JobSpec(items, options, ctx.forwarded, ctx.address, ctx.request_id)
        job = Job(uuid.uuid4().hex, ctx.client, len(plan.items), spec=spec)
        if not await self._store.add(job):
            raise BatchRejected(
                [
                    Problem(
                        ErrorCode.TOO_MANY_REQUESTS,
                        f"the server already keeps {self._max_jobs} jobs (jobs.max); "
                        "send it again once some have finished and expired",
                    )
                ],
                retry_after_s=ctx.settings.retry_after_s,
            )
        if self._queue is not None:
            await self._queue.enqueue(job.id)
            return job
        # The job has a request budget of its own: the request that submitted it is over.
        own = dataclasses.replace(ctx, budget=request_budget(ctx.settings))
        task = asyncio.create_task(self.run(job.id, lambda _: own), name="gqlbatch:job")
        self._running[job.id] = task
        task.add_done_callback(lambda _: self._running.pop(job.id, None))
        return job

    async def get(self, job_id: str, client: str) -> Job:
        """The job *job_id*, if *client* submitted it.

        Raises:
            BatchRejected: JOB_NOT_FOUND, for an unknown, expired or someone else's job.
        """
        job = await self._store.get(job_id)
        if job is None or job.client != client:
            raise BatchRejected(
                [
                    Problem(
                        ErrorCode.JOB_NOT_FOUND,
                        f"no job {job_id[:64]!r} for these credentials; jobs are kept "
                        f"{self._ttl_s} s after they finish",
                        field="id",
                    )
                ]
            )
        return job

    async def cancel(self, job_id: str, client: str) -> Job:
        """Stop *job_id*: items not finished never report; finished ones keep their results.
        Whichever process runs it stops it (this one at once, another within a second).

        Raises:
            BatchRejected: JOB_NOT_FOUND, as `get`.
        """
        await self.get(job_id, client)
        await self._store.finish(job_id, JobState.CANCELLED, None, None)
        task = self._running.get(job_id)
        if task is not None:
            task.cancel()
        return await self.get(job_id, client)

    async def follow(self, job_id: str, client: str) -> AsyncIterator[ItemResult | Job]:
        """Each item's result as it settles (those already settled first), then the job
        once it has ended.

        Raises:
            BatchRejected: JOB_NOT_FOUND, as `get`, before anything is yielded.
        """
        told: set[int] = set()
        while True:
            job = await self.get(job_id, client)
            for result in job.items():
                if result.index not in told:
                    told.add(result.index)
                    yield result
            if job.state is not JobState.RUNNING:
                yield job
                return
            await self._store.changed(job_id)

    async def close(self) -> None:
        """Cancel the jobs this process runs without a queue: the process is stopping."""
        running = list(self._running.values())
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)

    async def run(self, job_id: str, context_for: ContextFor) -> None:
        """Run *job_id*, or resume it where the process that ran it left it: items with a
        result are not run again; a write that started without one is OUTCOME_UNKNOWN, unless
        it has an `idempotencyKey`, which makes sending it again safe. Waits while another
        process holds the job's lease. A job run more than `attempts` times fails: it may be
        what kills its workers."""
        runner = uuid.uuid4().hex
        run = await self._take(job_id, runner)
        if run is None:
            return  # ended meanwhile (cancelled, say), or expired
        try:
            job = await self._store.get(job_id)
            if job is None or job.state is not JobState.RUNNING or job.spec is None:
                return
            if run > self._attempts:
                message = (
                    f"the processes running this job stopped {run - 1} times before it "
                    f"finished (jobs.attempts is {self._attempts}); it is not started again"
                )
                await self._store.finish(job_id, JobState.FAILED, None, message)
                return
            ctx = context_for(job)
            token = current_request_id.set(ctx.request_id or None)
            try:
                settled = await self._settled(job, ctx)
            except Exception as exc:  # a bug: the job fails, the worker carries on
                message = mask_internal(exc, f"in job {job_id}").message
                await self._store.finish(job_id, JobState.FAILED, None, message)
                return
            try:
                await self._run(job, ctx, runner, Resumable(settled, self._marker(job_id)))
            finally:
                current_request_id.reset(token)
        finally:
            await self._store.release(job_id, runner)

    async def _take(self, job_id: str, runner: str) -> int | None:
        """This run's number once *runner* holds the job's lease; None if the job ended."""
        while (run := await self._store.take(job_id, runner, self._lease_ms)) is None:
            job = await self._store.get(job_id)
            if job is None or job.state is not JobState.RUNNING:
                return None
            # Another process runs it (the queue delivered it twice), or did until it died:
            # its lease ends within lease_s.
            await asyncio.sleep(_WATCH_S)
        return run

    async def _settled(self, job: Job, ctx: BatchContext) -> dict[int, ItemResult]:
        """The results a resumed job keeps: those it had, and OUTCOME_UNKNOWN for the writes
        that started without one and cannot safely be sent again."""
        assert job.spec is not None
        settled = dict(job.results)
        if not job.started - settled.keys():
            return settled
        # Checked on a budget of its own: the run that follows has the job's whole budget.
        plan = await planned(
            job.spec.items, job.spec.options, dataclasses.replace(ctx, budget=None)
        )
        for index in sorted(job.started - settled.keys()):
            item = plan.items[index]
            if item.request.idempotency_key is None:
                settled[index] = _outcome_unknown(item)
                await self._store.record(job.id, settled[index])
        return settled

    def _marker(self, job_id: str) -> Callable[[int], Awaitable[None]]:
        async def mark(index: int) -> None:
            await self._store.mark_started(job_id, index)

        return mark

    async def _run(self, job: Job, ctx: BatchContext, runner: str, resumable: Resumable) -> None:
        assert job.spec is not None
        recorded: set[asyncio.Task[None]] = set()

        def record(result: ItemResult) -> None:
            task = asyncio.create_task(self._store.record(job.id, result))
            recorded.add(task)
            task.add_done_callback(recorded.discard)

        watch = asyncio.create_task(self._watch(job.id, runner, asyncio.current_task()))
        try:
            outcome = await run_batch(
                job.spec.items, job.spec.options, ctx, on_result=record, resumable=resumable
            )
        except BatchRejected as exc:  # a limit met when it ran (outstanding calls)
            await self._store.finish(job.id, JobState.FAILED, None, str(exc))
            return
        except asyncio.CancelledError:
            if watch.done() and not watch.cancelled():  # the watch stopped it: it is over here
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                return
            # Cancelled here (the store says so), or the process is stopping: with a queue,
            # another worker resumes the job.
            raise
        except Exception as exc:  # a bug: its id in the job, its traceback in the log
            message = mask_internal(exc, f"in job {job.id}").message
            await self._store.finish(job.id, JobState.FAILED, None, message)
            return
        finally:
            watch.cancel()
            if recorded:
                await asyncio.wait(recorded)
        await self._store.finish(job.id, JobState.SUCCEEDED, outcome, None)

    async def _watch(self, job_id: str, runner: str, run: asyncio.Task[object] | None) -> None:
        # Keeps the lease, and stops the run when the job was cancelled in the shared store
        # (by another process), or when the lease was lost (this process stalled past it, and
        # another runner may have taken the job over).
        while True:
            await asyncio.sleep(_WATCH_S)
            kept = await self._store.renew(job_id, runner, self._lease_ms)
            job = await self._store.get(job_id)
            if not kept or job is None or job.state is not JobState.RUNNING:
                if not kept:
                    log.warning("job %s: lease lost; its run stops here", job_id)
                if run is not None:
                    run.cancel()
                return


def _outcome_unknown(item: PlannedItem) -> ItemResult:
    message = (
        f"{item.request.method} {item.request.path} was being sent when the process running "
        "this job stopped; whether the upstream applied it is unknown, so it was not sent "
        "again. Give the item an idempotencyKey to have it sent again safely"
    )
    return ItemResult(
        request_id=item.request_id,
        index=item.index,
        state=State.FAILED,
        error=ErrorInfo(ErrorCode.OUTCOME_UNKNOWN, message),
    )
