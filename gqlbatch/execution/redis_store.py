"""The shared store: outstanding-call places, idempotency records, persisted queries and (in
`redis_jobs`) jobs in Redis, so that several gqlbatch processes (workers, hosts) hold one set
of limits, keys and jobs. With `redis_jobs`, the only modules that import redis-py; `[store]
url` (or `GQLBATCH_STORE__URL`) turns them on.

Places are leases: a lease is a token in a sorted set per key, scored by when it ends, with
the number of places it holds beside it (so Redis's work is per lease, not per place; 20
members a batch, written and read back, were a third of a batch's CPU in the process). A
process leases places for its batches ahead, as many per key as its running batches may use
at once (what each said when it was admitted), in all of a batch's keys at once by one Lua
script (atomic in Redis); it counts its calls against them in memory, as the memory store
counts, and gives back what its running batches no longer want when one ends. So a batch asks
Redis about twice, whatever its calls (issue 25: a place taken and given back per call was two
round trips a call). A client's limit stays one limit over every process: Redis never leases
more places of a key than its limit; a place one process holds ahead is one another cannot
use until it is given back, at the end of a batch of that key. The process renews its leases
every third of `PLACE_LEASE_MS`; one that dies keeps its places only until their leases end,
seconds later. Clocks are Redis's own (`TIME`), so hosts need not agree on the time.

Every call to Redis goes through `answering`: a Redis that does not answer (refused, reset,
timed out, loading its data) is `StoreUnavailable`, logged once per outage (`store_faults`).
Connections come from a bounded pool (`connect`): running out of them is a wait.

An idempotency record is one key per client and Idempotency-Key: "running" while its batch
runs (with a lease, for the same reason), then the outcome as JSON for `idempotency_ttl_s`. A
repeat on any process waits for a running record by polling it, and replays a finished one;
a record that went while it waited (its batch was refused, or the process running it died and
its lease ended) is claimed again, as a first send would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ParamSpec, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem, StoreUnavailable
from gqlbatch.core.result import (
    BatchOutcome,
    outcome_from_json,
    outcome_to_json,
)
from gqlbatch.execution.idempotency import Run, outcome_bytes, reused
from gqlbatch.execution.store_faults import OUTAGE, Later

__all__ = [
    "PLACE_LEASE_MS",
    "POLL_S",
    "POOL_SIZE",
    "PREFIX",
    "RedisIdempotencyStore",
    "RedisPersistedQueries",
    "RedisPlaces",
    "answering",
    "client_key",
    "connect",
    "connect_blocking",
]

PREFIX = "gqlbatch:"

# A key's places are leases: a sorted set of lease tokens scored by when each ends (`held:KEY`),
# and a hash of how many places each token holds, with their total under "*" (`held:KEY:n`).
# `_CLEAN`, the prelude of each script, forgets the leases that ended and returns the total.
_CLEAN = """
local function clean(leases, counts, now_ms)
  local ended = redis.call('ZRANGEBYSCORE', leases, '-inf', now_ms)
  if #ended > 0 then
    local freed = 0
    for _, token in ipairs(ended) do
      freed = freed + tonumber(redis.call('HGET', counts, token) or '0')
      redis.call('HDEL', counts, token)
    end
    redis.call('ZREMRANGEBYSCORE', leases, '-inf', now_ms)
    redis.call('HINCRBY', counts, '*', -freed)
  end
  return tonumber(redis.call('HGET', counts, '*') or '0')
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
"""

# KEYS: each limit key's leases and counts. ARGV: lease_ms, token, then for each key: its limit,
# the places wanted, the fewest that will do. Leases, in every key, as many of those wanted as
# it has left, at least the fewest, all or none, under *token*, until now + lease_ms. Returns
# each key's number, or {-i} when key i has fewer than its fewest left.
_LEASE = (
    _CLEAN
    + """
local lease = tonumber(ARGV[1])
local taken = {}
for i = 1, #KEYS / 2 do
  local left = tonumber(ARGV[3 * i]) - clean(KEYS[2 * i - 1], KEYS[2 * i], now_ms)
  if left < tonumber(ARGV[3 * i + 2]) then return {-i} end
  taken[i] = math.max(math.min(left, tonumber(ARGV[3 * i + 1])), 0)
end
for i = 1, #KEYS / 2 do
  local leases, counts = KEYS[2 * i - 1], KEYS[2 * i]
  if taken[i] > 0 then
    redis.call('ZADD', leases, now_ms + lease, ARGV[2])
    redis.call('HSET', counts, ARGV[2], taken[i])
    redis.call('HINCRBY', counts, '*', taken[i])
  end
  redis.call('PEXPIRE', leases, lease)
  redis.call('PEXPIRE', counts, lease)
end
return taken
"""
)

# KEYS: each limit key's leases and counts. ARGV: for each key, how many pairs follow, then
# the pairs: a token, and how many of its places go back. A lease that ended meanwhile is
# left alone (its places were counted out when it was forgotten).
_GIVE = """
local at = 1
for i = 1, #KEYS / 2 do
  local leases, counts = KEYS[2 * i - 1], KEYS[2 * i]
  local n = tonumber(ARGV[at])
  for p = at + 1, at + 2 * n, 2 do
    local token, given = ARGV[p], tonumber(ARGV[p + 1])
    if redis.call('HEXISTS', counts, token) == 1 then
      redis.call('HINCRBY', counts, '*', -given)
      if redis.call('HINCRBY', counts, token, -given) <= 0 then
        redis.call('HDEL', counts, token)
        redis.call('ZREM', leases, token)
      end
    end
  end
  at = at + 2 * n + 1
end
"""

# KEYS: each renewed key's leases and counts. ARGV: lease_ms, then for each key how many of its
# tokens follow, and those tokens. Each ends now + lease_ms; a lease given back or ended is
# not made again (XX).
_RENEW = (
    _CLEAN
    + """
local lease = tonumber(ARGV[1])
local at = 2
for i = 1, #KEYS / 2 do
  local leases, counts = KEYS[2 * i - 1], KEYS[2 * i]
  local n = tonumber(ARGV[at])
  for m = at + 1, at + n do redis.call('ZADD', leases, 'XX', now_ms + lease, ARGV[m]) end
  at = at + n + 1
  redis.call('PEXPIRE', leases, lease)
  redis.call('PEXPIRE', counts, lease)
end
"""
)

# KEYS: each key's leases and counts. Returns the places held in each, the ended forgotten.
_HELD = (
    _CLEAN
    + """
local held = {}
for i = 1, #KEYS / 2 do held[i] = clean(KEYS[2 * i - 1], KEYS[2 * i], now_ms) end
return held
"""
)

POLL_S = (0.002, 0.05)
"""How often a waiter looks again, from the first look to the slowest: Redis cannot wake it."""
PLACE_LEASE_MS = 10_000
"""How long a batch's places outlive its process's last renewal (every third of it)."""
_COMMAND_S = 2.0
"""How long one command may wait for Redis's answer before Redis counts as not answering."""
_CONNECT_S = 1.0
POOL_SIZE = 64
"""Connections to Redis per process. A batch asks Redis a few times, each a fraction of a
millisecond; 64 carry thousands of batches a second, and a request past them waits for one
(at most `_COMMAND_S`) rather than failing."""


def connect(url: str, *, pool_size: int = POOL_SIZE) -> Redis:
    """A client for *url* (`redis://host:port/db`) over a bounded, blocking pool of
    connections, opened on first use. A command that meets a broken connection (Redis
    restarted) is sent once more on a new one; a command that gets no answer within
    `_COMMAND_S` fails (`answering` makes that StoreUnavailable)."""
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        max_connections=pool_size,
        timeout=_COMMAND_S,
        socket_timeout=_COMMAND_S,
        socket_connect_timeout=_CONNECT_S,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1, (RedisConnectionError,)),
    )
    return Redis.from_pool(pool)


_P = ParamSpec("_P")
_T = TypeVar("_T")


def answering(
    method: Callable[_P, Coroutine[Any, Any, _T]],
) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """*method*, a call to Redis, raising StoreUnavailable when Redis does not answer, and
    telling the process's `OUTAGE` whether it did."""

    @functools.wraps(method)
    async def answered(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            result = await method(*args, **kwargs)
        except (RedisError, OSError) as exc:
            why = f"{type(exc).__name__}: {exc}"[:200]
            OUTAGE.failed(why)
            raise StoreUnavailable(type(exc).__name__) from None
        OUTAGE.answered()
        return result

    return answered


def connect_blocking(url: str) -> Redis:
    """A client for the job queue: bytes replies, as saq reads them, and no socket timeout,
    because its blocking reads end on the server (`job_queue` says why)."""
    return Redis.from_url(url, socket_timeout=None)


@dataclasses.dataclass(eq=False)
class _Pool:
    """What this process holds of one key: its leases (how many places each token holds) and
    their total, the places its calls use now, and those its running batches may use at
    once."""

    leases: dict[str, int] = dataclasses.field(default_factory=dict)
    size: int = 0
    used: int = 0
    wanted: int = 0

    @property
    def spare(self) -> int:
        return self.size - self.used

    def add(self, token: str, n: int) -> None:
        self.leases[token] = n
        self.size += n

    def shed(self, surplus: int) -> list[str | int]:
        """Let go of *surplus* places, the newest leases first; (token, places) pairs, flat."""
        given: list[str | int] = []
        for token in reversed(list(self.leases)):
            if surplus <= 0:
                break
            n = min(self.leases[token], surplus)
            given += [token, n]
            surplus -= n
            self.size -= n
            if n == self.leases[token]:
                del self.leases[token]
            else:
                self.leases[token] -= n
        return given


def _keys(key: str) -> list[str]:
    """The Redis keys of one limit key's places: its leases, and their counts."""
    held = PREFIX + "held:" + key
    return [held, held + ":n"]


class RedisPlaces:
    """`limits.Places` in Redis, shared by every process that uses the same server."""

    def __init__(self, redis: Redis, *, later: Later, lease_ms: int = PLACE_LEASE_MS) -> None:
        self._redis = redis
        self._later = later
        self._lease_ms = lease_ms
        self._lease = redis.register_script(_LEASE)
        self._held = redis.register_script(_HELD)
        self._renew = redis.register_script(_RENEW)
        self._give = redis.register_script(_GIVE)
        self._pools: dict[str, _Pool] = {}
        self._leasing = asyncio.Lock()
        """One lease at a time: the next one sees what the last one got."""
        self._waiters: list[asyncio.Future[None]] = []
        self._renewing: asyncio.Task[None] | None = None

    async def admit(self, limits: Mapping[str, int], want: int) -> object | None:
        pools = self._pools_of(limits)
        for pool in pools:
            pool.wanted += want
        taken = False
        try:
            taken = await self.take(limits)
        finally:
            if not taken:
                await self._give_back(limits, pools, want)
        return want if taken else None

    async def take(self, limits: Mapping[str, int]) -> bool:
        pools = self._pools_of(limits)
        # Checked again after each lease: while it was awaited, other calls may have used the
        # spare places of the keys it did not lease. No await between the check and the count.
        while not all(pool.spare > 0 for pool in pools):
            async with self._leasing:
                if all(pool.spare > 0 for pool in pools):
                    break
                if not await self._leased(limits, pools):
                    return False
        for pool in pools:
            pool.used += 1
        return True

    async def give(self, limits: Mapping[str, int]) -> None:
        pools = self._pools_of(limits)
        for pool in pools:
            pool.used -= 1
        await self._give_back(limits, pools, 0)

    async def release(self, limits: Mapping[str, int], token: object) -> None:
        assert isinstance(token, int)
        pools = self._pools_of(limits)
        for pool in pools:
            pool.used -= 1
        await self._give_back(limits, pools, token)

    async def _give_back(self, limits: Mapping[str, int], pools: list[_Pool], done: int) -> None:
        """A batch that wanted *done* places is done with them (0: one of its calls ended):
        give back at once what no running batch of these keys wants or uses. Never raises: a
        give Redis does not take now is made again (`Later`), and meanwhile the places are no
        longer renewed, so they end with their lease."""
        keys: list[str] = []
        args: list[str | int] = []
        for key, pool in zip(limits, pools, strict=True):
            pool.wanted -= done
            surplus = pool.size - max(pool.used, pool.wanted)
            if surplus > 0:
                given = pool.shed(surplus)
                keys += _keys(key)
                args += [len(given) // 2, *given]
            if not pool.leases and not pool.used and not pool.wanted:
                del self._pools[key]
        self._wake()
        if keys:
            await self._later.write("places given back", lambda: self._given(keys, args))

    @answering
    async def _given(self, keys: list[str], args: list[str | int]) -> None:
        await self._give(keys=keys, args=args)

    @answering
    async def _leased(self, limits: Mapping[str, int], pools: list[_Pool]) -> bool:
        """Lease, in one script, what the running batches of each key want beyond what this
        process holds, and at least one where it has no spare place; False when a key that
        needs one has none left."""
        token = uuid.uuid4().hex
        keys = [name for key in limits for name in _keys(key)]
        args: list[str | int] = [self._lease_ms, token]
        for limit, pool in zip(limits.values(), pools, strict=True):
            fewest = 1 if pool.spare < 1 else 0
            args += [limit, max(pool.wanted - pool.size, fewest), fewest]
        taken = [int(n) for n in await self._lease(keys=keys, args=args)]
        if taken and taken[0] < 0:
            return False
        for pool, n in zip(pools, taken, strict=True):
            if n:
                pool.add(token, n)
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.create_task(self._keep_leases(), name="gqlbatch:places")
        return True

    async def full(self, limits: Mapping[str, int]) -> tuple[str, int] | None:
        pools = self._pools_of(limits)
        if all(pool.spare > 0 for pool in pools):
            return None  # this process has a place of each: no need to ask
        held = await self._counts([name for key in limits for name in _keys(key)])
        for (key, limit), count, pool in zip(limits.items(), held, pools, strict=True):
            if count >= limit and pool.spare < 1:
                return key, count
        return None

    async def held(self, key: str) -> int:
        return (await self._counts(_keys(key)))[0]

    @answering
    async def _counts(self, keys: list[str]) -> list[int]:
        return [int(n) for n in await self._held(keys=keys)]

    async def wait(self) -> None:
        # A call of this process gives a place back and wakes the waiter; another process
        # gives places back without telling this one: look again soon in any case.
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POLL_S[1]):
                await waiter

    def _wake(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _pools_of(self, limits: Mapping[str, int]) -> list[_Pool]:
        return [self._pools.setdefault(key, _Pool()) for key in limits]

    async def _keep_leases(self) -> None:
        # Renews every lease a third of the way through, while the process holds any.
        while any(pool.leases for pool in self._pools.values()):
            await asyncio.sleep(self._lease_ms / 3000)
            with contextlib.suppress(StoreUnavailable):  # counted; the next turn tries again
                await self._renewed()

    @answering
    async def _renewed(self) -> None:
        keys: list[str] = []
        args: list[str | int] = [self._lease_ms]
        for key, pool in self._pools.items():
            if pool.leases:
                keys += _keys(key)
                args += [len(pool.leases), *pool.leases]
        if keys:
            await self._renew(keys=keys, args=args)

    async def close(self) -> None:
        """Stop renewing: the process is stopping, and its places end with their lease."""
        if self._renewing is not None:
            self._renewing.cancel()
            await asyncio.wait([self._renewing])


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

    @answering
    async def get(self, sha256: str) -> str | None:
        document = await self._redis.get(PREFIX + "pq:" + sha256)
        return None if document is None else str(document)  # decode_responses: a str

    @answering
    async def put(self, sha256: str, document: str, client: str) -> bool:
        keys = [PREFIX + "pq:" + sha256, PREFIX + "pq-bytes", client_key("pq-bytes", client)]
        args: list[str | int] = [document, self._ttl_s, self._max_bytes, self._per_client]
        return int(await self._put(keys=keys, args=args)) == 1


def client_key(kind: str, client: str) -> str:
    """The key of what the store keeps of *client* (its jobs, its bytes), of one *kind*."""
    return f"{PREFIX}{kind}:client:{client}"
