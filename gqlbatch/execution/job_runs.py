"""Running a job, and resuming it: the half of `jobs.Jobs` that runs in whichever process a
job is delivered to (`Jobs.run`), and stops gently when that process stops.

A job's run holds the job's lease in the store, renewed while it runs (`_watch`), so that
only one process runs it at a time. Each item's result is kept as it settles, and a write is
marked as started before it is sent; a resumed run keeps the results it finds and never sends
blindly a write that started without one (OUTCOME_UNKNOWN, unless the item has an
`idempotencyKey`). The store may fail at any time: a run waits for it rather than fail, and
writes what it must tell it through `store_faults.Later` (issue 25).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gqlbatch.core.errors import BatchRejected, ErrorCode, StoreUnavailable, mask_internal
from gqlbatch.core.plan import PlannedItem
from gqlbatch.core.request_scope import current_request_id
from gqlbatch.core.result import BatchOutcome, ErrorInfo, ItemResult, State
from gqlbatch.execution.context import BatchContext
from gqlbatch.execution.engine import run_batch
from gqlbatch.execution.executor import Halt, Resumable
from gqlbatch.execution.job_store import Job, JobSpec, JobState, JobStore
from gqlbatch.execution.planning import planned
from gqlbatch.execution.store_faults import Later, delays

__all__ = ["CANCELLED", "ContextFor", "JobRuns"]

log = logging.getLogger("gqlbatch.jobs")

CANCELLED = "the job was cancelled"
"""Why a cancelled job's items did not start."""
_STOPPING = "the process running the job is stopping; another resumes it"
_WATCH_S = 0.5
"""How often a running job renews its lease and looks whether another process cancelled it."""
_STORE_RETRY_S = (0.05, 1.0)
"""How soon a job asks the store again when it did not answer, from the first try to the
slowest: a job waits for the store rather than fail (issue 25)."""

_T = TypeVar("_T")

ContextFor = Callable[[Job], BatchContext]
"""The context a job's batch runs in, built in the process that runs it."""
Pack = Callable[[BatchOutcome], Awaitable[tuple[str, str | None]]]
"""A finished job's outcome packed to be kept, with a note when only part of it could be."""


class JobRuns:
    """The jobs this process runs: each run, its lease, and the way to stop it gently."""

    def __init__(
        self, store: JobStore, *, later: Later, attempts: int, lease_ms: int, pack: Pack
    ) -> None:
        self._store = store
        self._later = later
        self._attempts = attempts
        self._lease_ms = lease_ms
        self._pack = pack
        self._halts: dict[str, Halt] = {}
        """The way to stop each job this process runs, gently (`halt`)."""
        self._runs: dict[str, tuple[asyncio.Task[object], bool]] = {}
        """Each job this process runs: its run, and whether it may be handed back half-done
        (an atomic job may not: what it did is undone or kept whole)."""
        self._stopping = False

    def halt(self, job_id: str, reason: str) -> None:
        """Stop *job_id*'s run here, if it runs here, gently: no item starts after this."""
        halt = self._halts.get(job_id)
        if halt is not None:
            halt.reason = reason

    async def hand_back(self, grace_s: float) -> None:
        """The process is stopping: start no more items of its jobs, let their calls in flight
        finish (*grace_s* at most, after which what is left is cut, as a crash would), and
        leave each job RUNNING, with its results, for another process to resume. An atomic
        job is not halted: it finishes within the grace, or is cut."""
        self._stopping = True
        for job_id, (_, atomic) in self._runs.items():
            halt = self._halts.get(job_id)
            if halt is not None and not atomic:
                halt.reason = halt.reason or _STOPPING
        runs = [run for run, _ in self._runs.values()]
        if runs:
            log.warning(
                "stopping: %d jobs hand back what they did, within %g s", len(runs), grace_s
            )
            await asyncio.wait(runs, timeout=grace_s)

    async def run(self, job_id: str, context_for: ContextFor) -> None:
        """Run *job_id*, or resume it where the process that ran it left it: items with a
        result are not run again; a write that started without one is OUTCOME_UNKNOWN, unless
        it has an `idempotencyKey`, which makes sending it again safe. Waits while another
        process holds the job's lease, and while the store does not answer. A job run more
        than `attempts` times fails: it may be what kills its workers."""
        if self._stopping:
            raise asyncio.CancelledError  # delivered as the process stops: back to the queue
        runner = uuid.uuid4().hex
        run = await self._take(job_id, runner)
        if run is None:
            return  # ended meanwhile (cancelled, say), or expired
        try:
            job = await self._answered(lambda: self._store.get(job_id))
            if job is None or job.state is not JobState.RUNNING or job.spec is None:
                return
            if run > self._attempts:
                message = (
                    f"the processes running this job stopped {run - 1} times before it "
                    f"finished (jobs.attempts is {self._attempts}); it is not started again"
                )
                await self._end(job, JobState.FAILED, None, message)
                return
            ctx = context_for(job)
            if run > 1:
                # The run that stopped held the key's record: this one resumes the batch
                # from the job's own results instead (`_settled`).
                ctx = dataclasses.replace(ctx, idempotency_key=None)
            token = current_request_id.set(ctx.request_id or None)
            try:
                settled = await self._settled(job, ctx)
            except Exception as exc:  # a bug: the job fails, the worker carries on
                message = mask_internal(exc, f"in job {job_id}").message
                await self._end(job, JobState.FAILED, None, message)
                return
            try:
                resumable = Resumable(settled, self._marker(job_id))
                self._halts[job_id] = resumable.halt
                task = asyncio.current_task()
                if task is not None:
                    self._runs[job_id] = (task, _atomic(job.spec))
                await self._run(job, ctx, runner, resumable)
            finally:
                current_request_id.reset(token)
        finally:
            self._halts.pop(job_id, None)
            self._runs.pop(job_id, None)
            # Not given back when the store does not answer: the lease ends by itself.
            with contextlib.suppress(StoreUnavailable):
                await self._store.release(job_id, runner)

    async def _answered(
        self, ask: Callable[[], Awaitable[_T]], *, unless: Halt | None = None
    ) -> _T:
        """What *ask* gets from the store, asked again until the store answers: a job waits
        out an outage of the store (its run is cancelled if it lasts past the job's time).
        A run halted meanwhile (*unless*) waits no longer: StoreUnavailable."""
        waits = delays(*_STORE_RETRY_S)
        while True:
            try:
                return await ask()
            except StoreUnavailable:
                if unless is not None and unless.reason is not None:
                    raise
                await asyncio.sleep(next(waits))

    async def _end(self, job: Job, state: JobState, packed: str | None, error: str | None) -> None:
        """End *job*: now, or when the store answers again. A job cancelled while it ran keeps
        the *packed* outcome of what it did before it stopped."""

        async def end() -> None:
            if not await self._store.finish(job.id, job.client, state, packed, error) and packed:
                await self._store.keep_outcome(job.id, job.client, packed, error)

        await self._later.write(f"the end of job {job.id}", end)

    async def _take(self, job_id: str, runner: str) -> int | None:
        """This run's number once *runner* holds the job's lease; None if the job ended."""
        take = lambda: self._store.take(job_id, runner, self._lease_ms)  # noqa: E731
        while (run := await self._answered(take)) is None:
            if not await self._answered(lambda: self._is_running(job_id)):
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
                unknown = settled[index] = _outcome_unknown(item)
                await self._answered(functools.partial(self._store.record, job.id, unknown))
        return settled

    def _marker(self, job_id: str) -> Callable[[int], Awaitable[None]]:
        # A write is sent only once the store knows it started: while the store does not
        # answer, the write waits (until the job's deadline, which cancels it unsent).
        async def mark(index: int) -> None:
            await self._answered(lambda: self._store.mark_started(job_id, index))

        return mark

    async def _run(self, job: Job, ctx: BatchContext, runner: str, resumable: Resumable) -> None:
        assert job.spec is not None
        recorded: set[asyncio.Task[None]] = set()

        def record(result: ItemResult) -> None:
            if resumable.halt.reason == _STOPPING and result.duration_ms == 0:
                return  # not started, as the process stops: the run that resumes it runs it
            what = f"item {result.index} of job {job.id}"
            task = asyncio.create_task(
                self._later.write(what, lambda: self._store.record(job.id, result))
            )
            recorded.add(task)
            task.add_done_callback(recorded.discard)

        watch = asyncio.create_task(
            self._watch(job.id, runner, asyncio.current_task(), resumable.halt)
        )
        try:
            # A store that does not answer refuses a batch before it sends anything: the job
            # waits for it to answer, and runs then.
            spec = job.spec
            outcome = await self._answered(
                lambda: run_batch(
                    spec.items,
                    spec.options,
                    ctx,
                    scope=spec.scope,
                    on_result=record,
                    resumable=resumable,
                ),
                unless=resumable.halt,
            )
        except BatchRejected as exc:  # a limit met when it ran (outstanding calls)
            await self._end(job, JobState.FAILED, None, str(exc))
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
            await self._end(job, JobState.FAILED, None, message)
            return
        finally:
            watch.cancel()
            if recorded:
                await asyncio.wait(recorded)
        if resumable.halt.reason == _STOPPING:
            # Handed back: RUNNING, with the results of what it did; the queue delivers it
            # to another process (saq puts back a job whose run was cancelled).
            raise asyncio.CancelledError
        # Cancelled while it ran, it keeps what it did before it stopped, its rollback too.
        await self._end(job, JobState.SUCCEEDED, *await self._pack(outcome))

    async def _is_running(self, job_id: str) -> bool:
        # Its state alone: asked for no results past the most it could have, the store sends
        # none (a whole job, read twice a second while it runs, was a large job's every byte).
        news = await self._store.changes(job_id, sys.maxsize)
        return news is not None and news.state is JobState.RUNNING

    async def _watch(
        self, job_id: str, runner: str, run: asyncio.Task[object] | None, halt: Halt
    ) -> None:
        # Keeps the lease; halts the run when the job was cancelled in the shared store (by
        # another process), and stops it at once when the lease was lost (this process
        # stalled past it, and another runner may have taken the job over).
        # A store that does not answer is no reason to stop: the run carries on, and the next
        # turn asks again; a lease that lapsed meanwhile is renewed unless another took it.
        while True:
            await asyncio.sleep(_WATCH_S)
            try:
                if not await self._store.renew(job_id, runner, self._lease_ms):
                    log.warning("job %s: lease lost; its run stops here", job_id)
                    if run is not None:
                        run.cancel()  # another runner may have it now: stop at once
                    return
                if not await self._is_running(job_id):  # cancelled, by any process
                    halt.reason = halt.reason or CANCELLED
                    return
            except StoreUnavailable:
                continue


def _atomic(spec: JobSpec) -> bool:
    """Whether a job's batch, or a group of it, is atomic: undone whole if it fails."""
    options = spec.options if isinstance(spec.options, dict) else {}
    items = spec.items if isinstance(spec.items, list) else []
    return options.get("atomic") is True or any(
        isinstance(item, dict) and item.get("atomicityGroup") for item in items
    )


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
