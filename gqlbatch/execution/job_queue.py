"""The job queue: jobs wait in the shared Redis for any worker, on saq (docs/decisions.md says
why saq). The only module that imports saq.

A job is queued under its own id. The worker that takes it beats (saq's `job.update()`) every
third of `jobs_heartbeat_s`; saq's sweep, which one worker of the cluster runs every
`jobs_heartbeat_s`, finds a job whose worker stopped beating (its process died), and queues it
again for another worker, which resumes it from the job store (`jobs.Jobs.run`). A worker that
stops (cancelled) puts its jobs back on the queue at once.

saq delivers; it does not decide who runs a job. Its sweep takes a job that a worker has just
moved to the active list, and not yet marked active, for a lost one, and queues it again
(saq issue #277); the job store's lease keeps such a second delivery from running the job
while the first runner lives, and counts the runs that bound a job's attempts.

Two things this module owns, found the hard way:
- saq's `dequeue` blocks in `BLMOVE` on the Redis connection. redis-py 8 reads with a 5 s
  socket timeout by default, which cut a block that had no deadline: a job Redis moved to the
  active list just as the client gave up was left there, its status still "queued", and saq's
  sweep aborted it as lost. The queue's client is made without a socket timeout
  (`redis_store.connect_blocking`), and each `BLMOVE` ends on the server after `_DEQUEUE_S`, so
  a stop never waits long.
- saq's worker installs its own SIGINT and SIGTERM handlers, which would replace the server's
  (gunicorn's, aiohttp's): it is given none, and stopped by cancelling `work`.
- With Redis down, saq's worker asks again at once: each of its `at_once` loops dequeues,
  fails, and dequeues again, without a pause (a busy loop), and its upkeep logs a traceback
  every second. The queue waits before it asks again (`_PatientQueue`), and the tracebacks
  become the one line per outage the rest of the store logs (`_OutageFilter`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from saq import Worker
from saq.job import Job as SaqJob
from saq.queue.redis import RedisQueue
from saq.types import Context, PartialTimersDict

from gqlbatch.execution.store_faults import OUTAGE

__all__ = ["RunJob", "SaqQueue"]

RunJob = Callable[[str], Awaitable[None]]
"""Runs the job with this id."""

log = logging.getLogger("gqlbatch.jobs")
_NAME = "gqlbatch-jobs"
_FUNCTION = "gqlbatch.run_job"
_DEQUEUE_S = 1.0
_DELIVERIES = 100
"""saq's bound on deliveries of one job. The job store counts the runs that matter (`[jobs]
attempts`); saq's count also has the deliveries its sweep makes by mistake (below)."""
_KEPT_S = 60
"""How long saq keeps its own record of a finished job: the job store keeps the results."""
_AWAY_S = (0.1, 2.0)
"""How long a worker waits to dequeue again when Redis did not answer: first, and at most."""


class _PatientQueue(RedisQueue):
    """saq's Redis queue, whose dequeue waits a while when Redis does not answer (and says
    it found nothing) rather than fail at once, which saq's worker would retry at once."""

    _away = _AWAY_S[0]

    async def dequeue(self, timeout: float = 0.0, poll_interval: float = 0.0) -> SaqJob | None:
        try:
            job = await super().dequeue(timeout, poll_interval)
        except (RedisError, OSError) as exc:
            OUTAGE.failed(f"{type(exc).__name__}: {exc}"[:200])
            await asyncio.sleep(self._away)
            self._away = min(self._away * 2, _AWAY_S[1])
            return None
        self._away = _AWAY_S[0]
        return job


class _OutageFilter(logging.Filter):
    """Drops saq's tracebacks of a Redis that does not answer: the store's outage is logged
    once (`store_faults.OUTAGE`), not once a second by each of saq's timers."""

    def filter(self, record: logging.LogRecord) -> bool:
        failure = record.exc_info[1] if record.exc_info else None
        if isinstance(failure, RedisError | OSError):
            OUTAGE.failed(f"{type(failure).__name__}: {failure}"[:200])
            return False
        return True


_SAQ_LOG = logging.getLogger("saq")
if not any(isinstance(f, _OutageFilter) for f in _SAQ_LOG.filters):
    _SAQ_LOG.addFilter(_OutageFilter())


class SaqQueue:
    """`jobs.JobQueue` on saq: queue a job for any worker; `work` to be one."""

    def __init__(self, redis: Any, *, heartbeat_s: int, timeout_s: int, at_once: int = 10) -> None:
        """*redis* is a redis-py asyncio client without a socket timeout, with bytes replies.
        *timeout_s* bounds one run of a job (the batch deadline and a margin); a process runs
        *at_once* jobs at most, each a batch with the limits of any batch."""
        self._at_once = at_once
        self._redis = redis
        self._queue = _PatientQueue(redis, name=_NAME)
        self._heartbeat_s = heartbeat_s
        self._timeout_s = timeout_s

    async def enqueue(self, job_id: str) -> None:
        await self._queue.enqueue(
            _FUNCTION,
            key=job_id,
            timeout=self._timeout_s,
            heartbeat=self._heartbeat_s,
            retries=_DELIVERIES,
            ttl=_KEPT_S,
        )

    async def work(self, run: RunJob) -> None:
        """Take jobs from the queue and run them, until cancelled; a job still running then
        goes back to the queue, for another worker to resume."""

        async def run_job(ctx: Context) -> None:
            job: SaqJob = ctx["job"]
            beating = asyncio.create_task(self._beat(job))
            try:
                await run(job.key)
            finally:
                beating.cancel()

        worker = Worker(
            self._queue,
            [(_FUNCTION, run_job)],
            concurrency=self._at_once,
            # saq's own defaults, but for the sweep. (All four: its PartialTimersDict inherits
            # required keys.)
            timers=PartialTimersDict(schedule=1, worker_info=10, sweep=self._heartbeat_s, abort=1),
            dequeue_timeout=_DEQUEUE_S,
        )
        worker.SIGNALS = []
        await self._queue.connect()
        await worker.start()  # returns when cancelled, once its tasks have stopped
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError

    async def close(self) -> None:
        """Close the queue's client, even with Redis away: saq's disconnect first sends an
        UNSUBSCRIBE, which reconnects, and then raises before it closes the client."""
        try:
            await self._queue.disconnect()
        except (OSError, RedisError) as exc:
            log.warning("job queue closed with Redis unreachable: %s", exc)
            await self._redis.aclose()

    async def _beat(self, job: SaqJob) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s / 3)
            try:
                await job.update()
            except Exception:  # Redis away for a moment: the next beat may reach it
                log.warning("job %s: heartbeat not recorded", job.key, exc_info=True)
