"""`limits.Places` in Redis: a client's outstanding-call limit is one limit over every process.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import Mapping

from redis.asyncio import Redis

from gqlbatch.core.errors import StoreUnavailable
from gqlbatch.execution.redis_store import POLL_S, PREFIX, answering
from gqlbatch.execution.store_faults import Later

__all__ = ["PLACE_LEASE_MS", "RedisPlaces"]

PLACE_LEASE_MS = 10_000
"""How long a batch's places outlive its process's last renewal (every third of it)."""

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
