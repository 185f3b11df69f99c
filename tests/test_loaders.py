"""Coalescing of reads, through the DataLoader or the per-batch map, counted at a real loopback
upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gqlbatch import Settings
from gqlbatch.core.upstream_settings import BulkRoute, UpstreamSettings
from gqlbatch.core.wire import UpstreamCall
from gqlbatch.upstreams.client import UpstreamClient
from gqlbatch.upstreams.loaders import Loaders
from tests.fakes import FakeService

# Reads a bulk route could merge go through the DataLoader; the others are shared by a map of
# the batch's calls (Loaders._read_once). Coalescing must hold the same on both paths.
BULK = {"default": [BulkRoute(match="/users/{id}")]}
paths = pytest.mark.parametrize("routes", [{}, BULK], ids=["no-bulk-route", "bulk-route"])


@pytest.fixture
async def client(upstream_url: str) -> AsyncIterator[UpstreamClient]:
    c = UpstreamClient(Settings.from_upstream_urls([upstream_url]))
    yield c
    await c.close()


@paths
async def test_identical_reads_in_one_turn_make_one_call(
    routes: dict[str, list[BulkRoute]], service: FakeService, client: UpstreamClient
) -> None:
    service.route("GET", "/users/1", json={"id": 1})
    loaders = Loaders(client.send, routes)
    call = UpstreamCall("default", "GET", "/users/1")
    fetched = await asyncio.gather(*(loaders.fetch(call) for _ in range(10)))
    assert len(service.calls) == 1
    assert [f.coalesced for f in fetched] == [False] + [True] * 9
    assert {f.response.status for f in fetched} == {200}
    assert (loaders.requested, loaders.sent, loaders.deduplicated) == (10, 1, 9)


@paths
async def test_identical_reads_later_in_the_batch_reuse_the_answer(
    routes: dict[str, list[BulkRoute]], service: FakeService, client: UpstreamClient
) -> None:
    service.route("GET", "/users/1", json={"id": 1})
    loaders = Loaders(client.send, routes)
    call = UpstreamCall("default", "GET", "/users/1")
    await loaders.fetch(call)
    second = await loaders.fetch(call)
    assert second.coalesced and len(service.calls) == 1


async def test_different_credentials_are_different_calls(
    service: FakeService, client: UpstreamClient
) -> None:
    service.route("GET", "/me", json={})
    loaders = Loaders(client.send, {})
    await asyncio.gather(
        loaders.fetch(UpstreamCall("default", "GET", "/me", headers=(("Authorization", "A"),))),
        loaders.fetch(UpstreamCall("default", "GET", "/me", headers=(("Authorization", "B"),))),
    )
    assert sorted(c.headers["Authorization"] for c in service.calls) == ["A", "B"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_writes_are_never_merged(
    method: str, service: FakeService, client: UpstreamClient
) -> None:
    service.route(method, "/items", json={})
    loaders = Loaders(client.send, {})
    call = UpstreamCall("default", method, "/items", body=b"{}")
    fetched = await asyncio.gather(*(loaders.fetch(call) for _ in range(3)))
    assert len(service.calls) == 3
    assert not any(f.coalesced for f in fetched)


@paths
async def test_upstream_error_reaches_every_waiting_caller(
    routes: dict[str, list[BulkRoute]], client: UpstreamClient, service: FakeService
) -> None:
    service.route("GET", "/users/bad", text="{", content_type="application/json")
    loaders = Loaders(client.send, routes)
    call = UpstreamCall("default", "GET", "/users/bad")
    results = await asyncio.gather(*(loaders.fetch(call) for _ in range(2)), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["UpstreamBadResponse"] * 2
    assert len(service.calls) == 1


async def test_a_cancelled_read_does_not_leave_its_waiters_hanging(
    upstream_url: str, service: FakeService
) -> None:
    # The batch deadline cancels every item; a caller waiting for an identical read must end
    # with it, not wait for an answer that will never be set. And the pool's one connection
    # must be free again: a leaked one would make the next call wait until its timeout.
    upstream = UpstreamSettings(name="default", base_url=upstream_url, max_connections=1)
    client = UpstreamClient(Settings(upstreams={"default": upstream}))
    service.route("GET", "/slow", gate=asyncio.Event(), json={})
    loaders = Loaders(client.send, {})
    call = UpstreamCall("default", "GET", "/slow")
    first = asyncio.create_task(loaders.fetch(call))
    await service.received()
    waiter = asyncio.create_task(loaders.fetch(call))
    await asyncio.sleep(0)
    first.cancel()
    done, _ = await asyncio.wait([first, waiter], timeout=5)
    assert done == {first, waiter}
    assert first.cancelled() and waiter.cancelled()
    after = await client.send(UpstreamCall("default", "GET", "/after", timeout_ms=5_000))
    assert after.status == 404  # answered (FakeService's 404), not UPSTREAM_TIMEOUT
    await client.close()


async def test_a_fast_read_does_not_wait_for_a_slow_one_dispatched_with_it(
    service: FakeService, client: UpstreamClient
) -> None:
    # aiodataloader resolves a whole dispatch at once; Loaders hands back a task per key so
    # that /users/1 completes while /users/2, dispatched by the DataLoader in the same loop
    # turn, is still running. Both match a bulk route, so both go through the DataLoader; their
    # credentials differ, so they are two calls, not one plural call.
    gate = asyncio.Event()
    service.route("GET", "/users/2", gate=gate, json={"id": 2})
    service.route("GET", "/users/1", json={"id": 1})
    loaders = Loaders(client.send, BULK)
    slow_call = UpstreamCall("default", "GET", "/users/2", headers=(("Authorization", "b"),))
    fast_call = UpstreamCall("default", "GET", "/users/1", headers=(("Authorization", "a"),))
    slow = asyncio.create_task(loaders.fetch(slow_call))
    fast = await loaders.fetch(fast_call)
    assert fast.response.status == 200 and fast.bulk_call is None
    assert not slow.done()
    gate.set()
    assert (await slow).response.status == 200
    assert sorted(service.lines) == ["GET /users/1", "GET /users/2"]
