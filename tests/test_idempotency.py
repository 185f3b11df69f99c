"""Idempotent batches: a repeat with the same Idempotency-Key never calls upstream again."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gqlbatch.core.errors import BatchRejected, ErrorCode
from gqlbatch.core.result import BatchOutcome, BatchStats
from gqlbatch.execution.idempotency import MemoryIdempotencyStore
from tests.conftest import graphql_caller
from tests.fakes import FakeService

EMPTY = BatchOutcome(
    (),
    BatchStats(
        sub_requests=0,
        calls_requested=0,
        upstream_calls=0,
        calls_saved=0,
        saved_by_dedupe=0,
        saved_by_bulk=0,
        wall_ms=0,
        critical_path_ms=0,
    ),
)
ORDER = [{"id": "order", "method": "POST", "path": "/orders", "body": {"sku": "A-1"}}]


async def post(client: TestClient, body: Any, key: str | None, auth: str = "alice") -> Any:
    headers = {"Authorization": auth}
    if key:
        headers["Idempotency-Key"] = key
    return await client.post("/batch", json=body, headers=headers)


async def test_a_repeat_returns_the_stored_result_without_calling_upstream(
    service: FakeService, gateway: TestClient
) -> None:
    service.route("POST", "/orders", status=201, json={"id": 1})
    first = await post(gateway, ORDER, "key-1")
    again = await post(gateway, ORDER, "key-1")
    assert (first.status, again.status) == (200, 200)
    assert await first.json() == await again.json()
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert service.lines == ["POST /orders"]


async def test_the_same_key_for_a_different_batch_is_refused(
    service: FakeService, gateway: TestClient
) -> None:
    service.route("POST", "/orders", status=201, json={"id": 1})
    await post(gateway, ORDER, "key-2")
    other = [{**ORDER[0], "body": {"sku": "B-2"}}]
    resp = await post(gateway, other, "key-2")
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert len(service.calls) == 1


async def test_keys_are_per_client(service: FakeService, gateway: TestClient) -> None:
    service.route("POST", "/orders", status=201, json={"id": 1})
    await post(gateway, ORDER, "shared", auth="alice")
    resp = await post(gateway, ORDER, "shared", auth="bob")
    assert "Idempotent-Replayed" not in resp.headers
    assert len(service.calls) == 2


async def test_a_refused_batch_is_not_recorded(service: FakeService, gateway: TestClient) -> None:
    service.route("POST", "/orders", status=201, json={"id": 1})
    bad = await post(gateway, [{"path": "nope"}], "key-3")
    assert bad.status == 400
    good = await post(gateway, ORDER, "key-3")
    assert good.status == 200 and "Idempotent-Replayed" not in good.headers


async def test_an_invalid_key_is_refused(gateway: TestClient) -> None:
    resp = await post(gateway, ORDER, "bad key with spaces")
    assert resp.status == 400
    assert (await resp.json())["error"]["problems"][0]["field"] == "Idempotency-Key"


async def test_retry_after_a_dropped_connection_posts_exactly_once(
    service: FakeService, gateway: TestClient
) -> None:
    # The client sends the batch, the upstream receives the POST, and the client's connection
    # drops before any answer. It retries with the same key: the retry waits for the first run
    # and gets its result, and the upstream has seen one POST.
    gate = asyncio.Event()
    service.route("POST", "/orders", gate=gate, status=201, json={"id": 7})
    body = json.dumps(ORDER).encode()
    _, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(
        b"POST /batch HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        b"Authorization: alice\r\nIdempotency-Key: key-drop\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    await service.received()
    writer.transport.abort()  # the connection drops after the upstream got the POST

    # Had the retry run the batch again, its POST would reach the upstream too (the gate holds
    # both until it opens): the single POST below is what proves it waited instead.
    retry = asyncio.create_task(post(gateway, ORDER, "key-drop"))
    gate.set()
    resp = await retry
    assert resp.headers["Idempotent-Replayed"] == "true"
    assert (await resp.json())[0]["status"] == 201
    assert service.lines == ["POST /orders"]


async def test_graphql_door_replays_too_and_says_so(
    service: FakeService, gateway: TestClient
) -> None:
    service.route("POST", "/orders", status=201, json={"id": 1})
    query = """mutation { a: batch(requests: [{method: POST, path: "/orders"}]) { replayed }
                          b: batch(requests: [{method: POST, path: "/orders"}]) { replayed } }"""
    headers = {"Idempotency-Key": "gql-1", "Authorization": "alice"}
    first = await graphql_caller(gateway)(query, headers=headers)
    again = await graphql_caller(gateway)(query, headers=headers)
    assert first["data"] == {"a": {"replayed": False}, "b": {"replayed": False}}
    assert again["data"] == {"a": {"replayed": True}, "b": {"replayed": True}}
    assert len(service.calls) == 2  # one per alias: each batch of the document has its own slot


async def test_records_expire_after_their_ttl() -> None:
    now = [0.0]
    store = MemoryIdempotencyStore(ttl_s=10, clock=lambda: now[0])
    runs = []

    async def run() -> BatchOutcome:
        runs.append(1)
        return EMPTY

    await store.run_once("k", "f", run)
    assert (await store.run_once("k", "f", run)).replayed
    now[0] = 11.0
    assert not (await store.run_once("k", "f", run)).replayed
    assert len(runs) == 2


@pytest.mark.parametrize("key", ["x" * 256, "tab\there", "é"])
async def test_key_format(key: str, gateway: TestClient) -> None:
    resp = await gateway.post(
        "/batch", json=ORDER, headers={"Idempotency-Key": key.encode().decode("latin-1")}
    )
    assert resp.status == 400


async def test_records_are_capped_and_the_oldest_go_first() -> None:
    store = MemoryIdempotencyStore(ttl_s=3600, max_records=3)

    async def run() -> BatchOutcome:
        return EMPTY

    for n in range(5):
        await store.run_once(f"k{n}", "f", run)
    assert len(store) == 3
    assert (await store.run_once("k4", "f", run)).replayed
    assert not (await store.run_once("k0", "f", run)).replayed  # evicted: runs again


def outcome(response_bytes: int) -> BatchOutcome:
    return BatchOutcome((), dataclasses.replace(EMPTY.stats, response_bytes=response_bytes))


async def test_a_batch_that_started_keeps_its_record_whatever_its_end() -> None:
    # A bug after the writes ran: the repeat gets the same error, and the writes are not sent
    # again. Only a refused batch (nothing ran) is forgotten.
    store = MemoryIdempotencyStore(ttl_s=3600)
    runs = []

    async def broken() -> BatchOutcome:
        runs.append("wrote")
        raise RuntimeError("bug after the writes")

    for _ in range(2):
        with pytest.raises(RuntimeError, match="bug after the writes"):
            await store.run_once("k", "f", broken)
    assert runs == ["wrote"]


async def test_a_running_record_does_not_stop_older_finished_ones_going() -> None:
    store = MemoryIdempotencyStore(ttl_s=3600, max_records=2)
    gate = asyncio.Event()

    async def slow() -> BatchOutcome:
        await gate.wait()
        return EMPTY

    async def quick() -> BatchOutcome:
        return EMPTY

    running = asyncio.create_task(store.run_once("running", "f", slow))
    await asyncio.sleep(0)
    for n in range(5):
        await store.run_once(f"k{n}", "f", quick)
    assert len(store) == 2  # the running record and the newest finished one
    gate.set()
    await running
    assert (await store.run_once("running", "f", quick)).replayed


async def test_results_are_bounded_in_bytes() -> None:
    store = MemoryIdempotencyStore(ttl_s=3600, max_bytes=10_000, max_record_bytes=8_000)
    for n in range(4):
        await store.run_once(f"k{n}", "f", lambda: _ready(outcome(4_000)))
    assert store.size_bytes <= 10_000 and len(store) == 2
    assert not (await store.run_once("k0", "f", lambda: _ready(outcome(10)))).replayed


async def test_a_result_too_large_to_keep_keeps_its_key_and_never_runs_again() -> None:
    store = MemoryIdempotencyStore(ttl_s=3600, max_record_bytes=1_000)
    runs = []

    async def big() -> BatchOutcome:
        runs.append(1)
        return outcome(5_000)

    assert not (await store.run_once("k", "f", big)).replayed
    with pytest.raises(BatchRejected) as info:
        await store.run_once("k", "f", big)
    assert info.value.code is ErrorCode.IDEMPOTENCY_KEY_REUSED
    assert "too large to keep" in str(info.value)
    assert runs == [1] and store.size_bytes == 0


async def _ready(value: BatchOutcome) -> BatchOutcome:
    return value


async def test_keys_are_per_credential_whichever_header_carries_it(
    service: FakeService, make_gateway: Any, upstream_url: str
) -> None:
    service.route("POST", "/orders", status=201, json={"id": 1})
    client = await make_gateway(upstream_url, forward_headers=("X-Api-Key",))
    for user in ("alice-key", "bob-key"):
        resp = await client.post(
            "/batch", json=ORDER, headers={"Idempotency-Key": "same", "X-Api-Key": user}
        )
        assert "Idempotent-Replayed" not in resp.headers
    assert len(service.calls) == 2
