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
sent again with its `idempotencyKey`, which tells the upstream it is the same write.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import sys
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

from gqlbatch.core.errors import (
    BatchRejected,
    ErrorCode,
    Problem,
    StoreUnavailable,
    mask_internal,
)
from gqlbatch.core.plan import PlannedItem
from gqlbatch.core.request_scope import current_request_id
from gqlbatch.core.result import BatchOutcome, BatchStats, ErrorInfo, ItemResult, State
from gqlbatch.core.wire import BodyEncoding
from gqlbatch.execution.context import BatchContext
from gqlbatch.execution.engine import run_batch
from gqlbatch.execution.executor import Halt, Resumable
from gqlbatch.execution.idempotency import check_key, fingerprint, reused
from gqlbatch.execution.job_feeds import Feeds
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


log = logging.getLogger("gqlbatch.jobs")

_CANCELLED = "the job was cancelled"
_STOPPING = "the process running the job is stopping; another resumes it"
_ITEMS_A_TURN = 8
"""Items packed or read per turn of the event loop: each is an upstream answer or less."""
_WATCH_S = 0.5
"""How often a running job renews its lease and looks whether another process cancelled it."""
_STORE_RETRY_S = (0.05, 1.0)
"""How soon a job asks the store again when it did not answer, from the first try to the
slowest: a job waits for the store rather than fail (issue 25)."""


class JobQueue(Protocol):
    """Where jobs wait for a worker, in any process (`job_queue.SaqQueue`)."""

    async def enqueue(self, job_id: str) -> None:
        """Have some worker run *job_id* (`Jobs.run`), and another if that one dies."""
        ...


_T = TypeVar("_T")

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
        self._halts: dict[str, Halt] = {}
        """The way to stop each job this process runs, gently (`cancel`)."""
        self._runs: dict[str, tuple[asyncio.Task[object], bool]] = {}
        """Each job this process runs: its run, and whether it may be handed back half-done
        (an atomic job may not: what it did is undone or kept whole)."""
        self._stopping = False
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
        halt = self._halts.get(job_id)
        if halt is not None:
            halt.reason = _CANCELLED
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

    async def _answered(self, ask: Callable[[], Awaitable[_T]]) -> _T:
        """What *ask* gets from the store, asked again until the store answers: a job waits
        out an outage of the store (its run is cancelled if it lasts past the job's time)."""
        delay = _STORE_RETRY_S[0]
        while True:
            try:
                return await ask()
            except StoreUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, _STORE_RETRY_S[1])

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
            outcome = await self._admitted(job.spec, ctx, record, resumable)
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
        await self._end(job, JobState.SUCCEEDED, *await self._packed(outcome))

    async def _admitted(
        self,
        spec: JobSpec,
        ctx: BatchContext,
        record: Callable[[ItemResult], None],
        resumable: Resumable,
    ) -> BatchOutcome:
        """The batch's outcome, run once the store answers: a store that does not answer
        refuses a batch before it sends anything, and the job waits for it to answer."""
        delay = _STORE_RETRY_S[0]
        while True:
            try:
                return await run_batch(
                    spec.items,
                    spec.options,
                    ctx,
                    scope=spec.scope,
                    on_result=record,
                    resumable=resumable,
                )
            except StoreUnavailable:
                if resumable.halt.reason is not None:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, _STORE_RETRY_S[1])

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
                    halt.reason = halt.reason or _CANCELLED
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


def _job_id(client: str, scope: str, key: str | None) -> str:
    """A new job's id: random, or with an Idempotency-Key the key's own, so that a key sent
    again names the job it started (in the shape of a random one: 32 hex digits)."""
    if key is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"{client}|{scope}|{key}".encode()).hexdigest()[:32]


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
