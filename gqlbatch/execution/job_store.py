"""Where jobs are kept: what a job is, the `JobStore` protocol, and the store in this
process's memory (`redis_store.RedisJobStore` is the shared one).

Each client has quotas of its own, so that no client's jobs crowd out another's (issue 24):
jobs kept at once (`jobs.max_per_client`, beside `jobs.max` for the server), and the bytes
of its finished jobs' results (`jobs.max_bytes_per_client`; past it, the client's oldest
finished jobs are forgotten first). A finished job's outcome is kept packed (`pack`): JSON
text, compressed once it is over 64 KiB, and read back (`unpack`) only when it is asked for.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from gqlbatch.core.result import (
    BatchOutcome,
    BatchStats,
    ItemResult,
    item_from_json,
    item_to_json,
    outcome_from_json,
)
from gqlbatch.core.types import Headers

__all__ = [
    "COMPACT_CHARS",
    "KEPT",
    "Job",
    "JobNews",
    "JobSpec",
    "JobState",
    "JobStore",
    "MemoryJobStore",
    "lines",
    "opened",
    "pack",
    "read",
    "seal",
    "unpack",
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
    calls: int | None = None
    """The upstream calls it may make, taken from its request's when it was submitted
    (`engine.reserve_calls`); None for a spec kept before calls were reserved."""
    idempotency_key: str | None = None
    """The request's `Idempotency-Key`: the job's batch runs under it (`engine.run_batch`)."""
    scope: str = ""
    """Which batch of its request it was (`engine.run_batch`'s *scope*)."""

    def to_json(self) -> dict[str, Any]:
        forwarded = {name: [list(h) for h in headers] for name, headers in self.forwarded.items()}
        return {
            "items": self.items,
            "options": self.options,
            "forwarded": forwarded,
            "address": self.address,
            "request_id": self.request_id,
            "calls": self.calls,
            "idempotency_key": self.idempotency_key,
            "scope": self.scope,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        forwarded = {
            name: tuple((str(k), str(v)) for k, v in headers)
            for name, headers in data["forwarded"].items()
        }
        return cls(
            data["items"],
            data["options"],
            forwarded,
            data["address"],
            data["request_id"],
            data.get("calls"),
            data.get("idempotency_key"),
            data.get("scope", ""),
        )


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
    packed: str | None = field(default=None, repr=False)
    """A finished job's outcome as the store keeps it (`pack`), until it is unpacked into
    `outcome` and `results` (`unpacked`)."""
    error: str | None = None
    spec: JobSpec | None = field(default=None, repr=False)
    """How to run it; None once it has ended."""
    started: set[int] = field(default_factory=set)
    """Items that began sending a write (settled or not): the ones a resumed job must not
    send blindly."""
    fingerprint: str | None = None
    """With an `Idempotency-Key`, the digest of its batch (`idempotency.fingerprint`): the
    job's id is the key's, and a resend of another batch with that key is refused."""

    @property
    def done(self) -> int:
        """Items with their result."""
        return self.total if self.packed is not None else len(self.results)

    def items(self) -> list[ItemResult]:
        """The results so far, in the client's order."""
        return [self.results[i] for i in sorted(self.results)]

    def unpacked(self) -> Job:
        """This job with its packed outcome read (a copy: the store's own stays packed)."""
        if self.packed is None:
            return self
        outcome = unpack(self.packed)
        results = {r.index: r for r in outcome.results}
        return Job(self.id, self.client, self.total, self.state, results, outcome, None, self.error)


@dataclass(frozen=True, slots=True)
class JobNews:
    """What a job's followers have not seen yet (`JobStore.changes`)."""

    client: str
    state: JobState
    results: list[ItemResult]
    """The results settled after those already seen, in the order they settled."""


KEPT = "kept"
"""What `JobStore.add` says when a job with the new one's id is kept already."""

COMPACT_CHARS = 64 * 1024
"""A packed outcome longer than this, as text, is kept compressed."""
_COMPRESSED = "z:"


def lines(outcome: BatchOutcome) -> Iterator[str]:
    """*outcome* as the lines of its packed text, made one at a time: its statistics, then
    each item. One json.dumps per item, never one for the whole: a C call holds the GIL for
    as long as it writes, and a 30 MB outcome written at once held the event loop a third of a
    second, even from another thread."""
    yield json.dumps(dataclasses.asdict(outcome.stats), separators=(",", ":"))
    for result in outcome.results:
        yield json.dumps(item_to_json(result), separators=(",", ":"))


def seal(text: str) -> str:
    """The packed *text* as a store keeps it: as it is, or, past `COMPACT_CHARS`, compressed
    (zlib, which lets go of the GIL, then base64 to stay text: a store may hold only text)."""
    if len(text) <= COMPACT_CHARS:
        return text
    return _COMPRESSED + base64.b64encode(zlib.compress(text.encode(), 6)).decode()


def opened(packed: str) -> str:
    """The text *packed* holds, uncompressed."""
    if packed.startswith(_COMPRESSED):
        return zlib.decompress(base64.b64decode(packed[len(_COMPRESSED) :])).decode()
    return packed


def read(text: str) -> Iterator[ItemResult | BatchStats]:
    """What the lines of a packed *text* hold: its statistics first, then each item, read one
    at a time. (A text packed before outcomes were kept as lines is one JSON object.)"""
    if text.startswith('{"results":'):
        outcome = outcome_from_json(json.loads(text))
        yield outcome.stats
        yield from outcome.results
        return
    first, *rest = text.split("\n")
    yield BatchStats(**json.loads(first))
    for line in rest:
        yield item_from_json(json.loads(line))


def pack(outcome: BatchOutcome) -> str:
    """*outcome* as a store keeps it (`lines`, `seal`)."""
    return seal("\n".join(lines(outcome)))


def unpack(packed: str) -> BatchOutcome:
    """The outcome `pack` packed."""
    stats, *results = read(opened(packed))
    assert isinstance(stats, BatchStats)
    return BatchOutcome(tuple(r for r in results if isinstance(r, ItemResult)), stats)


class JobStore(Protocol):
    """Where jobs are kept: this process's memory, or one that processes share."""

    async def add(self, job: Job) -> str | None:
        """Keep a new job; None when it is kept, else why not: the limit that refused it
        (`jobs.max` or `jobs.max_per_client`), or `KEPT` when a job with its id is kept
        already (an `Idempotency-Key` sent again)."""
        ...

    async def get(self, job_id: str) -> Job | None:
        """The job as it is now (a finished one packed), or None when unknown or expired."""
        ...

    async def changes(self, job_id: str, since: int) -> JobNews | None:
        """The results settled after the first *since* to settle, and the job's state; None
        when the job is unknown or expired."""
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
        """Extend *runner*'s lease, or take it again when it lapsed and no one took the job
        since; False when another runner took it."""
        ...

    async def release(self, job_id: str, runner: str) -> None:
        """End *runner*'s lease, if it still holds it: the next runner need not wait."""
        ...

    async def finish(
        self, job_id: str, client: str, state: JobState, packed: str | None, error: str | None
    ) -> bool:
        """End *client*'s running job with its *packed* outcome (start its expiry, drop its
        spec, and forget the client's oldest finished jobs past its bytes); False when it had
        ended."""
        ...

    async def keep_outcome(self, job_id: str, client: str, packed: str, error: str | None) -> bool:
        """Keep the *packed* outcome of *client*'s job that was cancelled while it ran: what
        its run did before it stopped (its rollback included); False unless the job is
        CANCELLED without one."""
        ...

    async def changed(self, job_id: str) -> None:
        """Return when the job may have news (a result, its end)."""
        ...


class MemoryJobStore:
    """Jobs in this process's memory; finished ones go `ttl_s` after they end."""

    def __init__(
        self,
        *,
        ttl_s: int,
        max_jobs: int,
        max_per_client: int = 100,
        max_bytes_per_client: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_jobs = max_jobs
        self._max_per_client = max_per_client
        self._max_bytes = max_bytes_per_client
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._ended: dict[str, float] = {}
        """Finished jobs, by id, with when they ended: oldest first."""
        self._order: dict[str, list[ItemResult]] = {}
        """Each running job's results in the order they settled, for its followers."""
        self._per_client: Counter[str] = Counter()
        self._bytes: Counter[str] = Counter()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._runs: dict[str, int] = {}
        self._runners: dict[str, str] = {}
        """The last runner that took each job."""

    async def add(self, job: Job) -> str | None:
        self._expire()
        if job.id in self._jobs:
            return KEPT
        if len(self._jobs) >= self._max_jobs:
            return "jobs.max"
        if self._per_client[job.client] >= self._max_per_client:
            return "jobs.max_per_client"
        self._jobs[job.id] = job
        self._order[job.id] = []
        self._per_client[job.client] += 1
        return None

    async def get(self, job_id: str) -> Job | None:
        self._expire()
        return self._jobs.get(job_id)

    async def changes(self, job_id: str, since: int) -> JobNews | None:
        self._expire()
        job = self._jobs.get(job_id)
        if job is None:
            return None
        return JobNews(job.client, job.state, self._order.get(job_id, [])[since:])

    async def record(self, job_id: str, result: ItemResult) -> None:
        job = self._jobs.get(job_id)
        if job is not None and job.packed is None:  # a cancelled job keeps what settles
            job.results[result.index] = result
            if job_id in self._order:
                self._order[job_id].append(result)
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
        self._runners[job_id] = runner
        self._runs[job_id] = self._runs.get(job_id, 0) + 1
        return self._runs[job_id]

    async def renew(self, job_id: str, runner: str, lease_ms: int) -> bool:
        # A lease lapsed or released is held, still, by the last runner that took the job.
        holder, _ = self._leases.get(job_id, (self._runners.get(job_id), 0.0))
        if holder != runner:
            return False
        self._leases[job_id] = (runner, self._clock() + lease_ms / 1000)
        return True

    async def release(self, job_id: str, runner: str) -> None:
        if self._leases.get(job_id, ("", 0.0))[0] == runner:
            del self._leases[job_id]

    async def finish(
        self, job_id: str, client: str, state: JobState, packed: str | None, error: str | None
    ) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.state is not JobState.RUNNING:
            return False
        self._end(job, state, packed, error)
        return True

    async def keep_outcome(self, job_id: str, client: str, packed: str, error: str | None) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.state is not JobState.CANCELLED or job.packed is not None:
            return False
        self._ended.pop(job_id, None)  # it ends now, with its outcome
        self._end(job, JobState.CANCELLED, packed, error)
        return True

    def _end(self, job: Job, state: JobState, packed: str | None, error: str | None) -> None:
        job_id = job.id
        job.state, job.packed, job.error, job.spec = state, packed, error, None
        if packed is not None:
            job.results = {}  # kept packed, not as objects
            self._bytes[job.client] += len(packed)
            self._make_room(job.client, keep=job_id)
        self._order.pop(job_id, None)
        self._ended[job_id] = self._clock()
        self._wake(job_id)

    async def changed(self, job_id: str) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(waiter)
        await waiter

    def _wake(self, job_id: str) -> None:
        for waiter in self._waiters.pop(job_id, []):
            if not waiter.done():
                waiter.set_result(None)

    def _make_room(self, client: str, keep: str) -> None:
        """Forget *client*'s oldest finished jobs, other than *keep*, while its finished jobs'
        bytes are over its quota."""
        for job_id in [j for j in self._ended if self._jobs[j].client == client]:
            if self._bytes[client] <= self._max_bytes:
                return
            if job_id != keep:
                self._forget(job_id)

    def _expire(self) -> None:
        now = self._clock()
        for job_id, ended in list(self._ended.items()):
            if now - ended <= self._ttl_s:
                break  # oldest first: the rest ended later
            self._forget(job_id)

    def _forget(self, job_id: str) -> None:
        job = self._jobs.pop(job_id)
        self._ended.pop(job_id, None)
        self._order.pop(job_id, None)
        self._leases.pop(job_id, None)
        self._runs.pop(job_id, None)
        self._runners.pop(job_id, None)
        self._per_client[job.client] -= 1
        if job.packed is not None:
            self._bytes[job.client] -= len(job.packed)
        for counter in (self._per_client, self._bytes):
            if counter[job.client] <= 0:
                del counter[job.client]

    def __len__(self) -> int:
        return len(self._jobs)
