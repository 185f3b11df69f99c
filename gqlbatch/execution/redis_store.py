"""The shared store: outstanding-call places, idempotency records, persisted queries and (in
`redis_jobs`) jobs in Redis, so that several gqlbatch processes (workers, hosts) hold one set
of limits, keys and jobs. With `redis_jobs`, the only modules that import redis-py; `[store]
url` (or `GQLBATCH_STORE__URL`) turns them on.

Places are leases: each taken place is a member of a sorted set per key, scored by when its
lease ends, taken in all of a batch's keys at once by one Lua script (atomic in Redis). A
process that dies keeps its places only until their leases end, so a crash can never hold a
client's count forever. The lease is the batch deadline plus a margin: a call cannot outlive
it. Clocks are Redis's own (`TIME`), so hosts need not agree on the time.

An idempotency record is one key per client and Idempotency-Key: "running" while its batch
runs (with a lease, for the same reason), then the outcome as JSON for `idempotency_ttl_s`. A
repeat on any process waits for a running record by polling it, and replays a finished one;
a record that went while it waited (its batch was refused, or the process running it died and
its lease ended) is claimed again, as a first send would be.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from gqlbatch.core.errors import BatchRejected
from gqlbatch.core.result import (
    BatchOutcome,
    outcome_from_json,
    outcome_to_json,
)
from gqlbatch.execution.idempotency import Run, outcome_bytes, reused

__all__ = [
    "POLL_S",
    "PREFIX",
    "RedisIdempotencyStore",
    "RedisPersistedQueries",
    "RedisPlaces",
    "client_key",
    "connect",
    "connect_blocking",
]

PREFIX = "gqlbatch:"

# KEYS: one sorted set per limit key. ARGV: lease_ms, member, then one limit per key.
# Returns 0 when a place was taken in every key, else the 1-based index of a full key.
_TAKE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
  if redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then return i end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now_ms + lease, ARGV[2])
  redis.call('PEXPIRE', key, lease)
end
return 0
"""

# KEYS: one sorted set. Returns its live members after dropping the expired ones.
_HELD = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
return redis.call('ZCARD', KEYS[1])
"""

POLL_S = (0.002, 0.05)
"""How often a waiter looks again, from the first look to the slowest: Redis cannot wake it."""


def connect(url: str) -> Redis:
    """A client for *url* (`redis://host:port/db`); connections open on first use."""
    return Redis.from_url(url, decode_responses=True)


def connect_blocking(url: str) -> Redis:
    """A client for the job queue: bytes replies, as saq reads them, and no socket timeout,
    because its blocking reads end on the server (`job_queue` says why)."""
    return Redis.from_url(url, socket_timeout=None)


class RedisPlaces:
    """`limits.Places` in Redis, shared by every process that uses the same server."""

    def __init__(self, redis: Redis, *, lease_ms: int) -> None:
        self._redis = redis
        self._lease_ms = lease_ms
        self._take = redis.register_script(_TAKE)
        self._held = redis.register_script(_HELD)

    async def take(self, limits: Mapping[str, int]) -> object | None:
        member = uuid.uuid4().hex
        keys = [PREFIX + "held:" + key for key in limits]
        full = await self._take(keys=keys, args=[self._lease_ms, member, *limits.values()])
        return member if int(full) == 0 else None

    async def give(self, limits: Mapping[str, int], token: object) -> None:
        if limits:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in limits:
                    pipe.zrem(PREFIX + "held:" + key, str(token))
                await pipe.execute()

    async def held(self, key: str) -> int:
        return int(await self._held(keys=[PREFIX + "held:" + key]))

    async def wait(self) -> None:
        # Another process gives places back without telling this one: look again soon. The
        # caller loops, so a short sleep costs one more round trip, never a missed place.
        await asyncio.sleep(POLL_S[0])


class RedisIdempotencyStore:
    """`idempotency.IdempotencyStore` in Redis: a key runs its batch once across processes."""

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_s: int,
        running_lease_ms: int,
        max_record_bytes: int,
    ) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._running_lease_ms = running_lease_ms
        self._max_record_bytes = max_record_bytes

    async def run_once(self, key: str, fingerprint: str, run: Run) -> BatchOutcome:
        """See `IdempotencyStore.run_once`: whichever process claims the key first runs the
        batch; the others wait for its record and replay it."""
        name = PREFIX + "idem:" + key
        running = json.dumps({"fingerprint": fingerprint, "state": "running"})
        delay = POLL_S[0]
        while True:
            if await self._redis.set(name, running, nx=True, px=self._running_lease_ms):
                return await self._run(name, fingerprint, run)
            text = await self._redis.get(name)
            if text is not None:  # else it went meanwhile (refused, or its lease ended)
                record = json.loads(text)
                if record["fingerprint"] != fingerprint:
                    raise reused(
                        "this Idempotency-Key was already used for a different batch; "
                        "use a new key for a new batch"
                    )
                if record["state"] == "done":
                    return _replayed(record)
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_S[1])

    async def _run(self, name: str, fingerprint: str, run: Run) -> BatchOutcome:
        # As in memory: the batch runs in its own task, so a dropped client connection does
        # not stop it from finishing and being recorded.
        task = asyncio.create_task(self._record(name, fingerprint, run))
        return await asyncio.shield(task)

    async def _record(self, name: str, fingerprint: str, run: Run) -> BatchOutcome:
        try:
            outcome = await run()
        except BatchRejected:
            await self._redis.delete(name)  # nothing ran: the key may be used again
            raise
        record: dict[str, Any] = {"fingerprint": fingerprint, "state": "done"}
        if outcome_bytes(outcome) <= self._max_record_bytes:
            record["outcome"] = outcome_to_json(outcome)
        await self._redis.set(name, json.dumps(record), ex=self._ttl_s)
        return outcome


def _replayed(record: dict[str, Any]) -> BatchOutcome:
    if "outcome" not in record:
        raise reused(
            "this Idempotency-Key's batch already ran, and its result was too large to keep "
            "(idempotency_max_record_bytes); its writes are not sent again. Use a new key "
            "for a new batch"
        )
    outcome = outcome_from_json(record["outcome"])
    return BatchOutcome(outcome.results, outcome.stats, replayed=True)


# KEYS: the document's key, the store's registered bytes, the client's. ARGV: document, ttl_s,
# max bytes, max bytes of the client. Keeps the document unless it is kept already (1), or its
# bytes would pass the store's or the client's for this window of ttl_s (0). Each count lives
# ttl_s from its first registration: as long as the documents it counts.
_PUT_DOCUMENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
local size = string.len(ARGV[1])
local ttl = tonumber(ARGV[2])
if tonumber(redis.call('GET', KEYS[2]) or '0') + size > tonumber(ARGV[3]) then return 0 end
if tonumber(redis.call('GET', KEYS[3]) or '0') + size > tonumber(ARGV[4]) then return 0 end
for _, key in ipairs({KEYS[2], KEYS[3]}) do
  redis.call('INCRBY', key, size)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ttl) end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
return 1
"""


class RedisPersistedQueries:
    """`persisted.PersistedQueryStore` in Redis: a document registered through one process
    runs by its hash on any other. Each is kept *ttl_s* from its registration; a client that
    sends a hash after that registers it again, as Apollo's link does on any miss. At most
    *max_bytes* of documents, and *max_bytes_per_client* of one client's, are registered in
    each window of *ttl_s*."""

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_s: int,
        max_bytes: int = 16 * 1024 * 1024,
        max_bytes_per_client: int = 1024 * 1024,
    ) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._per_client = max_bytes_per_client
        self._put = redis.register_script(_PUT_DOCUMENT)

    async def get(self, sha256: str) -> str | None:
        document = await self._redis.get(PREFIX + "pq:" + sha256)
        return None if document is None else str(document)  # decode_responses: a str

    async def put(self, sha256: str, document: str, client: str) -> bool:
        keys = [PREFIX + "pq:" + sha256, PREFIX + "pq-bytes", client_key("pq-bytes", client)]
        args: list[str | int] = [document, self._ttl_s, self._max_bytes, self._per_client]
        return int(await self._put(keys=keys, args=args)) == 1


def client_key(kind: str, client: str) -> str:
    """The key of what the store keeps of *client* (its jobs, its bytes), of one *kind*."""
    return f"{PREFIX}{kind}:client:{client}"
