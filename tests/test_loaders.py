"""Coalescing through the DataLoader, counted at a real loopback upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gqlbatch import Settings
from gqlbatch.call import UpstreamCall
from gqlbatch.loaders import Loaders
from gqlbatch.upstream import UpstreamClient
from tests.fakes import FakeService


@pytest.fixture
async def client(upstream_url: str) -> AsyncIterator[UpstreamClient]:
    c = UpstreamClient(Settings.from_upstream_urls([upstream_url]))
    yield c
    await c.close()


async def test_identical_reads_in_one_turn_make_one_call(
    service: FakeService, client: UpstreamClient
) -> None:
    service.route("GET", "/users/1", json={"id": 1})
    loaders = Loaders(client.send, {})
    call = UpstreamCall("default", "GET", "/users/1")
    fetched = await asyncio.gather(*(loaders.fetch(call) for _ in range(10)))
    assert len(service.calls) == 1
    assert [f.coalesced for f in fetched] == [False] + [True] * 9
    assert {f.response.status for f in fetched} == {200}
    assert (loaders.requested, loaders.sent, loaders.deduplicated) == (10, 1, 9)


async def test_identical_reads_later_in_the_batch_reuse_the_answer(
    service: FakeService, client: UpstreamClient
) -> None:
    service.route("GET", "/users/1", json={"id": 1})
    loaders = Loaders(client.send, {})
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


async def test_upstream_error_reaches_every_waiting_caller(
    client: UpstreamClient, service: FakeService
) -> None:
    service.route("GET", "/bad", text="{", content_type="application/json")
    loaders = Loaders(client.send, {})
    call = UpstreamCall("default", "GET", "/bad")
    results = await asyncio.gather(*(loaders.fetch(call) for _ in range(2)), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["UpstreamBadResponse"] * 2
    assert len(service.calls) == 1


async def test_a_fast_read_does_not_wait_for_a_slow_one_dispatched_with_it(
    service: FakeService, client: UpstreamClient
) -> None:
    # aiodataloader resolves a whole dispatch at once; Loaders hands back a task per key so
    # that /fast completes while /slow, dispatched in the same loop turn, is still running.
    gate = asyncio.Event()
    service.route("GET", "/slow", gate=gate, json={})
    service.route("GET", "/fast", json={})
    loaders = Loaders(client.send, {})
    slow = asyncio.create_task(loaders.fetch(UpstreamCall("default", "GET", "/slow")))
    fast = await loaders.fetch(UpstreamCall("default", "GET", "/fast"))
    assert fast.response.status == 200
    assert not slow.done()
    gate.set()
    assert (await slow).response.status == 200
