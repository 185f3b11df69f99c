"""Async batches (jobs): a batch accepted at once and run in the background, read while it runs
and after, cancelled on request (DESIGN §2 `submitBatch`, `Prefer: respond-async`).

A job is validated when it is submitted, so an invalid batch is refused then, as any batch is;
from then on its items' results are recorded in a `JobStore` as each one settles. Only the
client that submitted a job (its credentials' digest) can read or cancel it; to anyone else it
does not exist. A finished job is kept for `jobs_ttl_s`; at most `jobs_max` are kept at once.

The store is this process's memory, or Redis (`[store] url`), where any process reads a job
and cancels it. The job runs in the process that accepted it; one that outlives its process
(a Redis-backed queue, resumed by another worker) is designed in docs/decisions.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem, mask_internal
from gqlbatch.core.result import BatchOutcome, ItemResult
from gqlbatch.execution.engine import BatchContext, prepare, request_budget, run_batch

__all__ = ["Job", "JobState", "JobStore", "Jobs", "MemoryJobStore"]


class JobState(StrEnum):
    """Where a job is."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    """Finished: every item has its result (items may have failed, as in any batch)."""
    FAILED = "FAILED"
    """Ended without an outcome: refused when it ran (a limit), or broken by a bug."""
    CANCELLED = "CANCELLED"


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

    async def finish(
        self, job_id: str, state: JobState, outcome: BatchOutcome | None, error: str | None
    ) -> bool:
        """End a running job (and start its expiry); False when it had already ended."""
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

    async def finish(
        self, job_id: str, state: JobState, outcome: BatchOutcome | None, error: str | None
    ) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.state is not JobState.RUNNING:
            return False
        job.state, job.outcome, job.error = state, outcome, error
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

    def __len__(self) -> int:
        return len(self._jobs)


_CANCEL_POLL_S = 0.5
"""How often a running job looks whether another process cancelled it."""


class Jobs:
    """Submitting, reading, following and cancelling jobs; running those submitted here."""

    def __init__(self, store: JobStore, *, ttl_s: int, max_jobs: int) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._max_jobs = max_jobs
        self._running: dict[str, asyncio.Task[None]] = {}

    async def submit(self, items: object, options: object, ctx: BatchContext) -> Job:
        """Validate the batch and start it; the job, at once.

        Raises:
            BatchRejected: the batch is invalid (nothing ran), or too many jobs are kept.
        """
        plan = prepare(items, options, ctx.settings)  # refused now, not in the background
        job = Job(uuid.uuid4().hex, ctx.client, len(plan.items))
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
        # The job has a request budget of its own: the request that submitted it is over.
        ctx = dataclasses.replace(ctx, budget=request_budget(ctx.settings))
        task = asyncio.create_task(self._run(job.id, items, options, ctx), name="gqlbatch:job")
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
        """Cancel the jobs still running here: the process is stopping."""
        running = list(self._running.values())
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)

    async def _run(self, job_id: str, items: object, options: object, ctx: BatchContext) -> None:
        recorded: set[asyncio.Task[None]] = set()

        def record(result: ItemResult) -> None:
            task = asyncio.create_task(self._store.record(job_id, result))
            recorded.add(task)
            task.add_done_callback(recorded.discard)

        watch = asyncio.create_task(self._watch(job_id, asyncio.current_task()))
        try:
            outcome = await run_batch(items, options, ctx, on_result=record)
        except BatchRejected as exc:  # a limit met when it ran (outstanding calls)
            await self._store.finish(job_id, JobState.FAILED, None, str(exc))
            return
        except asyncio.CancelledError:
            raise  # cancelled: the store already says so
        except Exception as exc:  # a bug: its id in the job, its traceback in the log
            message = mask_internal(exc, f"in job {job_id}").message
            await self._store.finish(job_id, JobState.FAILED, None, message)
            return
        finally:
            watch.cancel()
            if recorded:
                await asyncio.wait(recorded)
        await self._store.finish(job_id, JobState.SUCCEEDED, outcome, None)

    async def _watch(self, job_id: str, runner: asyncio.Task[object] | None) -> None:
        # Another process may cancel this job in the shared store: stop when it has.
        while True:
            await asyncio.sleep(_CANCEL_POLL_S)
            job = await self._store.get(job_id)
            if job is None or job.state is not JobState.RUNNING:
                if runner is not None:
                    runner.cancel()
                return
