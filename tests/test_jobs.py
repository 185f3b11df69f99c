"""Async batches: accepted at once, read while they run and after, cancelled, kept for a while,
and only ever shown to the client that submitted them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gqlbatch import Settings
from gqlbatch.core.errors import BatchRejected, ErrorCode
from gqlbatch.core.result import ItemResult, State
from gqlbatch.execution.engine import BatchContext
from gqlbatch.execution.jobs import Job, Jobs, JobSpec, JobState, MemoryJobStore
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
        from gqlbatch.execution.engine import BatchContext

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
    states = {r.request_id: (r.state, r.error and r.error.code) for r in done.items()}
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
