"""The shared store's jobs: `job_store.JobStore` in Redis, so that any process reads a job,
follows it, and cancels it, and any worker runs it.

A job is a hash (its submitter, size, state, spec while it runs, each item's result as it
settles with the order they settled in, a mark for each write started, and, once it ends,
its packed outcome), an entry in a sorted set of jobs scored by expiry, which bounds how many
are kept, and entries in its client's sets, which bound how many and how many bytes of them
one client keeps (issue 24).
"""

from __future__ import annotations

import asyncio
import json
from typing import cast

from redis.asyncio import Redis

from gqlbatch.core.result import ItemResult, item_from_json, item_to_json
from gqlbatch.execution.job_store import KEPT, Job, JobNews, JobSpec, JobState
from gqlbatch.execution.redis_store import POLL_S, PREFIX, answering, client_key

__all__ = ["RedisJobStore"]

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
# unless one with its id is kept (2), the store keeps its most (0), or its client does (-1).
_ADD = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
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
# unless another holds it, and names it the job's last runner; returns the run's number, 0 when
# another holds it, -1 when the job is gone.
_TAKE_JOB = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'runner', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'runs', 1)
"""

# KEYS: a job's runner key, its hash. ARGV: runner, lease_ms (0 to release). 1 when the runner
# holds the lease: it did, or it lapsed and no one took the job since (Redis did not answer its
# renewals for a while: a pause of Redis is no reason for a run to stop).
_RENEW_JOB = """
local holder = redis.call('GET', KEYS[1])
if ARGV[2] ~= '0' and not holder and redis.call('HGET', KEYS[2], 'runner') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
end
if holder ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

_RUNNING_S = 7 * 86_400
"""How long a job's record lasts while it runs: past it, a job whose process died is gone."""


class RedisJobStore:
    """`job_store.JobStore` in Redis: any process reads a job, follows it, and cancels it.
    Each method raises StoreUnavailable when Redis does not answer (`redis_store.answering`);
    `jobs.Jobs` decides what that costs."""

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

    @answering
    async def add(self, job: Job) -> str | None:
        meta = json.dumps(
            {"client": job.client, "total": job.total, "fingerprint": job.fingerprint}
        )
        spec = json.dumps(None if job.spec is None else job.spec.to_json())
        added = int(
            await self._add(
                keys=[PREFIX + "jobs", _job_key(job.id), client_key("jobs", job.client)],
                args=[self._max_jobs, meta, _RUNNING_S, job.id, spec, self._max_per_client],
            )
        )
        return {1: None, 2: KEPT, 0: "jobs.max"}.get(added, "jobs.max_per_client")

    @answering
    async def get(self, job_id: str) -> Job | None:
        # Decoded (decode_responses): every name and value is a str.
        fields = cast(dict[str, str], await self._redis.hgetall(_job_key(job_id)))
        if "meta" not in fields:
            return None
        meta = json.loads(fields["meta"])
        job = Job(job_id, meta["client"], meta["total"], JobState(fields["state"]))
        job.fingerprint = meta.get("fingerprint")
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

    @answering
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

    @answering
    async def record(self, job_id: str, result: ItemResult) -> None:
        value = json.dumps(item_to_json(result))
        await self._record(keys=[_job_key(job_id)], args=[result.index, value])

    @answering
    async def mark_started(self, job_id: str, index: int) -> None:
        await self._set_field(keys=[_job_key(job_id)], args=[f"s:{index}", "1"])

    @answering
    async def take(self, job_id: str, runner: str, lease_ms: int) -> int | None:
        keys = [_job_key(job_id), _job_key(job_id) + ":runner"]
        run = int(await self._take_job(keys=keys, args=[runner, lease_ms]))
        return run if run > 0 else None

    @answering
    async def renew(self, job_id: str, runner: str, lease_ms: int) -> bool:
        keys = [_job_key(job_id) + ":runner", _job_key(job_id)]
        return int(await self._renew_job(keys=keys, args=[runner, lease_ms])) == 1

    @answering
    async def release(self, job_id: str, runner: str) -> None:
        keys = [_job_key(job_id) + ":runner", _job_key(job_id)]
        await self._renew_job(keys=keys, args=[runner, 0])

    async def finish(
        self, job_id: str, client: str, state: JobState, packed: str | None, error: str | None
    ) -> bool:
        return await self._end(job_id, client, state, packed, error, after_cancel=False)

    async def keep_outcome(self, job_id: str, client: str, packed: str, error: str | None) -> bool:
        return await self._end(job_id, client, JobState.CANCELLED, packed, error, after_cancel=True)

    @answering
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
                PREFIX + "jobs",
                client_key("jobs", client),
                client_key("done", client),
                client_key("sizes", client),
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
        await asyncio.sleep(POLL_S[1])


def _job_key(job_id: str) -> str:
    return PREFIX + "job:" + job_id
