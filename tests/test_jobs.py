"""Async batches: accepted at once, read while they run and after, cancelled, kept for a while,
and only ever shown to the client that submitted them."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gqlbatch import Settings
from gqlbatch.core.errors import BatchRejected, ErrorCode
from gqlbatch.core.result import ItemResult, State
from gqlbatch.execution.context import BatchContext
from gqlbatch.execution.job_store import Job, JobSpec, JobState, MemoryJobStore
from gqlbatch.execution.jobs import Jobs
from gqlbatch.upstreams.client import UpstreamClient
from tests.conftest import graphql_caller
from tests.fakes import FakeService

ALICE = {"Authorization": "Bearer alice"}
ASYNC = {**ALICE, "Prefer": "respond-async"}
ITEMS = [{"id": "fast", "path": "/fast"}, {"id": "slow", "path": "/slow"}]


async def read_until(client: TestClient, location: str, done: int, state: str) -> Any:
    """GET the job until it has *done* results and *state*: each read is a request through
    the gateway, and the wait is bounded by the test's timeout, not by a timer."""
    while True:
        job = await (await client.get(location, headers=ALICE)).json()
        if job["progress"]["done"] == done and job["state"] == state:
            return job


@pytest.fixture
def gate(service: FakeService) -> asyncio.Event:
    gate = asyncio.Event()
    service.route("GET", "/fast", json={"n": 1})
    service.route("GET", "/slow", json={"n": 2}, gate=gate)
    return gate


async def test_respond_async_answers_202_then_the_results_so_far(
    gateway: TestClient, service: FakeService, gate: asyncio.Event
) -> None:
    resp = await gateway.post("/batch", json={"requests": ITEMS}, headers=ASYNC)
    assert resp.status == 202
    assert resp.headers["Retry-After"] == "1"
    location = resp.headers["Location"]
    job = await resp.json()
    assert location == f"/batch/jobs/{job['id']}" and job["state"] == "RUNNING"
    await service.received(2)  # both calls are out; the slow one is held
    running = await read_until(gateway, location, 1, "RUNNING")
    assert running["progress"] == {"done": 1, "total": 2}
    assert [r["id"] for r in running["responses"]] == ["fast"]
    gate.set()
    done = await read_until(gateway, location, 2, "SUCCEEDED")
    assert [(r["id"], r["body"]) for r in done["responses"]] == [
        ("fast", {"n": 1}),
        ("slow", {"n": 2}),
    ]
    assert done["stats"]["upstreamCalls"] == 2
    # Another client's credentials find nothing there, as with an unknown id.
    other = await gateway.get(location, headers={"Authorization": "Bearer mallory"})
    assert (other.status, (await other.json())["error"]["code"]) == (404, "JOB_NOT_FOUND")
    assert (await gateway.get("/batch/jobs/nope", headers=ALICE)).status == 404


async def test_a_job_is_cancelled_and_keeps_what_finished(
    gateway: TestClient, service: FakeService, gate: asyncio.Event
) -> None:
    resp = await gateway.post("/$batch", json=ITEMS, headers=ASYNC)
    location = resp.headers["Location"]
    assert location.startswith("/$batch/jobs/")
    await service.received(2)
    await read_until(gateway, location, 1, "RUNNING")
    cancelled = await (await gateway.delete(location, headers=ALICE)).json()
    assert cancelled["state"] == "CANCELLED"
    assert [r["id"] for r in cancelled["responses"]] == ["fast"]
    gate.set()
    again = await (await gateway.get(location, headers=ALICE)).json()
    assert again["state"] == "CANCELLED"


async def test_an_invalid_async_batch_is_refused_at_once(
    gateway: TestClient, service: FakeService
) -> None:
    resp = await gateway.post("/batch", json=[{"path": "//evil"}], headers=ASYNC)
    assert resp.status == 400 and "Location" not in resp.headers
    assert service.calls == []


async def test_submit_batch_and_batch_job_over_graphql(
    gateway: TestClient, service: FakeService, gate: asyncio.Event
) -> None:
    graphql = graphql_caller(gateway)
    submitted = await graphql(
        """mutation { submitBatch(requests: [{requestId: "fast", path: "/fast"},
                                             {requestId: "slow", path: "/slow"}]) {
             id state progress { done total } } }""",
        headers=ALICE,
    )
    job = submitted["data"]["submitBatch"]
    assert (job["state"], job["progress"]) == ("RUNNING", {"done": 0, "total": 2})
    read = """query($id: ID!) { batchJob(id: $id) {
        state progress { done } items { requestId status } stats { upstreamCalls } } }"""
    await service.received(2)
    gate.set()
    await read_until(gateway, f"/batch/jobs/{job['id']}", 2, "SUCCEEDED")
    done = (await graphql(read, {"id": job["id"]}, headers=ALICE))["data"]["batchJob"]
    assert done == {
        "state": "SUCCEEDED",
        "progress": {"done": 2},
        "items": [{"requestId": "fast", "status": 200}, {"requestId": "slow", "status": 200}],
        "stats": {"upstreamCalls": 2},
    }
    mallory = await graphql(read, {"id": job["id"]}, headers={"Authorization": "Bearer m"})
    assert mallory["data"]["batchJob"] is None


def test_finished_jobs_expire_and_the_count_is_bounded() -> None:
    now = [0.0]
    store = MemoryJobStore(ttl_s=10, max_jobs=1, clock=lambda: now[0])
    jobs = Jobs(store, ttl_s=10, max_jobs=1)

    async def scenario() -> None:
        from gqlbatch import Settings
        from gqlbatch.core.wire import UpstreamCall, UpstreamResponse
        from gqlbatch.execution.context import BatchContext

        async def send(_call: UpstreamCall) -> UpstreamResponse:
            return UpstreamResponse(200, (), {"ok": True})

        ctx = BatchContext(Settings.from_upstream_urls(["http://127.0.0.1:9"]), send)
        job = await jobs.submit([{"path": "/a"}], None, ctx)
        with pytest.raises(BatchRejected) as full:
            await jobs.submit([{"path": "/a"}], None, ctx)
        assert full.value.code is ErrorCode.TOO_MANY_REQUESTS
        events = [e async for e in jobs.follow(job.id, ctx.client)]
        assert events[-1].state is JobState.SUCCEEDED  # type: ignore[union-attr]
        now[0] = 11.0  # past jobs.ttl_s after it finished
        with pytest.raises(BatchRejected) as gone:
            await jobs.get(job.id, ctx.client)
        assert gone.value.code is ErrorCode.JOB_NOT_FOUND
        assert len(store) == 0

    asyncio.run(scenario())


async def test_a_subscription_follows_a_job_to_its_end(
    upstream_url: str, service: FakeService, gate: asyncio.Event
) -> None:
    from gql import Client, GraphQLRequest
    from gql.transport.aiohttp_websockets import AIOHTTPWebsocketsTransport

    from gqlbatch import Settings, create_app, running

    follow = """subscription($id: ID!) { batchJob(id: $id) {
        __typename
        ... on ItemResult { requestId }
        ... on BatchJob { state progress { done total } } } }"""
    async with running(create_app(Settings.from_upstream_urls([upstream_url]))) as url:
        import aiohttp

        async with (
            aiohttp.ClientSession() as http,
            http.post(url + "/batch", json=ITEMS, headers=ASYNC) as resp,
        ):
            job_id = (await resp.json())["id"]
        transport = AIOHTTPWebsocketsTransport(
            url=url.replace("http://", "ws://") + "/graphql", headers=ALICE
        )
        events = []
        async with Client(transport=transport) as session:
            request = GraphQLRequest(follow, variable_values={"id": job_id})
            async for event in session.subscribe(request):
                events.append(event["batchJob"])
                if len(events) == 1:
                    assert not gate.is_set()  # the fast item, while the slow one is held
                    gate.set()
    assert events == [
        {"__typename": "Succeeded", "requestId": "fast"},
        {"__typename": "Succeeded", "requestId": "slow"},
        {"__typename": "BatchJob", "state": "SUCCEEDED", "progress": {"done": 2, "total": 2}},
    ]


# --------------------------------------------------------------------------------------------
# Resuming: a job that another process ran, in part, before it stopped


@pytest.fixture
async def upstream(upstream_url: str) -> AsyncIterator[BatchContext]:
    """The context a worker gives a job: the pooled client in front of the fake service."""
    settings = Settings.from_upstream_urls([upstream_url])
    client = UpstreamClient(settings)
    yield BatchContext(settings, client.send)
    await client.close()


def a_job(items: list[dict[str, Any]]) -> Job:
    spec = JobSpec(items, None, {}, "addr:test", "req-1")
    return Job("job-1", "anonymous", len(items), spec=spec)


async def test_a_resumed_job_runs_only_what_its_dead_run_left(
    service: FakeService, upstream: BatchContext
) -> None:
    for path in ("/a", "/b"):
        service.route("GET", path, json={"n": path})
    for path in ("/w", "/k"):
        service.route("POST", path, status=201, json={"n": path})
    store = MemoryJobStore(ttl_s=60, max_jobs=10)
    job = a_job(
        [
            {"requestId": "a", "path": "/a"},
            {"requestId": "w", "method": "POST", "path": "/w"},
            {"requestId": "k", "method": "POST", "path": "/k", "idempotencyKey": "k-1"},
            {"requestId": "b", "path": "/b", "dependsOn": ["w"]},
        ]
    )
    await store.add(job)
    # The dead run: `a` settled; w and k were sent, and never answered.
    await store.record(job.id, ItemResult(request_id="a", index=0, state=State.SUCCEEDED))
    await store.mark_started(job.id, 1)
    await store.mark_started(job.id, 2)

    await Jobs(store, ttl_s=60, max_jobs=10).run(job.id, lambda _: upstream)

    done = await store.get(job.id)
    assert done is not None and done.state is JobState.SUCCEEDED
    states = {r.request_id: (r.state, r.error and r.error.code) for r in done.unpacked().items()}
    assert states == {
        "a": (State.SUCCEEDED, None),  # kept, not run again
        "w": (State.FAILED, ErrorCode.OUTCOME_UNKNOWN),  # not sent blindly
        "k": (State.SUCCEEDED, None),  # sent again, with its key
        "b": (State.SKIPPED, ErrorCode.FAILED_DEPENDENCY),
    }
    assert service.lines == ["POST /k"]
    assert service.calls[0].headers["Idempotency-Key"] == "k-1"


async def test_a_job_delivered_twice_runs_once(
    service: FakeService, upstream: BatchContext
) -> None:
    gate = asyncio.Event()
    service.route("POST", "/w", status=201, json={}, gate=gate)
    store = RefusalsSeen(ttl_s=60, max_jobs=10)
    job = a_job([{"requestId": "w", "method": "POST", "path": "/w"}])
    await store.add(job)
    jobs = Jobs(store, ttl_s=60, max_jobs=10)
    first = asyncio.create_task(jobs.run(job.id, lambda _: upstream))
    await service.received(1)  # the first run holds the lease, and the write is out
    second = asyncio.create_task(jobs.run(job.id, lambda _: upstream))
    await store.refused.wait()  # the second delivery found the lease taken
    gate.set()
    await asyncio.gather(first, second)
    assert service.lines == ["POST /w"]  # the second found the job finished
    finished = await store.get(job.id)
    assert finished is not None and finished.state is JobState.SUCCEEDED


class RefusalsSeen(MemoryJobStore):
    """The memory store, telling when a runner was refused the lease."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.refused = asyncio.Event()

    async def take(self, job_id: str, runner: str, lease_ms: int) -> int | None:
        run = await super().take(job_id, runner, lease_ms)
        if run is None:
            self.refused.set()
        return run


async def test_a_job_that_keeps_killing_its_workers_fails(upstream: BatchContext) -> None:
    now = [0.0]
    store = MemoryJobStore(ttl_s=60, max_jobs=10, clock=lambda: now[0])
    job = a_job([{"requestId": "a", "path": "/a"}])
    await store.add(job)
    for dead in ("r1", "r2"):  # two runs whose processes died: their leases lapse
        assert await store.take(job.id, dead, lease_ms=1000) is not None
        now[0] += 2
    jobs = Jobs(store, ttl_s=60, max_jobs=10, attempts=2)
    await jobs.run(job.id, lambda _: upstream)
    failed = await store.get(job.id)
    assert failed is not None and failed.state is JobState.FAILED
    assert failed.error is not None and "stopped 2 times" in failed.error


# --------------------------------------------------------------------------------------------
# Issue 24: followers share one reader, and every client is held to its own quotas


class CountedReads(MemoryJobStore):
    """The memory store, counting its reads."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reads: dict[str, int] = {"get": 0, "changes": 0}

    async def get(self, job_id: str) -> Job | None:
        self.reads["get"] += 1
        return await super().get(job_id)

    async def changes(self, job_id: str, since: int) -> Any:
        self.reads["changes"] += 1
        return await super().changes(job_id, since)


@pytest.fixture
async def contexts(upstream_url: str) -> AsyncIterator[Any]:
    """Contexts of the fake service's clients, by name, over one pooled upstream client."""
    settings = Settings.from_upstream_urls([upstream_url])
    pooled = UpstreamClient(settings)
    yield lambda client="anonymous": BatchContext(settings, pooled.send, client=client)
    await pooled.close()


ENGINE_ITEMS = [{"requestId": "fast", "path": "/fast"}, {"requestId": "slow", "path": "/slow"}]


async def test_followers_of_a_job_share_one_reader(contexts: Any, service: FakeService) -> None:
    # Issue 24, finding 2: 2,000 followers each re-read the whole job on every change, and
    # held the loop 46 s. Now the reads of the store do not grow with the followers.
    gates = [asyncio.Event() for _ in range(5)]
    for n, gate in enumerate(gates):
        service.route("GET", f"/i{n}", json={"n": n}, gate=gate)
    store = CountedReads(ttl_s=60, max_jobs=10)
    jobs = Jobs(store, ttl_s=60, max_jobs=10)
    items = [{"requestId": f"i{n}", "path": f"/i{n}"} for n in range(5)]
    job = await jobs.submit(items, None, contexts())
    await service.received(5)

    async def follow() -> list[str]:
        return [
            getattr(event, "request_id", None) or event.state.value  # type: ignore[union-attr]
            async for event in jobs.follow(job.id, "anonymous")
        ]

    followers = [asyncio.create_task(follow()) for _ in range(20)]
    await asyncio.sleep(0)  # a turn of the loop: every follower joins before anything settles
    for gate in gates:
        gate.set()
    for seen in await asyncio.gather(*followers):
        assert sorted(seen[:-1]) == ["i0", "i1", "i2", "i3", "i4"] and seen[-1] == "SUCCEEDED"
    # One opening read, one per change (five results and the end), one read of the final
    # job, and the run's own: never one per follower.
    assert store.reads["get"] <= 3
    assert store.reads["changes"] <= 8


async def test_followers_per_job_and_per_client_are_bounded(
    contexts: Any, gate: asyncio.Event
) -> None:
    jobs = Jobs(
        MemoryJobStore(ttl_s=60, max_jobs=10),
        ttl_s=60,
        max_jobs=10,
        max_followers=2,
        max_followers_per_client=3,
    )
    alice, bob = contexts("alice"), contexts("bob")
    first = await jobs.submit(ENGINE_ITEMS, None, alice)
    second = await jobs.submit(ENGINE_ITEMS, None, alice)
    theirs = await jobs.submit(ENGINE_ITEMS, None, bob)
    held = [jobs.follow(first.id, "alice") for _ in range(2)]
    for follower in held:
        await anext(follower)  # following; the slow item is held by the gate
    with pytest.raises(BatchRejected) as per_job:
        await anext(jobs.follow(first.id, "alice"))
    assert per_job.value.code is ErrorCode.TOO_MANY_REQUESTS
    assert "jobs.max_followers 2" in str(per_job.value)
    third = jobs.follow(second.id, "alice")
    await anext(third)
    with pytest.raises(BatchRejected) as per_client:
        await anext(jobs.follow(second.id, "alice"))
    assert "jobs.max_followers_per_client 3" in str(per_client.value)
    others = jobs.follow(theirs.id, "bob")  # another client is never refused for alice
    await anext(others)
    for follower in [*held, third, others]:
        await follower.aclose()
    again = jobs.follow(first.id, "alice")  # those who left no longer count
    await anext(again)
    await again.aclose()
    gate.set()


async def test_one_client_cannot_fill_the_job_table(gateway_for_jobs: Any) -> None:
    # Issue 24, finding 6: one anonymous client filled the 10,000-job table in 24 s, and
    # everyone else's jobs were refused for a day. Each client now has its own share.
    client = gateway_for_jobs
    mallory = {"Authorization": "Bearer mallory", "Prefer": "respond-async"}
    batch = {"requests": [{"path": "/fast"}]}
    statuses = [(await client.post("/batch", json=batch, headers=mallory)).status for _ in range(3)]
    assert statuses == [202, 202, 429]
    refused = await client.post("/batch", json=batch, headers=mallory)
    error = (await refused.json())["error"]
    assert error["code"] == "TOO_MANY_REQUESTS" and "jobs.max_per_client" in error["message"]
    assert refused.headers["Retry-After"] == "1"
    assert (await client.post("/batch", json=batch, headers=ASYNC)).status == 202


@pytest.fixture
async def gateway_for_jobs(make_gateway: Any, upstream_url: str, service: FakeService) -> Any:
    service.route("GET", "/fast", json={"n": 1})
    return await make_gateway(upstream_url, jobs_max_per_client=2, jobs_max=100)


def test_a_finished_jobs_outcome_is_kept_compactly() -> None:
    from gqlbatch.core.result import BatchOutcome, BatchStats
    from gqlbatch.core.wire import BodyEncoding
    from gqlbatch.execution.job_store import pack, unpack

    rows = [{"id": n, "title": "a title that repeats", "userId": n % 7} for n in range(5_000)]
    result = ItemResult(
        request_id="r",
        index=0,
        state=State.SUCCEEDED,
        status=200,
        body=rows,
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
    outcome = BatchOutcome((result,), stats)
    packed = pack(outcome)
    import json

    assert packed.startswith("z:")
    assert len(packed) * 5 < len(json.dumps(rows))  # kept in a fifth of its JSON, or less
    assert unpack(packed) == outcome
    one = ItemResult(request_id="s", index=0, state=State.SUCCEEDED, status=200)
    small = BatchOutcome((one,), stats)
    assert not pack(small).startswith("z:") and unpack(pack(small)) == small


async def test_a_clients_finished_jobs_are_held_to_its_bytes(
    contexts: Any, service: FakeService
) -> None:
    # Issue 24, finding 7: 16 finished jobs took the process from 57 to 1,211 MiB, for a day.
    # Bodies of random text, which compression cannot shrink much: 30,000 characters each.
    blobs = [base64.b64encode(os.urandom(22_500)).decode() for _ in range(3)]
    for n, blob in enumerate(blobs):
        service.route("GET", f"/big{n}", json={"blob": blob})
    store = MemoryJobStore(ttl_s=60, max_jobs=10, max_bytes_per_client=50_000)
    jobs = Jobs(store, ttl_s=60, max_jobs=10, max_bytes_per_client=50_000)
    alice, bob = contexts("alice"), contexts("bob")

    async def finished(items: list[dict[str, Any]], ctx: BatchContext) -> Job:
        job = await jobs.submit(items, None, ctx)
        return [e async for e in jobs.follow(job.id, ctx.client)][-1]  # type: ignore[return-value]

    bobs = await finished([{"path": "/big0"}], bob)
    first = await finished([{"path": "/big0"}], alice)
    second = await finished([{"path": "/big1"}], alice)  # over 50,000: alice's oldest goes
    with pytest.raises(BatchRejected):
        await jobs.get(first.id, "alice")
    assert (await jobs.get(second.id, "alice")).items()[0].body == {"blob": blobs[1]}
    assert (await jobs.get(bobs.id, "bob")).state is JobState.SUCCEEDED  # bob's are his own
    # A job whose results alone are over the client's bytes keeps what each item became.
    huge = await finished([{"path": f"/big{n}"} for n in range(3)], alice)
    assert [r.status for r in huge.items()] == [200, 200, 200]
    assert [r.body for r in huge.items()] == [None, None, None]
    assert huge.error is not None and "jobs.max_bytes_per_client" in huge.error


async def test_submit_batch_aliases_share_their_requests_calls(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    # Issue 24, finding 5: 3 operations of 10 submitBatch aliases made 30 jobs and 27,232
    # upstream calls, from one request whose batch fields together may make 1,000.
    service.route("GET", "/list", json=[{"id": n} for n in range(300)])
    # Outstanding calls are not what this test is about: the jobs run at once.
    gateway = await make_gateway(upstream_url, max_fanout=1_000, max_outstanding_per_client=2_000)
    literal = "[" + ",".join(map(str, range(400))) + "]"
    fields = " ".join(
        f'j{n}: submitBatch(requests: [{{forEach: {literal}, path: "/x/{{item}}"}}]) {{ id }}'
        for n in range(3)
    )
    answer = await graphql_caller(gateway)(f"mutation {{ {fields} }}", headers=ALICE)
    jobs = [answer["data"][f"j{n}"] for n in range(3)]
    assert [job is not None for job in jobs] == [True, True, False]  # 400 + 400, then 200 left
    assert answer["errors"][0]["extensions"]["code"] == "BATCH_TOO_LARGE"
    # A forEach whose list is known only when it runs takes every call the request has left.
    dynamic = '{requestId: "l", path: "/list"}, {forEach: "{resultOf(l)[*].id}", path: "/x/{item}"}'
    two = " ".join(f"d{n}: submitBatch(requests: [{dynamic}]) {{ id }}" for n in range(2))
    answer = await graphql_caller(gateway)(f"mutation {{ {two} }}", headers=ALICE)
    assert answer["data"]["d0"] is not None and answer["data"]["d1"] is None
    for job, total in [(jobs[0], 1), (jobs[1], 1), (answer["data"]["d0"], 2)]:
        await read_until(gateway, f"/batch/jobs/{job['id']}", total, "SUCCEEDED")
    assert len(service.calls) == 2 * 400 + 1 + 300  # the two jobs', then the list and its 300


async def test_cancelling_an_atomic_job_undoes_what_it_did(
    gateway: TestClient, service: FakeService
) -> None:
    # Issue 24, finding 12: a DELETE of an atomic job after its POST succeeded sent no
    # compensation, and the job showed no responses at all.
    gate = asyncio.Event()
    service.route("POST", "/users", status=201, json={"id": 7})
    service.route("POST", "/audit", status=201, json={}, gate=gate)
    service.route("DELETE", "/users/7", status=204)
    service.route("DELETE", "/audit/1", status=204)
    batch = {
        "requests": [
            {
                "id": "user",
                "method": "POST",
                "url": "/users",
                "compensate": {"method": "DELETE", "path": "/users/{resultOf(user).id}"},
            },
            {
                "id": "audit",
                "method": "POST",
                "url": "/audit",
                "dependsOn": ["user"],
                "compensate": {"method": "DELETE", "path": "/audit/1"},
            },
        ],
        "atomic": True,
    }
    resp = await gateway.post("/batch", json=batch, headers=ASYNC)
    location = resp.headers["Location"]
    await service.received(2)  # the user is created; the audit write is in flight, held
    cancelled = await (await gateway.delete(location, headers=ALICE)).json()
    assert cancelled["state"] == "CANCELLED"
    gate.set()  # the write in flight finishes (never cut half-way), then the undo runs
    await service.received(4)
    # Undone whole, newest first: the audit finished after the cancel, and is undone too.
    assert service.lines == ["POST /users", "POST /audit", "DELETE /audit/1", "DELETE /users/7"]
    while True:  # until the run has kept what it did (each look is a request)
        job = await (await gateway.get(location, headers=ALICE)).json()
        if job["responses"] and all("rollback" in r for r in job["responses"]):
            break
    assert job["state"] == "CANCELLED"
    rollbacks = [r["rollback"]["state"] for r in job["responses"]]
    assert rollbacks == ["ROLLED_BACK", "ROLLED_BACK"]


async def test_several_processes_without_a_store_take_no_jobs(
    aiohttp_client: Any, upstream_url: str, service: FakeService
) -> None:
    # Issue 24, finding 17: with --workers 2 and no store, 17 of 30 job reads answered 404:
    # each job is kept by the worker that took it.
    from gqlbatch import create_app

    settings = Settings.from_upstream_urls([upstream_url])
    client = await aiohttp_client(create_app(settings, processes=2))
    resp = await client.post("/batch", json=[{"path": "/fast"}], headers=ASYNC)
    assert resp.status == 400
    assert "need a shared store" in (await resp.json())["error"]["message"]
    answer = await graphql_caller(client)(
        'mutation { submitBatch(requests: [{path: "/fast"}]) { id } }'
    )
    assert answer["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
    service.route("GET", "/fast", json={})
    assert (await client.post("/batch", json=[{"path": "/fast"}])).status == 200  # batches run
    assert service.lines == ["GET /fast"]


class TakesSeen(MemoryJobStore):
    """The memory store, noting each job a runner takes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.taken: list[str] = []

    async def take(self, job_id: str, runner: str, lease_ms: int) -> int | None:
        self.taken.append(job_id)
        return await super().take(job_id, runner, lease_ms)


async def test_a_clients_jobs_take_turns(contexts: Any, service: FakeService) -> None:
    # Issue 24, finding 7: a client's jobs all ran at once, each holding its answers (sixteen
    # of 30 MB took the process to 900 MiB). Past max_running_per_client, they wait.
    gate = asyncio.Event()
    service.route("GET", "/held", json={}, gate=gate)
    service.route("GET", "/free", json={})
    store = TakesSeen(ttl_s=60, max_jobs=10)
    jobs = Jobs(store, ttl_s=60, max_jobs=10, max_running_per_client=1)
    first = await jobs.submit([{"requestId": "h", "path": "/held"}], None, contexts("alice"))
    second = await jobs.submit([{"requestId": "f", "path": "/free"}], None, contexts("alice"))
    theirs = await jobs.submit([{"requestId": "f", "path": "/free"}], None, contexts("bob"))
    await service.received(2)  # alice's first, held; and bob's, which never waits for hers
    assert store.taken == [first.id, theirs.id]  # alice's second waits its turn
    gate.set()
    [e async for e in jobs.follow(second.id, "alice")]
    assert store.taken == [first.id, theirs.id, second.id]
    assert service.lines == ["GET /held", "GET /free", "GET /free"]


async def test_jobs_take_turns_past_max_running(contexts: Any, service: FakeService) -> None:
    # Past max_running, any client's job waits for a running one to finish.
    gate = asyncio.Event()
    service.route("GET", "/held", json={}, gate=gate)
    service.route("GET", "/free", json={})
    store = TakesSeen(ttl_s=60, max_jobs=10)
    jobs = Jobs(store, ttl_s=60, max_jobs=10, max_running=1)
    first = await jobs.submit([{"requestId": "h", "path": "/held"}], None, contexts("alice"))
    theirs = await jobs.submit([{"requestId": "f", "path": "/free"}], None, contexts("bob"))
    # Bob's task was started right after alice's, so without turns it would have taken its
    # job long before alice's call crossed the loopback socket.
    await service.received(1)
    assert store.taken == [first.id]  # bob's waits for alice's
    gate.set()
    [e async for e in jobs.follow(theirs.id, "bob")]
    assert store.taken == [first.id, theirs.id]
    assert service.lines == ["GET /held", "GET /free"]


def test_an_outcome_packed_whole_before_lines_is_read_still() -> None:
    # Outcomes were once packed as one JSON object; a store kept across the upgrade still
    # holds some, and they read as before.
    import json

    from gqlbatch.core.result import BatchOutcome, BatchStats, outcome_to_json
    from gqlbatch.execution.job_store import pack, unpack

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
    one = ItemResult(request_id="s", index=0, state=State.SUCCEEDED, status=200, body={"a": 1})
    outcome = BatchOutcome((one,), stats)
    assert unpack(json.dumps(outcome_to_json(outcome))) == outcome
    assert unpack(pack(outcome)) == outcome
