"""The shared store under the faults Redis has in production (issue 25): a real
redis-server killed (SIGKILL), paused (SIGSTOP) and restarted with its append-only file, in
front of a real upstream that counts the writes it received.

Before anything is sent, a store that does not answer refuses the batch whole
(STORE_UNAVAILABLE, 503 with Retry-After) and nothing reaches the upstream. After something
was sent, the client gets its results, and what the store could not record is written when
it answers again: an idempotency outcome (a resend replays it, the write is sent once), a
job's results and its end (a job whose items settled ends SUCCEEDED).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.fakes import FakeService
from tests.processes import SERVING, gqlbatch_server
from tests.redis_server import RedisProcess, redis_process

ORDER = [{"id": "o", "method": "POST", "path": "/orders", "body": {"sku": "A"}}]
ORDER_MUTATION = (
    'mutation { batch(requests: [{requestId: "o", method: POST, path: "/orders"}]) '
    "{ items { status } } }"
)
ALICE = {"Authorization": "Bearer alice"}
_BACK_S = 10.0
"""The most a resend may wait, from Redis's return, for its answer (issue 25)."""


@pytest.fixture
def hurt() -> Iterator[RedisProcess]:
    """A redis-server of this test's own, with AOF: the test kills, pauses and restarts it."""
    with redis_process(aof=True) as redis:
        yield redis


@pytest.fixture
async def on_store(make_gateway: Any, upstream_url: str, hurt: RedisProcess) -> TestClient:
    return await make_gateway(upstream_url, store_url=hurt.url, jobs_heartbeat_s=1)


@contextlib.asynccontextmanager
async def paused(redis: RedisProcess) -> AsyncIterator[None]:
    redis.pause()
    try:
        yield
    finally:
        redis.resume()


async def restarted(redis: RedisProcess) -> None:
    await asyncio.to_thread(redis.start)  # it loads its AOF first: off this loop


async def test_a_dead_store_refuses_the_batch_whole_and_sends_nothing(
    on_store: TestClient, service: FakeService, hurt: RedisProcess
) -> None:
    service.route("POST", "/orders", status=201, json={"id": 1})
    hurt.kill()
    resp = await on_store.post("/batch", json=ORDER, headers=ALICE)
    assert resp.status == 503, await resp.text()
    assert resp.headers["Retry-After"] == "1"
    assert (await resp.json())["error"]["code"] == "STORE_UNAVAILABLE"
    # The GraphQL door: the same code, in the error of a batch that is null.
    resp = await on_store.post("/graphql", json={"query": ORDER_MUTATION}, headers=ALICE)
    answer = await resp.json()
    assert answer["data"] == {"batch": None}
    assert answer["errors"][0]["extensions"]["code"] == "STORE_UNAVAILABLE"
    assert answer["errors"][0]["extensions"]["retryAfter"] == 1
    # An async batch is not accepted either: no job exists that nobody can read.
    resp = await on_store.post("/batch", json=ORDER, headers={**ALICE, "Prefer": "respond-async"})
    assert (resp.status, (await resp.json())["error"]["code"]) == (503, "STORE_UNAVAILABLE")
    ready = await on_store.get("/readyz")
    assert ready.status == 503 and (await ready.json())["store"].startswith("failing")
    assert service.calls == []  # nothing was sent

    await restarted(hurt)
    resp = await on_store.post("/batch", json=ORDER, headers=ALICE)
    assert resp.status == 200 and (await resp.json())[0]["status"] == 201
    assert service.lines == ["POST /orders"]


async def test_a_paused_store_refuses_in_seconds_not_never(
    on_store: TestClient, service: FakeService, hurt: RedisProcess
) -> None:
    service.route("POST", "/orders", status=201, json={"id": 1})
    async with paused(hurt):
        resp = await on_store.post("/batch", json=ORDER, headers=ALICE)
        assert (resp.status, (await resp.json())["error"]["code"]) == (503, "STORE_UNAVAILABLE")
    assert service.calls == []
    resp = await on_store.post("/batch", json=ORDER, headers=ALICE)
    assert resp.status == 200


async def test_a_write_that_ran_is_answered_and_replayed_after_a_restart(
    make_gateway: Any, upstream_url: str, service: FakeService, hurt: RedisProcess
) -> None:
    # Redis dies while a keyed write is at the upstream. The client still gets the write's
    # result; Redis restarts from its AOF; a resend through another process is a replay,
    # within 10 s of Redis's return; the upstream got the write once.
    gate = asyncio.Event()
    service.route("POST", "/orders", status=201, json={"id": 7}, gate=gate)
    first = await make_gateway(upstream_url, store_url=hurt.url)
    other = await make_gateway(upstream_url, store_url=hurt.url)
    keyed = {**ALICE, "Idempotency-Key": "order-7"}
    sent = asyncio.create_task(first.post("/batch", json=ORDER, headers=keyed))
    await service.received(1)
    hurt.kill()
    gate.set()
    resp = await sent
    assert resp.status == 200, await resp.text()
    answer = (await resp.json())[0]
    assert (answer["state"], answer["status"], answer["body"]) == ("SUCCEEDED", 201, {"id": 7})

    await restarted(hurt)
    back = time.monotonic()
    while True:  # bounded: a resend is a replay, or a documented "send it again", in time
        again = await other.post("/batch", json=ORDER, headers=keyed)
        if again.status == 200:
            break
        assert again.status == 429, await again.text()
        assert time.monotonic() - back < _BACK_S
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await again.json())[0]["body"] == {"id": 7}
    assert service.lines == ["POST /orders"]


async def test_a_key_starts_one_job_however_often_it_is_sent(
    on_store: TestClient, service: FakeService
) -> None:
    service.route("POST", "/orders", status=201, json={"id": 1})
    keyed = {**ALICE, "Idempotency-Key": "import-1", "Prefer": "respond-async"}
    locations = []
    for _ in range(2):
        resp = await on_store.post("/batch", json=ORDER, headers=keyed)
        assert resp.status == 202, await resp.text()
        locations.append(resp.headers["Location"])
    assert locations[0] == locations[1]
    job = await _finished(on_store, locations[0])
    assert job["state"] == "SUCCEEDED"
    # The same key sent without respond-async replays the job's batch.
    resp = await on_store.post(
        "/batch", json=ORDER, headers={**ALICE, "Idempotency-Key": "import-1"}
    )
    assert resp.headers["Idempotent-Replayed"] == "true"
    # Another batch under the key is refused, as a sync one is.
    other = [{**ORDER[0], "body": {"sku": "B"}}]
    resp = await on_store.post("/batch", json=other, headers=keyed)
    assert (resp.status, (await resp.json())["error"]["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")
    assert service.lines == ["POST /orders"]


async def _finished(client: TestClient, location: str) -> dict[str, Any]:
    for _ in range(400):  # bounded: each read waits for the job's next change, or 50 ms
        job = await (await client.get(location, headers=ALICE)).json()
        if job["state"] != "RUNNING":
            return dict(job)
        await asyncio.sleep(0.05)
    raise AssertionError(f"the job did not end: {job}")


async def test_a_job_whose_items_settled_during_a_pause_succeeds(
    on_store: TestClient, service: FakeService, hurt: RedisProcess
) -> None:
    # Issue 25: jobs whose items all succeeded ended FAILED after a 10 s pause of Redis. The
    # pause here outlasts the job's lease (jobs_heartbeat_s = 1).
    gate = asyncio.Event()
    service.route("POST", "/orders", status=201, json={"id": 1}, gate=gate)
    resp = await on_store.post("/batch", json=ORDER, headers={**ALICE, "Prefer": "respond-async"})
    location = resp.headers["Location"]
    await service.received(1)
    async with paused(hurt):
        gate.set()
        await asyncio.sleep(1.5)  # the fault's length (past the 1 s lease), not a wait
    job = await _finished(on_store, location)
    assert (job["state"], job["responses"][0]["status"]) == ("SUCCEEDED", 201)
    assert service.lines == ["POST /orders"]


async def test_no_place_is_held_once_the_load_ends(
    make_gateway: Any, upstream_url: str, service: FakeService, hurt: RedisProcess
) -> None:
    from redis.asyncio import Redis

    service.route("GET", "/items", json=[])
    gateways = [await make_gateway(upstream_url, store_url=hurt.url) for _ in range(2)]
    batch = [{"id": f"i{n}", "path": "/items", "query": {"n": str(n)}} for n in range(20)]
    sends = [
        g.post("/batch", json=batch, headers={"Authorization": f"Bearer c{n}"})
        for n in range(16)
        for g in gateways
    ]
    for resp in await asyncio.gather(*sends):
        assert resp.status == 200, await resp.text()
    redis = Redis.from_url(hurt.url)
    try:
        held = {
            key: await redis.zcard(key)
            async for key in redis.scan_iter("gqlbatch:held:*")
            if not key.endswith(b":n")  # each key's counts, beside its leases
        }
    finally:
        await redis.aclose()
    assert sum(held.values()) == 0, held


async def test_a_server_started_without_its_store_serves_and_says_so_once(
    service: FakeService, upstream_url: str
) -> None:
    # Issue 25: Redis down at start gave tracebacks in the log and 500 for every request.
    # The server starts, says once that the store does not answer, refuses batches with
    # STORE_UNAVAILABLE and reports not ready, until Redis comes; then it serves.
    service.route("POST", "/orders", status=201, json={"id": 1})
    with tempfile.TemporaryDirectory() as workdir:
        redis = RedisProcess(workdir, aof=False)  # not started yet
        log: collections.deque[bytes] = collections.deque()
        env = {"GQLBATCH_STORE__URL": redis.url}
        args = ("serve", "--upstream", upstream_url)
        async with (
            gqlbatch_server(*args, printing=SERVING, env=env, log=log) as (url, _),
            aiohttp.ClientSession() as http,
        ):
            async with http.get(url + "/readyz") as ready:
                assert ready.status == 503
                assert (await ready.json())["store"].startswith("failing")
            for _ in range(3):
                async with http.post(url + "/batch", json=ORDER, headers=ALICE) as refused:
                    assert refused.status == 503
                    assert (await refused.json())["error"]["code"] == "STORE_UNAVAILABLE"
            await asyncio.to_thread(redis.start)
            try:
                for _ in range(100):  # bounded: readiness is checked at most once a second
                    async with http.get(url + "/readyz") as ready:
                        if ready.status == 200:
                            break
                    await asyncio.sleep(0.1)
                async with http.post(url + "/batch", json=ORDER, headers=ALICE) as served:
                    assert served.status == 200
                text = b"".join(log).decode()  # before the end, which stops Redis first
            finally:
                redis.stop()
    assert "Traceback" not in text, text
    assert text.count("the shared store does not answer") == 1, text
    assert service.lines == ["POST /orders"]


async def test_persisted_queries_without_their_store(
    make_gateway: Any, upstream_url: str, hurt: RedisProcess
) -> None:
    # A hash alone is refused for now (STORE_UNAVAILABLE, nothing ran); a document sent with
    # its hash runs, unregistered; once Redis is back, it is registered as ever.
    gateway = await make_gateway(upstream_url, store_url=hurt.url, persisted_queries=True)
    query = "{ __typename }"
    extensions = {
        "persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(query.encode()).hexdigest()}
    }
    hurt.kill()
    alone = await (await gateway.post("/graphql", json={"extensions": extensions})).json()
    assert alone["errors"][0]["extensions"]["code"] == "STORE_UNAVAILABLE"
    sent = {"query": query, "extensions": extensions}
    assert (await (await gateway.post("/graphql", json=sent)).json())["data"] == {
        "__typename": "Query"
    }
    await restarted(hurt)
    assert (await (await gateway.post("/graphql", json=sent)).json())["data"]
    alone = await (await gateway.post("/graphql", json={"extensions": extensions})).json()
    assert alone["data"] == {"__typename": "Query"}


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "redis"])
async def test_submit_batch_with_a_key_starts_one_job(
    shared: bool, make_gateway: Any, upstream_url: str, service: FakeService, hurt: RedisProcess
) -> None:
    # Issue 25: on the store, a key sent twice with submitBatch made two POSTs upstream; in
    # memory, one. Now one job, in either.
    service.route("POST", "/orders", status=201, json={"id": 1})
    gateway = await make_gateway(upstream_url, **({"store_url": hurt.url} if shared else {}))
    mutation = (
        'mutation { submitBatch(requests: [{requestId: "o", method: POST, path: "/orders"}]) '
        "{ id } }"
    )
    keyed = {**ALICE, "Idempotency-Key": "import-2"}
    ids = set()
    for _ in range(2):
        answer = await (
            await gateway.post("/graphql", json={"query": mutation}, headers=keyed)
        ).json()
        ids.add(answer["data"]["submitBatch"]["id"])
    [job_id] = ids
    read = f'{{ batchJob(id: "{job_id}") {{ state }} }}'
    for _ in range(400):  # bounded: until the job has ended
        answer = await (await gateway.post("/graphql", json={"query": read}, headers=ALICE)).json()
        if answer["data"]["batchJob"]["state"] != "RUNNING":
            break
        await asyncio.sleep(0.05)
    assert answer["data"]["batchJob"]["state"] == "SUCCEEDED"
    assert service.lines == ["POST /orders"]
