"""Idempotent batches: a client's `Idempotency-Key` and the outcome it produced.

A repeat with the same key and the same batch gets the stored outcome, and nothing is sent
upstream again; while the first is still running, the repeat waits for it. The same key with a
different batch is refused. A batch that was refused (nothing ran) is not recorded, so it may be
sent again. Records live in memory for `idempotency_ttl_s`; `IdempotencyStore` is the seam a
shared (Redis) store implements.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem
from gqlbatch.core.result import BatchOutcome
from gqlbatch.core.wire import IDEMPOTENCY_KEY

__all__ = [
    "IdempotencyStore",
    "MemoryIdempotencyStore",
    "check_key",
    "fingerprint",
    "outcome_bytes",
    "reused",
]

Run = Callable[[], Coroutine[Any, Any, BatchOutcome]]


def check_key(key: str) -> str:
    """*key* if it is a valid Idempotency-Key value.

    Raises:
        BatchRejected: INVALID_INPUT, naming the header.
    """
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise BatchRejected(
            [
                Problem(
                    ErrorCode.INVALID_INPUT,
                    "Idempotency-Key must be 1 to 255 printable ASCII characters",
                    field="Idempotency-Key",
                )
            ]
        )
    return key


def fingerprint(items: object, options: object, read_only: bool) -> str:
    """A digest of what the batch asks for, to tell a repeat from a different batch."""
    canonical = json.dumps(
        [items, options, read_only], sort_keys=True, default=str, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyStore(Protocol):
    """Runs a batch at most once per key."""

    async def run_once(self, key: str, fingerprint: str, run: Run) -> BatchOutcome:
        """The outcome of *run* for *key*: run now, or the stored one (marked replayed)."""
        ...


_RESULT_OVERHEAD_BYTES = 256
"""What a kept result costs beyond its upstream body bytes: its status, headers and object."""


@dataclass
class _Record:
    fingerprint: str
    task: asyncio.Task[BatchOutcome] | None
    """The run, and so its outcome; None once an outcome too large to keep was let go."""
    expires_at: float
    size: int = 0
    """Bytes the stored outcome holds, once finished."""

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()


class MemoryIdempotencyStore:
    """Records in this process's memory. They expire after *ttl_s*; past *max_records*
    records or *max_bytes* of results the oldest finished ones go first (a record still
    running is never dropped: its repeat must wait for it, not run again). A result over
    *max_record_bytes* is not kept: its key is, and a repeat is told to use a new key."""

    def __init__(
        self,
        ttl_s: float,
        max_records: int = 10_000,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        max_record_bytes: int = 4 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._max_record_bytes = max_record_bytes
        self._clock = clock
        self._records: dict[str, _Record] = {}  # insertion order is expiry order (one TTL)
        self._bytes = 0

    @property
    def size_bytes(self) -> int:
        """Bytes the kept results hold together."""
        return self._bytes

    async def run_once(self, key: str, fingerprint: str, run: Run) -> BatchOutcome:
        """See `IdempotencyStore.run_once`.

        Raises:
            BatchRejected: IDEMPOTENCY_KEY_REUSED when *key* was used for a different batch,
                or for one whose result was too large to keep; whatever *run* raised before
                anything ran (a refused batch is not recorded).
        """
        self._evict()
        record = self._records.get(key)
        if record is not None:
            return await self._replay(record, fingerprint)
        # The batch runs in its own task, shielded from the caller: if the client's connection
        # drops, the batch still finishes and is recorded, so its retry is answered from here
        # instead of running the same writes again.
        task = asyncio.create_task(run(), name="gqlbatch:idempotent-batch")
        self._records[key] = _Record(fingerprint, task, self._clock() + self._ttl_s)
        task.add_done_callback(lambda done: self._settle(key, done))
        return await asyncio.shield(task)

    async def _replay(self, record: _Record, fingerprint: str) -> BatchOutcome:
        if record.fingerprint != fingerprint:
            raise reused(
                "this Idempotency-Key was already used for a different batch; "
                "use a new key for a new batch"
            )
        if record.task is None:
            raise reused(
                "this Idempotency-Key's batch already ran, and its result was too large to "
                "keep (idempotency_max_record_bytes); its writes are not sent again. Use a "
                "new key for a new batch"
            )
        try:
            outcome = await asyncio.shield(record.task)
        except asyncio.CancelledError:
            if not record.task.cancelled():
                raise  # this request was cancelled, not the batch
            raise RuntimeError(
                "the batch of this Idempotency-Key was interrupted while it ran"
            ) from None
        return dataclasses.replace(outcome, replayed=True)

    def _settle(self, key: str, task: asyncio.Task[BatchOutcome]) -> None:
        # A refused batch ran nothing: forget it, so that it may be sent again. Any other end
        # keeps the record, so that a repeat can never send the writes a second time; a
        # batch broken by a bug is answered with the same internal error.
        record = self._records.get(key)
        if record is None or record.task is not task:
            return
        if not task.cancelled() and isinstance(task.exception(), BatchRejected):
            del self._records[key]
            return
        if task.cancelled() or task.exception() is not None:
            return
        size = outcome_bytes(task.result())
        if size > self._max_record_bytes:
            record.task = None  # the key stays; the outcome is let go
            return
        record.size = size
        self._bytes += size
        self._evict()

    def _evict(self) -> None:
        # From the oldest: expired records go, and while over a bound, finished ones go too.
        # Running records are stepped over, never dropped, and never stop the others going.
        now = self._clock()
        count, size = len(self._records), self._bytes
        gone: list[str] = []
        for key, record in self._records.items():
            if record.running:
                continue
            over = count > self._max_records or size > self._max_bytes
            if record.expires_at > now and not over:
                break
            gone.append(key)
            count, size = count - 1, size - record.size
        for key in gone:
            del self._records[key]
        self._bytes = size

    def __len__(self) -> int:
        return len(self._records)


def outcome_bytes(outcome: BatchOutcome) -> int:
    """What keeping *outcome* costs: its upstream bytes and a fixed overhead per item."""
    return outcome.stats.response_bytes + _RESULT_OVERHEAD_BYTES * len(outcome.results)


def reused(message: str) -> BatchRejected:
    """The refusal of a key that may not run its batch: IDEMPOTENCY_KEY_REUSED."""
    return BatchRejected(
        [Problem(ErrorCode.IDEMPOTENCY_KEY_REUSED, message, field="Idempotency-Key")]
    )
