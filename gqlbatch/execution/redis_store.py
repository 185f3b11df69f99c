"""The shared store: outstanding-call places, idempotency records and jobs in Redis, so that
several gqlbatch processes (workers, hosts) hold one set of limits, keys and jobs. The only
module that imports redis-py; `[store] url` (or `GQLBATCH_STORE__URL`) turns it on.

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

A job is a hash (its submitter, size, state, spec while it runs, each item's result as it
settles, a mark for each write started, and its outcome) and an entry in a sorted set of jobs
scored by expiry, which bounds how many are kept.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from typing import Any, cast

from redis.asyncio import Redis

from gqlbatch.core.errors import BatchRejected
from gqlbatch.core.result import (
    BatchOutcome,
    ItemResult,
    item_from_json,
    item_to_json,
    outcome_from_json,
    outcome_to_json,
)
from gqlbatch.execution.idempotency import Run, outcome_bytes, reused
from gqlbatch.execution.job_store import Job, JobNews, JobSpec, JobState

__all__ = [
    "RedisIdempotencyStore",
    "RedisJobStore",
    "RedisPersistedQueries",
    "RedisPlaces",
    "connect",
    "connect_blocking",
]

_PREFIX = "gqlbatch:"

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

_POLL_S = (0.002, 0.05)
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
        keys = [_PREFIX + "held:" + key for key in limits]
        full = await self._take(keys=keys, args=[self._lease_ms, member, *limits.values()])
        return member if int(full) == 0 else None

    async def give(self, limits: Mapping[str, int], token: object) -> None:
        if limits:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in limits:
                    pipe.zrem(_PREFIX + "held:" + key, str(token))
                await pipe.execute()

    async def held(self, key: str) -> int:
        return int(await self._held(keys=[_PREFIX + "held:" + key]))

    async def wait(self) -> None:
        # Another process gives places back without telling this one: look again soon. The
        # caller loops, so a short sleep costs one more round trip, never a missed place.
        await asyncio.sleep(_POLL_S[0])


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
        name = _PREFIX + "idem:" + key
        running = json.dumps({"fingerprint": fingerprint, "state": "running"})
        delay = _POLL_S[0]
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
            delay = min(delay * 2, _POLL_S[1])

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


# KEYS: the job's hash, the index of jobs, its client's jobs, its client's finished jobs, their
# sizes. ARGV: state, packed outcome ("" for none), error ("" for none), ttl_s, job id, the
# client's bytes, the prefix of a job's hash, "1" to keep the outcome of a job cancelled while
# it ran ("0" to end a running one). Ends a RUNNING job (its results now live in its outcome, so
# each one's own field goes), then forgets the client's oldest finished jobs while their
# outcomes are over the client's bytes. Returns 1 when it ended the job (or kept the outcome),
# 0 when it could not.
_FINISH = """
local state = redis.call('HGET', KEYS[1], 'state')
if ARGV[8] == '1' then
  if state ~= 'CANCELLED' or redis.call('HEXISTS', KEYS[1], 'outcome') == 1 then return 0 end
elseif state ~= 'RUNNING' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[3]) end
redis.call('HDEL', KEYS[1], 'spec')
local now = tonumber(redis.call('TIME')[1])
local expiry = now + tonumber(ARGV[4])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('ZADD', KEYS[2], expiry, ARGV[5])
redis.call('ZADD', KEYS[3], expiry, ARGV[5])
if ARGV[2] == '' then return 1 end
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  local kind = string.sub(name, 1, 2)
  if kind == 'r:' or kind == 'o:' or kind == 's:' then redis.call('HDEL', KEYS[1], name) end
end
redis.call('HSET', KEYS[1], 'outcome', ARGV[2])
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)) do
  redis.call('HDEL', KEYS[5], old)
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
redis.call('ZADD', KEYS[4], expiry, ARGV[5])
redis.call('HSET', KEYS[5], ARGV[5], string.len(ARGV[2]))
local total = 0
for _, size in ipairs(redis.call('HVALS', KEYS[5])) do total = total + tonumber(size) end
for _, old in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  if total <= tonumber(ARGV[6]) then break end
  if old ~= ARGV[5] then
    total = total - tonumber(redis.call('HGET', KEYS[5], old) or '0')
    redis.call('HDEL', KEYS[5], old)
    redis.call('ZREM', KEYS[4], old)
    redis.call('ZREM', KEYS[3], old)
    redis.call('ZREM', KEYS[2], old)
    redis.call('DEL', ARGV[7] .. old)
  end
end
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[4]))
redis.call('EXPIRE', KEYS[5], tonumber(ARGV[4]))
return 1
"""

# KEYS: the index of jobs, the new job's hash, its client's jobs. ARGV: max, meta JSON, running
# expiry (s), id, spec JSON, the client's max. Drops the expired entries, then adds the job
# unless the store keeps its most (0), or its client does (-1).
_ADD = """
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[6]) then return -1 end
redis.call('HSET', KEYS[2], 'meta', ARGV[2], 'state', 'RUNNING', 'spec', ARGV[5])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[4])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[3]))
return 1
"""

# KEYS: a job's hash. ARGV: field, value. Only while the job is kept: a write to an expired
# job's hash would make a new one that never expires.
_SET_FIELD = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
"""

# KEYS: a job's hash. ARGV: item index, result JSON. Only while the job is kept, and its outcome
# not: a result settled for the first time also goes at the end of the order its followers
# read (`o:1`, `o:2`, ... name the indexes; `n` counts them).
_RECORD = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'outcome') == 1 then
  return
end
if redis.call('HSET', KEYS[1], 'r:' .. ARGV[1], ARGV[2]) == 1 then
  local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
  redis.call('HSET', KEYS[1], 'o:' .. n, ARGV[1])
end
"""

# KEYS: a job's hash. ARGV: since. Returns {meta, state, then each result settled after the first
# *since*, in the order they settled}, or {} when the job is gone.
_CHANGES = """
local got = redis.call('HMGET', KEYS[1], 'meta', 'state', 'n')
if not got[1] then return {} end
local out = {got[1], got[2]}
for p = tonumber(ARGV[1]) + 1, tonumber(got[3] or '0') do
  local index = redis.call('HGET', KEYS[1], 'o:' .. p)
  out[#out + 1] = redis.call('HGET', KEYS[1], 'r:' .. index)
end
return out
"""

# KEYS: a job's hash, its runner key. ARGV: runner, lease_ms. Gives the job's lease to the runner
# unless another holds it; returns the run's number, 0 when another holds it, -1 when the job is
# gone.
_TAKE_JOB = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', tonumber(ARGV[2]))
return redis.call('HINCRBY', KEYS[1], 'runs', 1)
"""

# KEYS: a job's runner key. ARGV: runner, lease_ms (0 to release). 1 when the runner held it.
_RENEW_JOB = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

_RUNNING_S = 7 * 86_400
"""How long a job's record lasts while it runs: past it, a job whose process died is gone."""


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
        document = await self._redis.get(_PREFIX + "pq:" + sha256)
        return None if document is None else str(document)  # decode_responses: a str

    async def put(self, sha256: str, document: str, client: str) -> bool:
        keys = [_PREFIX + "pq:" + sha256, _PREFIX + "pq-bytes", _client_key("pq-bytes", client)]
        args: list[str | int] = [document, self._ttl_s, self._max_bytes, self._per_client]
        return int(await self._put(keys=keys, args=args)) == 1


class RedisJobStore:
    """`job_store.JobStore` in Redis: any process reads a job, follows it, and cancels it."""

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_s: int,
        max_jobs: int,
        max_per_client: int = 100,
        max_bytes_per_client: int = 64 * 1024 * 1024,
    ) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._max_jobs = max_jobs
        self._max_per_client = max_per_client
        self._max_bytes = max_bytes_per_client
        self._add = redis.register_script(_ADD)
        self._finish = redis.register_script(_FINISH)
        self._set_field = redis.register_script(_SET_FIELD)
        self._record = redis.register_script(_RECORD)
        self._changes = redis.register_script(_CHANGES)
        self._take_job = redis.register_script(_TAKE_JOB)
        self._renew_job = redis.register_script(_RENEW_JOB)

    async def add(self, job: Job) -> str | None:
        meta = json.dumps({"client": job.client, "total": job.total})
        spec = json.dumps(None if job.spec is None else job.spec.to_json())
        added = int(
            await self._add(
                keys=[_PREFIX + "jobs", _job_key(job.id), _client_key("jobs", job.client)],
                args=[self._max_jobs, meta, _RUNNING_S, job.id, spec, self._max_per_client],
            )
        )
        return None if added == 1 else "jobs.max" if added == 0 else "jobs.max_per_client"

    async def get(self, job_id: str) -> Job | None:
        # Decoded (decode_responses): every name and value is a str.
        fields = cast(dict[str, str], await self._redis.hgetall(_job_key(job_id)))
        if "meta" not in fields:
            return None
        meta = json.loads(fields["meta"])
        job = Job(job_id, meta["client"], meta["total"], JobState(fields["state"]))
        spec = json.loads(fields.get("spec", "null"))
        job.spec = None if spec is None else JobSpec.from_json(spec)
        job.started = {int(name[2:]) for name in fields if name.startswith("s:")}
        job.results = {
            int(name[2:]): item_from_json(json.loads(value))
            for name, value in fields.items()
            if name.startswith("r:")
        }
        job.packed = fields.get("outcome")  # read when it is asked for (Jobs, off the loop)
        job.error = fields.get("error")
        return job

    async def changes(self, job_id: str, since: int) -> JobNews | None:
        found = cast(list[str], await self._changes(keys=[_job_key(job_id)], args=[since]))
        if not found:
            return None
        meta, state, *results = found
        return JobNews(
            json.loads(meta)["client"],
            JobState(state),
            [item_from_json(json.loads(r)) for r in results],
        )

    async def record(self, job_id: str, result: ItemResult) -> None:
        value = json.dumps(item_to_json(result))
        await self._record(keys=[_job_key(job_id)], args=[result.index, value])

    async def mark_started(self, job_id: str, index: int) -> None:
        await self._set_field(keys=[_job_key(job_id)], args=[f"s:{index}", "1"])

    async def take(self, job_id: str, runner: str, lease_ms: int) -> int | None:
        keys = [_job_key(job_id), _job_key(job_id) + ":runner"]
        run = int(await self._take_job(keys=keys, args=[runner, lease_ms]))
        return run if run > 0 else None

    async def renew(self, job_id: str, runner: str, lease_ms: int) -> bool:
        keys = [_job_key(job_id) + ":runner"]
        return int(await self._renew_job(keys=keys, args=[runner, lease_ms])) == 1

    async def release(self, job_id: str, runner: str) -> None:
        await self._renew_job(keys=[_job_key(job_id) + ":runner"], args=[runner, 0])

    async def finish(
        self, job_id: str, client: str, state: JobState, packed: str | None, error: str | None
    ) -> bool:
        return await self._end(job_id, client, state, packed, error, after_cancel=False)

    async def keep_outcome(self, job_id: str, client: str, packed: str, error: str | None) -> bool:
        return await self._end(job_id, client, JobState.CANCELLED, packed, error, after_cancel=True)

    async def _end(
        self,
        job_id: str,
        client: str,
        state: JobState,
        packed: str | None,
        error: str | None,
        *,
        after_cancel: bool,
    ) -> bool:
        ended = await self._finish(
            keys=[
                _job_key(job_id),
                _PREFIX + "jobs",
                _client_key("jobs", client),
                _client_key("done", client),
                _client_key("sizes", client),
            ],
            args=[
                state.value,
                packed or "",
                error or "",
                self._ttl_s,
                job_id,
                self._max_bytes,
                _job_key(""),
                "1" if after_cancel else "0",
            ],
        )
        return int(ended) == 1

    async def changed(self, job_id: str) -> None:
        # Another process records the results: look again soon.
        await asyncio.sleep(_POLL_S[1])


def _client_key(kind: str, client: str) -> str:
    return f"{_PREFIX}{kind}:client:{client}"


def _job_key(job_id: str) -> str:
    return _PREFIX + "job:" + job_id
