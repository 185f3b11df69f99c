"""Async batches (jobs): a batch accepted at once and run in the background, read while it runs
and after, cancelled on request (DESIGN §2 `submitBatch`, `Prefer: respond-async`).

A job is validated when it is submitted, so an invalid batch is refused then, as any batch is;
from then on its items' results are recorded as each one settles. Only the client that
submitted a job (its credentials' digest) can read or cancel it; to anyone else it does not
exist. A finished job is kept for `jobs_ttl_s`; at most `jobs_max` are kept at once.

This process's memory holds the jobs and runs them. Jobs that outlive the process that
accepted them (a Redis-backed queue, resumed by another worker) are designed in
docs/decisions.md and not built yet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem, mask_internal
from gqlbatch.core.result import BatchOutcome, ItemResult
from gqlbatch.execution.engine import BatchContext, prepare, request_budget, run_batch

__all__ = ["Job", "JobState", "Jobs"]


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
    """One async batch and what it has so far."""

    id: str
    client: str
    total: int
    state: JobState = JobState.RUNNING
    results: dict[int, ItemResult] = field(default_factory=dict)
    """The results settled so far, by item index."""
    outcome: BatchOutcome | None = None
    error: str | None = None
    finished_at: float | None = None
    task: asyncio.Task[None] | None = None
    _waiters: list[asyncio.Future[None]] = field(default_factory=list, repr=False)

    def record(self, result: ItemResult) -> None:
        """Keep *result*, and tell the readers waiting for news."""
        self.results[result.index] = result
        self._wake()

    async def changed(self) -> None:
        """Return at the next result, or when the job ends."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    @property
    def done(self) -> int:
        """Items with their result."""
        return len(self.results)

    def items(self) -> list[ItemResult]:
        """The results so far, in the client's order."""
        return [self.results[i] for i in sorted(self.results)]


class Jobs:
    """The jobs of this process: submitted, run as tasks, read, cancelled, expired."""

    def __init__(
        self, *, ttl_s: int, max_jobs: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_s = ttl_s
        self._max_jobs = max_jobs
        self._clock = clock
        self._jobs: dict[str, Job] = {}

    def submit(self, items: object, options: object, ctx: BatchContext) -> Job:
        """Validate the batch and start it; the job, at once.

        Raises:
            BatchRejected: the batch is invalid (nothing ran), or too many jobs are kept.
        """
        self._expire()
        plan = prepare(items, options, ctx.settings)  # refused now, not in the background
        if len(self._jobs) >= self._max_jobs:
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
        job = Job(uuid.uuid4().hex, ctx.client, len(plan.items))
        # The job has a request budget of its own: the request that submitted it is over.
        ctx = dataclasses.replace(ctx, budget=request_budget(ctx.settings))
        job.task = asyncio.create_task(self._run(job, items, options, ctx), name="gqlbatch:job")
        self._jobs[job.id] = job
        return job

    def get(self, job_id: str, client: str) -> Job:
        """The job *job_id*, if *client* submitted it.

        Raises:
            BatchRejected: JOB_NOT_FOUND, for an unknown, expired or someone else's job.
        """
        self._expire()
        job = self._jobs.get(job_id)
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

    def cancel(self, job_id: str, client: str) -> Job:
        """Stop *job_id*: items not finished never report; finished ones keep their results.

        Raises:
            BatchRejected: JOB_NOT_FOUND, as `get`.
        """
        job = self.get(job_id, client)
        if job.state is JobState.RUNNING and job.task is not None:
            job.task.cancel()
            self._finish(job, JobState.CANCELLED)
        return job

    async def close(self) -> None:
        """Cancel the jobs still running: the process is stopping."""
        running = [j.task for j in self._jobs.values() if j.task and not j.task.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)

    async def _run(self, job: Job, items: object, options: object, ctx: BatchContext) -> None:
        try:
            outcome = await run_batch(items, options, ctx, on_result=job.record)
        except BatchRejected as exc:  # a limit met when it ran (outstanding calls)
            job.error = str(exc)
            self._finish(job, JobState.FAILED)
            return
        except Exception as exc:  # a bug: its id in the job, its traceback in the log
            job.error = mask_internal(exc, f"in job {job.id}").message
            self._finish(job, JobState.FAILED)
            return
        job.results = {r.index: r for r in outcome.results}
        job.outcome = outcome
        self._finish(job, JobState.SUCCEEDED)

    def _finish(self, job: Job, state: JobState) -> None:
        if job.state is JobState.RUNNING:
            job.state = state
            job.finished_at = self._clock()
            job.task = None
            job._wake()

    def _expire(self) -> None:
        now = self._clock()
        for job_id in [
            j.id
            for j in self._jobs.values()
            if j.finished_at is not None and now - j.finished_at > self._ttl_s
        ]:
            del self._jobs[job_id]

    def __len__(self) -> int:
        return len(self._jobs)
