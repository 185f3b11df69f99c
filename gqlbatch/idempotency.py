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
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from gqlbatch.errors import BatchRejected, ErrorCode, Problem
from gqlbatch.result import BatchOutcome

__all__ = ["IdempotencyStore", "MemoryIdempotencyStore", "check_key", "fingerprint"]

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
Run = Callable[[], Coroutine[Any, Any, BatchOutcome]]


def check_key(key: str) -> str:
    """*key* if it is a valid Idempotency-Key value.

    Raises:
        BatchRejected: INVALID_INPUT, naming the header.
    """
    if not _KEY.match(key):
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


@dataclass
class _Record:
    fingerprint: str
    task: asyncio.Task[BatchOutcome]
    expires_at: float


class MemoryIdempotencyStore:
    """Records in this process's memory; they expire after *ttl_s*, and past *max_records*
    the oldest finished ones go first, so that unique keys cannot exhaust memory."""

    def __init__(
        self, ttl_s: float, max_records: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_s = ttl_s
        self._max_records = max_records
        self._clock = clock
        self._records: dict[str, _Record] = {}  # insertion order is expiry order (one TTL)

    async def run_once(self, key: str, fingerprint: str, run: Run) -> BatchOutcome:
        """See `IdempotencyStore.run_once`.

        Raises:
            BatchRejected: IDEMPOTENCY_KEY_REUSED when *key* was used for a different batch,
                or whatever *run* raised (a refused batch is not recorded).
        """
        self._expire()
        record = self._records.get(key)
        if record is not None:
            if record.fingerprint != fingerprint:
                raise BatchRejected(
                    [
                        Problem(
                            ErrorCode.IDEMPOTENCY_KEY_REUSED,
                            "this Idempotency-Key was already used for a different batch; "
                            "use a new key for a new batch",
                            field="Idempotency-Key",
                        )
                    ]
                )
            outcome = await asyncio.shield(record.task)
            return dataclasses.replace(outcome, replayed=True)
        # The batch runs in its own task, shielded from the caller: if the client's connection
        # drops, the batch still finishes and is recorded, so its retry is answered from here
        # instead of running the same writes again.
        task = asyncio.create_task(run(), name="gqlbatch:idempotent-batch")
        self._records[key] = _Record(fingerprint, task, self._clock() + self._ttl_s)
        task.add_done_callback(lambda done: self._settle(key, done))
        return await asyncio.shield(task)

    def _settle(self, key: str, task: asyncio.Task[BatchOutcome]) -> None:
        if task.cancelled() or task.exception() is not None:
            self._records.pop(key, None)  # refused or broken: nothing to replay

    def _expire(self) -> None:
        # Oldest first, and only from the front: cheap, and a batch still running is never
        # dropped (its repeat must wait for it, not run again).
        now = self._clock()
        while self._records:
            key = next(iter(self._records))
            record = self._records[key]
            full = len(self._records) >= self._max_records
            if not record.task.done() or (record.expires_at > now and not full):
                return
            del self._records[key]

    def __len__(self) -> int:
        return len(self._records)
