"""Streamed batches: each item's result the moment it is final, before its slow siblings.

A gate holds the slow item's upstream call; the fast item's result must arrive while the gate
is still closed (an event, not a timer), and only then is the gate opened.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from gql import Client, GraphQLRequest
from gql.transport.aiohttp_websockets import AIOHTTPWebsocketsTransport
from gql.transport.exceptions import TransportQueryError

from gqlbatch import Settings, create_app, running
from tests.fakes import FakeService

SUBSCRIPTION = """subscription($r: [SubRequestInput!]!) {
  batch(requests: $r) {
    __typename
    ... on ItemResult { requestId status body }
    ... on BatchDone { rolledBack stats { subRequests upstreamCalls } }
  }
}"""
ITEMS = [{"requestId": "slow", "path": "/slow"}, {"requestId": "fast", "path": "/fast"}]


@pytest.fixture
async def gateway_url(upstream_url: str) -> AsyncIterator[str]:
    async with running(create_app(Settings.from_upstream_urls([upstream_url]))) as url:
        yield url


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_a_subscription_sends_each_item_as_it_finishes(
    protocol: str, service: FakeService, gateway_url: str
) -> None:
    gate = asyncio.Event()
    service.route("GET", "/slow", json={"n": "slow"}, gate=gate)
    service.route("GET", "/fast", json={"n": "fast"})
    transport = AIOHTTPWebsocketsTransport(
        url=gateway_url.replace("http://", "ws://") + "/graphql", subprotocols=[protocol]
    )
    events = []
    async with Client(transport=transport) as session:
        request = GraphQLRequest(SUBSCRIPTION, variable_values={"r": ITEMS})
        async for event in session.subscribe(request):
            events.append(event["batch"])
            if len(events) == 1:
                assert not gate.is_set()  # the fast item came while the slow one was held
                gate.set()
    assert events == [
        {"__typename": "Succeeded", "requestId": "fast", "status": 200, "body": {"n": "fast"}},
        {"__typename": "Succeeded", "requestId": "slow", "status": 200, "body": {"n": "slow"}},
        {
            "__typename": "BatchDone",
            "rolledBack": False,
            "stats": {"subRequests": 2, "upstreamCalls": 2},
        },
    ]


async def test_a_refused_subscription_ends_with_the_error(gateway_url: str) -> None:
    transport = AIOHTTPWebsocketsTransport(url=gateway_url.replace("http://", "ws://") + "/graphql")
    async with Client(transport=transport) as session:
        request = GraphQLRequest(SUBSCRIPTION, variable_values={"r": [{"path": "//evil"}]})
        with pytest.raises(TransportQueryError) as refused:
            async for _ in session.subscribe(request):
                pass
    assert refused.value.errors is not None
    assert refused.value.errors[0]["extensions"]["code"] == "FORBIDDEN_TARGET"


async def test_ndjson_streams_one_line_per_item_then_the_stats(
    service: FakeService, gateway_url: str
) -> None:
    gate = asyncio.Event()
    service.route("GET", "/slow", json={"n": "slow"}, gate=gate)
    service.route("GET", "/fast", json={"n": "fast"})
    headers = {"Accept": "application/x-ndjson"}
    lines: list[dict[str, Any]] = []
    async with (
        aiohttp.ClientSession() as http,
        http.post(gateway_url + "/batch", json={"requests": ITEMS}, headers=headers) as resp,
    ):
        assert (resp.status, resp.content_type) == (200, "application/x-ndjson")
        async for raw in resp.content:  # one line at a time, as they arrive
            lines.append(json.loads(raw))
            if len(lines) == 1:
                assert not gate.is_set()
                gate.set()
    assert [(line.get("id"), line.get("index"), line.get("status")) for line in lines[:2]] == [
        ("fast", 1, 200),
        ("slow", 0, 200),
    ]
    assert lines[2]["done"] is True and lines[2]["stats"]["subRequests"] == 2


async def test_a_refused_ndjson_batch_is_a_plain_400(gateway_url: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            gateway_url + "/batch",
            json=[{"path": "//evil"}],
            headers={"Accept": "application/x-ndjson"},
        ) as resp,
    ):
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "FORBIDDEN_TARGET"
