"""`idempotency.IdempotencyStore` in Redis: a key runs its batch once across processes.

An idempotency record is one key per client and Idempotency-Key: "running" while its batch
runs (with a lease: a process that dies holds it no longer), then the outcome as JSON for
`idempotency_ttl_s`. A repeat on any process waits for a running record by polling it, and
replays a finished one; a record that went while it waited (its batch was refused, or the
process running it died and its lease ended) is claimed again, as a first send would be.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from redis.asyncio import Redis

from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem
from gqlbatch.core.result import BatchOutcome, outcome_from_json, outcome_to_json
from gqlbatch.execution.idempotency import Run, outcome_bytes, reused
from gqlbatch.execution.redis_store import POLL_S, PREFIX, answering
from gqlbatch.execution.store_faults import Later

__all__ = ["RedisIdempotencyStore"]

# KEYS: the record, the index of finished records (a sorted set by when each was written, in
# microseconds), their sizes (a hash), their total size. ARGV: the record's JSON, ttl_s, its
# key, its size, the most records, the most bytes. Writes the record, then forgets the oldest
# finished records while there are more than the most, or they keep more bytes (as
# `MemoryIdempotencyStore` does).
_KEEP_RECORD = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl * 1000000)) do
  redis.call('DECRBY', KEYS[4], tonumber(redis.call('HGET', KEYS[3], old) or '0'))
  redis.call('HDEL', KEYS[3], old)
  redis.call('ZREM', KEYS[2], old)
end
if redis.call('ZADD', KEYS[2], now, ARGV[3]) == 0 then
  redis.call('DECRBY', KEYS[4], tonumber(redis.call('HGET', KEYS[3], ARGV[3]) or '0'))
end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
local total = redis.call('INCRBY', KEYS[4], tonumber(ARGV[4]))
while redis.call('ZCARD', KEYS[2]) > tonumber(ARGV[5]) or total > tonumber(ARGV[6]) do
  local oldest = nil
  for _, name in ipairs(redis.call('ZRANGE', KEYS[2], 0, 1)) do
    if name ~= ARGV[3] then oldest = name; break end
  end
  if oldest == nil then break end
  total = redis.call('DECRBY', KEYS[4], tonumber(redis.call('HGET', KEYS[3], oldest) or '0'))
  redis.call('HDEL', KEYS[3], oldest)
  redis.call('ZREM', KEYS[2], oldest)
  redis.call('DEL', oldest)
end
for _, key in ipairs({KEYS[2], KEYS[3], KEYS[4]}) do redis.call('EXPIRE', key, ttl) end
"""


class RedisIdempotencyStore:
    """`idempotency.IdempotencyStore` in Redis: a key runs its batch once across processes.

    Claiming a key is the one step that needs Redis before the batch runs: a Redis that does
    not answer then refuses the batch (STORE_UNAVAILABLE), nothing ran. Once the batch has run,
    its outcome is kept in this process until Redis has it (`Later`): a repeat sent here is
    answered from it, and one sent to another process waits while the record says "running",
    which it does until the outcome is written, soon after Redis answers again (issue 25: the
    record's write failed, the repeat waited 88 s for the running lease to end, and ran the
    write again). A repeat waits *wait_s* at most, then is told to send it again
    (TOO_MANY_REQUESTS), nothing run. At most *max_records* finished records, and
    *max_bytes* of their outcomes, are kept, the oldest forgotten first.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_s: int,
        running_lease_ms: int,
        max_record_bytes: int,
        later: Later,
        max_records: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        wait_s: float = 30.0,
        retry_after_s: int = 1,
    ) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._running_lease_ms = running_lease_ms
        self._max_record_bytes = max_record_bytes
        self._later = later
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._wait_s = wait_s
        self._retry_after_s = retry_after_s
        self._keep_record = redis.register_script(_KEEP_RECORD)
        self._unwritten: dict[str, dict[str, Any]] = {}
        """Records of batches that ran here, until Redis has them."""
        self._unwritten_bytes = 0

    async def run_once(self, key: str, fingerprint: str, run: Run) -> BatchOutcome:
        """See `IdempotencyStore.run_once`: whichever process claims the key first runs the
        batch; the others wait for its record and replay it."""
        name = PREFIX + "idem:" + key
        running = json.dumps({"fingerprint": fingerprint, "state": "running"})
        delay = POLL_S[0]
        deadline = time.monotonic() + self._wait_s
        while True:
            record = self._unwritten.get(name)
            if record is None:
                if await self._claim(name, running):
                    return await self._run(name, fingerprint, run)
                record = await self._read(name)
            if record is not None:  # else it went meanwhile (refused, or its lease ended)
                if record["fingerprint"] != fingerprint:
                    raise reused(
                        "this Idempotency-Key was already used for a different batch; "
                        "use a new key for a new batch"
                    )
                if record["state"] == "done":
                    return _replayed(record)
            if time.monotonic() > deadline:
                raise self._still_running()
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_S[1])

    @answering
    async def _claim(self, name: str, running: str) -> bool:
        return bool(await self._redis.set(name, running, nx=True, px=self._running_lease_ms))

    @answering
    async def _read(self, name: str) -> dict[str, Any] | None:
        text = await self._redis.get(name)
        return None if text is None else dict(json.loads(text))

    async def _run(self, name: str, fingerprint: str, run: Run) -> BatchOutcome:
        # As in memory: the batch runs in its own task, so a dropped client connection does
        # not stop it from finishing and being recorded.
        task = asyncio.create_task(self._record(name, fingerprint, run))
        return await asyncio.shield(task)

    async def _record(self, name: str, fingerprint: str, run: Run) -> BatchOutcome:
        try:
            outcome = await run()
        except BatchRejected:
            # Nothing ran: the key may be used again, once Redis forgets the claim.
            await self._later.write(f"the claim of {name}", lambda: self._forget(name))
            raise
        record: dict[str, Any] = {"fingerprint": fingerprint, "state": "done"}
        size = outcome_bytes(outcome)
        # Kept here until Redis has it, within the bytes Redis would keep: past them, only
        # the key is (a repeat is refused, never run again).
        if size <= self._max_record_bytes and self._unwritten_bytes + size <= self._max_bytes:
            record["outcome"] = outcome_to_json(outcome)
        else:
            size = 0
        self._unwritten[name] = record
        self._unwritten_bytes += size
        text = json.dumps(record)
        await self._later.write(f"the outcome of {name}", lambda: self._keep(name, text, size))
        return outcome

    @answering
    async def _keep(self, name: str, text: str, size: int) -> None:
        keys = [name, PREFIX + "idem-index", PREFIX + "idem-sizes", PREFIX + "idem-bytes"]
        args: list[str | int] = [text, self._ttl_s, name, size, self._max_records, self._max_bytes]
        await self._keep_record(keys=keys, args=args)
        if self._unwritten.pop(name, None) is not None:
            self._unwritten_bytes -= size

    @answering
    async def _forget(self, name: str) -> None:
        await self._redis.delete(name)

    def _still_running(self) -> BatchRejected:
        message = (
            f"the batch first sent with this Idempotency-Key has been running for more than "
            f"{self._wait_s:.0f} s; nothing was run for this request. Send it again after "
            f"{self._retry_after_s} s to get its result"
        )
        return BatchRejected(
            [Problem(ErrorCode.TOO_MANY_REQUESTS, message, field="Idempotency-Key")],
            retry_after_s=self._retry_after_s,
        )


def _replayed(record: dict[str, Any]) -> BatchOutcome:
    if "outcome" not in record:
        raise reused(
            "this Idempotency-Key's batch already ran, and its result was too large to keep "
            "(idempotency_max_record_bytes); its writes are not sent again. Use a new key "
            "for a new batch"
        )
    outcome = outcome_from_json(record["outcome"])
    return BatchOutcome(outcome.results, outcome.stats, replayed=True)
