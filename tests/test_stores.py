"""The state several processes share: outstanding-call places and idempotency records.

One contract suite, run against both implementations: this process's memory, and Redis (a real
redis-server on a free port, flushed before each test). Then two real `gqlbatch serve`
processes share one Redis: a key replayed on the other process sends nothing again, and a
client's limit holds across both.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem
from gqlbatch.core.result import (
    BatchOutcome,
    BatchStats,
    ElementResult,
    ErrorInfo,
    ItemResult,
    Rollback,
    RollbackState,
    State,
    outcome_from_json,
    outcome_to_json,
)
from gqlbatch.core.wire import BodyEncoding
from gqlbatch.execution.idempotency import IdempotencyStore, MemoryIdempotencyStore
from gqlbatch.execution.job_store import Job, JobSpec, JobState, JobStore, MemoryJobStore, pack
from gqlbatch.execution.limits import MemoryPlaces, OutstandingCalls, Places
from gqlbatch.execution.store_faults import Later
from tests.fakes import FakeService
from tests.processes import SERVING, gqlbatch_server

BACKENDS = ["memory", "redis"]


@pytest.fixture(params=BACKENDS)
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """None for the memory backend; for Redis, a client of an emptied database."""
    if request.param == "memory":
        yield None
        return
    from gqlbatch.execution.redis_store import connect

    client = connect(request.getfixturevalue("redis_url"))
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def places(redis: Any) -> Places:
    if redis is None:
        return MemoryPlaces()
    from gqlbatch.execution.redis_places import RedisPlaces

    return RedisPlaces(redis, later=Later())


@pytest.fixture
def jobs_store(redis: Any) -> JobStore:
    if redis is None:
        return MemoryJobStore(ttl_s=60, max_jobs=2)
    from gqlbatch.execution.redis_jobs import RedisJobStore

    return RedisJobStore(redis, ttl_s=60, max_jobs=2)


@pytest.fixture
def store(redis: Any) -> IdempotencyStore:
    if redis is None:
        return MemoryIdempotencyStore(60)
    from gqlbatch.execution.redis_idempotency import RedisIdempotencyStore

    return RedisIdempotencyStore(
        redis, ttl_s=60, running_lease_ms=60_000, max_record_bytes=1_000_000, later=Later()
    )


def limits(places: Places, per_client: int = 10, per_address: int = 100, total: int = 100) -> Any:
    return OutstandingCalls(
        per_client=per_client,
        per_address=per_address,
        total=total,
        retry_after_s=3,
        places=places,
    )


# --------------------------------------------------------------------------------------------
# Places


async def test_total_outstanding_limit_refuses_any_client(places: Places) -> None:
    calls = limits(places, total=2)
    async with calls.admit("cred:a", "addr:1"), calls.admit("cred:b", "addr:2"):
        with pytest.raises(BatchRejected) as info:
            async with calls.admit("cred:c", "addr:3"):
                pass
        assert info.value.retry_after_s == 3
        assert "the server already has 2 upstream calls outstanding" in str(info.value)
        held = (await calls.held("cred:a"), await calls.held("addr:2"), await calls.held())
        assert held == (1, 1, 2)
    assert await calls.held() == 0


async def test_fresh_credentials_do_not_dodge_the_address_limit(places: Places) -> None:
    calls = limits(places, per_client=10, per_address=2)
    await calls.check("cred:a", "addr:1")
    async with calls.admit("cred:a", "addr:1"), calls.admit("cred:b", "addr:1"):
        with pytest.raises(BatchRejected, match="this client's address already has 2"):
            await calls.check("cred:fresh", "addr:1")  # refused before its batch is read
        await calls.check("cred:c", "addr:2")


async def test_calls_past_the_limit_wait_and_a_new_batch_is_refused(places: Places) -> None:
    calls = limits(places, per_client=2)
    gate = asyncio.Event()
    started: list[int] = []
    two_started = asyncio.Event()

    async def send(n: int) -> int:
        started.append(n)
        if len(started) == 2:
            two_started.set()
        await gate.wait()
        return n

    async with calls.admit("cred:a", "addr:1") as admission:
        guarded = admission.guard(send)
        tasks = [asyncio.create_task(guarded(n)) for n in range(3)]
        await two_started.wait()
        for _ in range(5):  # the third call has had every chance to start, and has not
            await asyncio.sleep(0)
        assert (sorted(started), await calls.held("cred:a")) == ([0, 1], 2)
        with pytest.raises(BatchRejected, match="this client already has 2"):
            await calls.check("cred:a", "addr:1")
        gate.set()
        assert sorted(await asyncio.gather(*tasks)) == [0, 1, 2]
        assert await calls.held("cred:a") == 1  # the batch's own place, until it ends
    assert await calls.held() == 0


async def _calls(redis: Any) -> dict[str, int]:
    """Each command Redis has run so far, as a client sent it (INFO commandstats; the commands
    a script runs count under their own names, beside its EVALSHA)."""
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()}


async def test_a_batch_asks_redis_twice_whatever_its_calls(redis_url: str) -> None:
    # Issue 25: every call past a batch's first took and gave back a place in Redis, two
    # round trips a call. Now the places a batch may use are leased when it is admitted, its
    # calls are counted in the process, and what no running batch wants goes back at its end.
    from gqlbatch.execution.redis_places import RedisPlaces
    from gqlbatch.execution.redis_store import connect

    redis = connect(redis_url)
    await redis.flushdb()
    calls = limits(RedisPlaces(redis, later=Later()), per_client=50)
    gate = asyncio.Event()
    started = asyncio.Barrier(21)

    async def send(n: int) -> int:
        await started.wait()
        await gate.wait()
        return n

    before = await _calls(redis)
    async with calls.admit("cred:a", "addr:1", want=20) as admission:
        admitted = await _calls(redis)
        assert admitted["evalsha"] - before["evalsha"] == 1  # one script: 20 places, 3 keys
        guarded = admission.guard(send)
        tasks = [asyncio.create_task(guarded(n)) for n in range(20)]
        await started.wait()  # all 20 in flight at once
        gate.set()
        assert sorted(await asyncio.gather(*tasks)) == list(range(20))
        ran = await _calls(redis)
        assert ran.get("evalsha") == admitted["evalsha"]  # no call asked Redis
    ended = await _calls(redis)
    assert ended["evalsha"] - ran["evalsha"] == 1  # given back at once: one script, 3 keys
    assert await calls.held() == 0
    # A lease is one entry however many places it holds: Redis's work is per lease.
    assert ended["zadd"] - before.get("zadd", 0) == 3
    await redis.aclose()


@pytest.mark.timeout(30)
async def test_redis_places_live_while_renewed_and_end_with_their_lease(redis_url: str) -> None:
    # Issue 25: a place is a lease of seconds, renewed while its batch runs; a process that
    # dies (or stops renewing) keeps it only until its lease ends. Each wait is for Redis's
    # state to change (its clock decides), bounded by the test's timeout.
    from gqlbatch.execution.redis_places import RedisPlaces
    from gqlbatch.execution.redis_store import PREFIX, connect

    redis = connect(redis_url)
    await redis.flushdb()
    renewed = RedisPlaces(redis, later=Later(), lease_ms=600)
    assert await renewed.admit({"cred:a": 1}, 1) is not None
    [member] = await redis.zrange(PREFIX + "held:cred:a", 0, -1)
    first = await redis.zscore(PREFIX + "held:cred:a", member)
    while await redis.zscore(PREFIX + "held:cred:a", member) == first:  # renewed
        await asyncio.sleep(0.05)
    other = RedisPlaces(redis, later=Later(), lease_ms=600)  # another process
    assert await other.admit({"cred:a": 1}, 1) is None  # still held
    await renewed.close()  # the process stops renewing, as a dead one does
    while await other.held("cred:a"):
        await asyncio.sleep(0.05)
    assert await other.admit({"cred:a": 1}, 1) is not None
    await other.close()
    await redis.aclose()


# --------------------------------------------------------------------------------------------
# Idempotency records


def _outcome(marker: str) -> BatchOutcome:
    item = ItemResult(
        request_id="a",
        index=0,
        state=State.SUCCEEDED,
        status=201,
        headers=(("Location", "/x/1"),),
        body={"marker": marker},
        body_encoding=BodyEncoding.JSON,
    )
    stats = BatchStats(
        sub_requests=1,
        calls_requested=1,
        upstream_calls=1,
        calls_saved=0,
        saved_by_dedupe=0,
        saved_by_bulk=0,
        wall_ms=1.0,
        critical_path_ms=1.0,
    )
    return BatchOutcome((item,), stats)


async def test_a_key_runs_its_batch_once(store: IdempotencyStore) -> None:
    runs = 0
    release = asyncio.Event()

    async def run() -> BatchOutcome:
        nonlocal runs
        runs += 1
        await release.wait()
        return _outcome("first")

    first = asyncio.create_task(store.run_once("alice|k1", "fp", run))
    second = asyncio.create_task(store.run_once("alice|k1", "fp", run))  # waits for the first
    await asyncio.sleep(0)
    release.set()
    one, two = await asyncio.gather(first, second)
    assert runs == 1
    assert (one.replayed, two.replayed) == (False, True)
    assert two.results == one.results
    with pytest.raises(BatchRejected) as info:
        await store.run_once("alice|k1", "another fingerprint", run)
    assert info.value.code is ErrorCode.IDEMPOTENCY_KEY_REUSED


async def test_a_refused_batch_is_not_recorded(store: IdempotencyStore) -> None:
    async def refused() -> BatchOutcome:
        raise BatchRejected([Problem(ErrorCode.INVALID_INPUT, "refused")])

    async def ran() -> BatchOutcome:
        return _outcome("second try")

    with pytest.raises(BatchRejected):
        await store.run_once("alice|k2", "fp", refused)
    outcome = await store.run_once("alice|k2", "fp", ran)
    assert (outcome.replayed, outcome.results[0].body) == (False, {"marker": "second try"})


async def test_the_most_records_hold_in_either_store(redis: Any) -> None:
    # Issue 25: with max_records = 1000, 3,000 keyed batches left 2,984 records in Redis.
    if redis is None:
        bounded: IdempotencyStore = MemoryIdempotencyStore(60, max_records=2)
    else:
        from gqlbatch.execution.redis_idempotency import RedisIdempotencyStore

        bounded = RedisIdempotencyStore(
            redis,
            ttl_s=60,
            running_lease_ms=60_000,
            max_record_bytes=1_000_000,
            later=Later(),
            max_records=2,
        )
    runs: list[str] = []

    def batch(key: str) -> Any:
        async def run() -> BatchOutcome:
            runs.append(key)
            return _outcome(key)

        return run

    for key in ("k1", "k2", "k3"):
        await bounded.run_once(key, "fp", batch(key))
    replayed = await bounded.run_once("k3", "fp", batch("k3"))
    assert replayed.replayed and runs == ["k1", "k2", "k3"]
    await bounded.run_once("k1", "fp", batch("k1"))  # the oldest was forgotten: it runs again
    assert runs == ["k1", "k2", "k3", "k1"]
    if redis is not None:
        from gqlbatch.execution.redis_store import PREFIX

        assert len(await redis.keys(PREFIX + "idem:*")) == 2


def test_a_stored_outcome_reads_back_equal() -> None:
    outcome = _outcome("x")
    item = outcome.results[0]
    rich = BatchOutcome(
        (
            ItemResult(
                **{
                    **{f: getattr(item, f) for f in ("request_id", "index", "status")},
                    "state": State.FAILED,
                    "error": ErrorInfo(ErrorCode.UPSTREAM_STATUS, "answered 500"),
                    "elements": (ElementResult(index=0, status=404, error=None, coalesced=True),),
                    "rollback": Rollback(
                        RollbackState.ROLLED_BACK, "DELETE /x/1 answered 204", 204
                    ),
                    "headers": (("A", "1"), ("A", "2")),
                    "body": [None, {"k": [1.5, "v"]}],
                    "body_encoding": BodyEncoding.JSON,
                }
            ),
        ),
        outcome.stats,
    )
    import json

    assert outcome_from_json(json.loads(json.dumps(outcome_to_json(rich)))) == rich


# --------------------------------------------------------------------------------------------
# Jobs


async def test_a_job_store_keeps_results_ends_once_and_is_bounded(jobs_store: JobStore) -> None:
    job = Job("j1", "cred:a", 2)
    assert await jobs_store.add(job) is None
    assert await jobs_store.add(Job("j2", "cred:b", 1)) is None
    assert await jobs_store.add(Job("j3", "cred:c", 1)) == "jobs.max"  # max_jobs is 2
    await jobs_store.record("j1", _outcome("one").results[0])
    read = await jobs_store.get("j1")
    assert read is not None
    assert (read.client, read.total, read.state, read.done) == ("cred:a", 2, JobState.RUNNING, 1)
    news = await jobs_store.changes("j1", 0)
    assert news is not None and [r.body for r in news.results] == [{"marker": "one"}]
    final = pack(_outcome("final"))
    assert await jobs_store.finish("j1", "cred:a", JobState.SUCCEEDED, final, None)
    assert not await jobs_store.finish("j1", "cred:a", JobState.CANCELLED, None, None)  # once
    ended = await jobs_store.get("j1")
    assert ended is not None and ended.state is JobState.SUCCEEDED
    assert ended.packed == final  # kept packed: read back only when asked for
    assert ended.unpacked().items()[0].body == {"marker": "final"}
    assert await jobs_store.finish("j2", "cred:b", JobState.FAILED, None, "a limit")
    failed = await jobs_store.get("j2")
    assert failed is not None and failed.error == "a limit"
    assert await jobs_store.get("unknown") is None


@pytest.fixture
def quota_store(redis: Any) -> JobStore:
    if redis is None:
        return MemoryJobStore(ttl_s=60, max_jobs=10, max_per_client=2, max_bytes_per_client=250)
    from gqlbatch.execution.redis_jobs import RedisJobStore

    return RedisJobStore(redis, ttl_s=60, max_jobs=10, max_per_client=2, max_bytes_per_client=250)


async def test_a_job_store_holds_each_client_to_its_share(quota_store: JobStore) -> None:
    # Issue 24, findings 6 and 7, in either store: jobs and bytes per client.
    assert await quota_store.add(Job("a1", "cred:a", 1)) is None
    assert await quota_store.add(Job("a2", "cred:a", 1)) is None
    assert await quota_store.add(Job("a3", "cred:a", 1)) == "jobs.max_per_client"
    assert await quota_store.add(Job("b1", "cred:b", 1)) is None  # b has a share of its own
    packed = pack(_outcome("1" * 20))  # about 200 characters: one fits in 250, two do not
    assert await quota_store.finish("a1", "cred:a", JobState.SUCCEEDED, packed, None)
    assert await quota_store.finish("b1", "cred:b", JobState.SUCCEEDED, packed, None)
    assert await quota_store.finish("a2", "cred:a", JobState.SUCCEEDED, packed, None)
    assert await quota_store.get("a1") is None  # a's oldest finished job made room
    assert await quota_store.get("a2") is not None and await quota_store.get("b1") is not None
    assert await quota_store.add(Job("a3", "cred:a", 1)) is None  # its place is free again


async def test_a_job_store_tells_followers_only_what_changed(jobs_store: JobStore) -> None:
    assert await jobs_store.add(Job("j1", "cred:a", 3)) is None
    one, two, three = (_outcome(str(n)).results[0] for n in range(3))
    await jobs_store.record("j1", dataclasses.replace(two, index=1))
    await jobs_store.record("j1", one)
    news = await jobs_store.changes("j1", 0)
    assert news is not None and (news.client, news.state) == ("cred:a", JobState.RUNNING)
    assert [r.index for r in news.results] == [1, 0]  # in the order they settled
    await jobs_store.record("j1", dataclasses.replace(three, index=2))
    later = await jobs_store.changes("j1", 2)
    assert later is not None and [r.index for r in later.results] == [2]
    state_only = await jobs_store.changes("j1", 3)
    assert state_only is not None and state_only.results == []
    assert await jobs_store.changes("gone", 0) is None


async def test_a_job_store_keeps_what_a_resumed_run_needs(jobs_store: JobStore) -> None:
    spec = JobSpec(
        [{"requestId": "w", "method": "POST", "path": "/w"}],
        {"mode": "PARALLEL"},
        {"default": (("Authorization", "Bearer a"),)},
        "addr:10.0.0.1",
        "req-7",
    )
    assert await jobs_store.add(Job("j1", "cred:a", 1, spec=spec)) is None
    await jobs_store.mark_started("j1", 0)
    read = await jobs_store.get("j1")
    assert read is not None and (read.spec, read.started) == (spec, {0})
    # One runner at a time: a second waits until the first releases the lease, or it lapses.
    assert await jobs_store.take("j1", "r1", lease_ms=60_000) == 1
    assert await jobs_store.take("j1", "r2", lease_ms=60_000) is None
    assert await jobs_store.renew("j1", "r1", lease_ms=60_000)
    assert not await jobs_store.renew("j1", "r2", lease_ms=60_000)
    await jobs_store.release("j1", "r2")  # not its lease: nothing happens
    assert await jobs_store.take("j1", "r2", lease_ms=60_000) is None
    await jobs_store.release("j1", "r1")
    assert await jobs_store.take("j1", "r2", lease_ms=60_000) == 2  # the job's second run
    assert not await jobs_store.renew("j1", "r1", lease_ms=60_000)
    # A lease that lapsed while the store did not answer is the runner's again, unless
    # another took the job meanwhile (issue 25: a pause of Redis stopped every job).
    assert await jobs_store.take("j1", "r2", lease_ms=1) == 3
    await asyncio.sleep(0.01)  # its 1 ms lease ends, in Redis as in memory
    assert await jobs_store.renew("j1", "r2", lease_ms=60_000)
    assert await jobs_store.take("j1", "r3", lease_ms=60_000) is None
    # Once it ends, the spec goes: its headers may carry credentials.
    assert await jobs_store.finish("j1", "cred:a", JobState.SUCCEEDED, pack(_outcome("x")), None)
    ended = await jobs_store.get("j1")
    assert ended is not None and ended.spec is None
    # Nothing is kept for a job the store no longer has.
    assert await jobs_store.take("gone", "r1", lease_ms=60_000) is None
    await jobs_store.mark_started("gone", 0)
    assert await jobs_store.get("gone") is None


# --------------------------------------------------------------------------------------------
# Two processes, one Redis


@pytest.mark.timeout(60)
async def test_two_processes_share_keys_and_limits(
    redis_url: str, service: FakeService, upstream_url: str
) -> None:
    gate = asyncio.Event()
    service.route("POST", "/orders", status=201, json={"id": 1})
    service.route("GET", "/orders/x", json={"id": "x"})
    for n in (0, 1, 9):
        service.route("GET", f"/slow/{n}", json={}, gate=gate)
    env = {"GQLBATCH_STORE__URL": redis_url, "GQLBATCH_LIMITS__MAX_OUTSTANDING_PER_CLIENT": "2"}
    alice = {"Authorization": "Bearer alice"}
    order = [{"id": "o", "method": "POST", "path": "/orders", "body": {"sku": "A"}}]
    async with (
        gqlbatch_server("serve", "--upstream", upstream_url, printing=SERVING, env=env) as (a, _),
        gqlbatch_server("serve", "--upstream", upstream_url, printing=SERVING, env=env) as (b, _),
        aiohttp.ClientSession() as http,
    ):
        key = {**alice, "Idempotency-Key": "order-1"}
        async with http.post(a + "/batch", json=order, headers=key) as first:
            assert (first.status, (await first.json())[0]["status"]) == (200, 201)
        async with http.post(b + "/batch", json=order, headers=key) as again:
            assert again.headers["Idempotent-Replayed"] == "true"
            assert (await again.json())[0]["body"] == {"id": 1}
        assert service.lines == ["POST /orders"]  # sent once, whichever process was asked

        # Alice's limit is 2 calls in flight, over both processes: two held on one...
        slow = [{"path": f"/slow/{n}"} for n in range(2)]
        held = asyncio.create_task(http.post(a + "/batch", json=slow, headers=alice))
        await service.received(3)
        # ...and the other refuses her next batch whole, before sending anything.
        async with http.post(b + "/batch", json=[{"path": "/slow/9"}], headers=alice) as refused:
            assert refused.status == 429
            assert (await refused.json())["error"]["code"] == "TOO_MANY_REQUESTS"
        gate.set()
        async with await held as done:
            assert done.status == 200

        # A job submitted through one process is read, and cancelled, through the other.
        slow = [{"id": "fast", "path": "/orders/x"}, {"id": "slow", "path": "/slow/1"}]
        gate.clear()
        async with http.post(
            a + "/batch", json=slow, headers={**alice, "Prefer": "respond-async"}
        ) as accepted:
            location = accepted.headers["Location"]
        while True:  # each read goes through process b
            async with http.get(b + location, headers=alice) as read:
                job = await read.json()
            if job["progress"]["done"] == 1:
                break
        assert job["state"] == "RUNNING" and job["responses"][0]["id"] == "fast"
        async with http.delete(b + location, headers=alice) as cancelled:
            assert (await cancelled.json())["state"] == "CANCELLED"
        async with http.get(a + location, headers=alice) as read:
            assert (await read.json())["state"] == "CANCELLED"
        gate.set()
