"""Upstream faults become typed errors on the item that met them, and nothing is left behind.

The upstream is a raw-socket server (tests.fakes.FaultServer) that refuses, resets mid-body,
drips bytes past the deadline, answers 500, sends invalid JSON or too large a body. After each
fault the test asserts that no gqlbatch task is still running and no pooled connection is held.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gqlbatch import Settings, create_app
from gqlbatch.core.upstream_settings import RetrySettings, UpstreamSettings
from tests.conftest import graphql_caller
from tests.fakes import FaultServer

QUERY = """mutation($r: [SubRequestInput!]!) {
  batch(requests: $r) { items { requestId state status attempts error { code message } } }
}"""


@pytest.fixture
async def faults() -> AsyncIterator[tuple[FaultServer, str]]:
    server = FaultServer()
    url = await server.__aenter__()
    yield server, url
    await server.__aexit__()


POOL = 2
"""Connections to the faulty upstream: few, so that one a fault leaked would show."""


@pytest.fixture
async def gateway(faults: tuple[FaultServer, str], aiohttp_client: Any) -> TestClient:
    settings = Settings(
        upstreams={
            "default": UpstreamSettings(name="default", base_url=faults[1], max_connections=POOL)
        },
        max_response_bytes=10_000,
        retries=RetrySettings(max_attempts=2, backoff_ms=1, max_backoff_ms=1),
    )
    return await aiohttp_client(create_app(settings))


SERVER_TASKS = {"gqlbatch:loop-lag"}
"""Tasks that live as long as the server, not a batch: the event loop's lag sampler."""


async def assert_nothing_left(client: TestClient, *, pool: bool = True) -> None:
    # Give cancelled work one loop turn to unwind before looking.
    await asyncio.sleep(0)
    ours = [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith("gqlbatch:") and t.get_name() not in SERVER_TASKS
    ]
    assert ours == [], ours
    if not pool:
        return
    # Every pooled connection is free: POOL calls at once are answered. A connection that a
    # fault left held would make one of them wait for a free one until its timeout.
    items = await run(client, [f"/ok{n}" for n in range(POOL)], timeoutMs=5_000)
    assert {i["state"] for i in items.values()} == {"SUCCEEDED"}, items


async def run(client: TestClient, paths: list[str], **item: Any) -> dict[str, dict[str, Any]]:
    requests = [{"requestId": p.strip("/"), "path": p, **item} for p in paths]
    result = await graphql_caller(client)(QUERY, {"r": requests})
    assert "errors" not in result, result
    return {i["requestId"]: i for i in result["data"]["batch"]["items"]}


@pytest.mark.parametrize(
    ("path", "code", "attempts", "message"),
    [
        ("/reset", "UPSTREAM_UNREACHABLE", 2, "the connection broke mid-body"),
        ("/500", "UPSTREAM_STATUS", 1, "GET /500 answered 500"),
        ("/badjson", "UPSTREAM_BAD_RESPONSE", 1, "declared JSON but is not"),
        ("/huge", "UPSTREAM_BAD_RESPONSE", 1, "over the 10000-byte limit"),
        ("/charset", "UPSTREAM_BAD_RESPONSE", 1, "charset 'x-no-such'"),
        ("/deep", "UPSTREAM_BAD_RESPONSE", 1, "nested more than 128 levels deep"),
        ("/bigint", "UPSTREAM_BAD_RESPONSE", 1, "a number is too long"),
        ("/nan", "UPSTREAM_BAD_RESPONSE", 1, "NaN is not a JSON value"),
        ("/gzipbomb", "UPSTREAM_BAD_RESPONSE", 1, "over the 10000-byte limit"),
    ],
    ids=[
        "reset-mid-body",
        "5xx",
        "invalid-json",
        "over-the-cap",
        "unknown-charset",
        "json-1000-deep",
        "4400-digit-integer",
        "nan-and-infinity",
        "gzip-bomb",
    ],
)
async def test_fault_fails_only_its_item(
    path: str, code: str, attempts: int, message: str, gateway: TestClient
) -> None:
    items = await run(gateway, [path, "/ok"])
    failed = items[path.strip("/")]
    assert (failed["state"], failed["error"]["code"], failed["attempts"]) == (
        "FAILED",
        code,
        attempts,
    )
    assert message in failed["error"]["message"]
    assert items["ok"]["state"] == "SUCCEEDED"
    await assert_nothing_left(gateway)


async def test_drip_past_the_item_timeout_is_a_timeout(gateway: TestClient) -> None:
    items = await run(gateway, ["/drip", "/ok"], timeoutMs=300)
    assert items["drip"]["error"]["code"] == "UPSTREAM_TIMEOUT"
    assert items["drip"]["attempts"] == 1  # a timeout is never retried: the call may have run
    assert items["ok"]["state"] == "SUCCEEDED"
    await assert_nothing_left(gateway)


async def test_drip_past_the_batch_deadline_cancels_and_cleans_up(
    gateway: TestClient, faults: tuple[FaultServer, str]
) -> None:
    result = await graphql_caller(gateway)(
        """mutation($r: [SubRequestInput!]!) { batch(requests: $r, options: {timeoutMs: 200})
           { items { requestId state error { code } } } }""",
        {"r": [{"requestId": "drip", "path": "/drip"}, {"requestId": "ok", "path": "/ok"}]},
    )
    items = {i["requestId"]: i for i in result["data"]["batch"]["items"]}
    assert (items["drip"]["state"], items["drip"]["error"]["code"]) == ("CANCELLED", "TIMEOUT")
    assert items["ok"]["state"] == "SUCCEEDED"
    await assert_nothing_left(gateway)


async def test_refused_connection_is_unreachable_and_retried(aiohttp_client: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings.from_upstream_urls(
        [f"http://127.0.0.1:{port}"],
        retries=RetrySettings(max_attempts=3, backoff_ms=1, max_backoff_ms=1),
    )
    client = await aiohttp_client(create_app(settings))
    items = await run(client, ["/a", "/b"])
    assert {i["error"]["code"] for i in items.values()} == {"UPSTREAM_UNREACHABLE"}
    assert {i["attempts"] for i in items.values()} == {3}
    await assert_nothing_left(client, pool=False)  # nothing listens: no connection to check


FAULTS = [
    "/reset",
    "/500",
    "/badjson",
    "/huge",
    "/charset",
    "/deep",
    "/bigint",
    "/nan",
    "/gzipbomb",
]


async def test_every_fault_at_once_in_one_batch(
    gateway: TestClient, faults: tuple[FaultServer, str]
) -> None:
    items = await run(gateway, [*FAULTS, "/ok"])
    assert [i["state"] for i in items.values()] == ["FAILED"] * len(FAULTS) + ["SUCCEEDED"]
    await assert_nothing_left(gateway)


async def test_faults_after_a_write_keep_the_writes_result_on_both_doors(
    gateway: TestClient, faults: tuple[FaultServer, str]
) -> None:
    # The write runs first; every trigger then answers a read that depends on it. The batch
    # must come back whole, the write's result in it.
    requests = [{"id": "write", "method": "POST", "url": "/ok"}] + [
        {"id": p.strip("/"), "url": p, "dependsOn": ["write"]} for p in FAULTS
    ]
    resp = await gateway.post("/batch", json={"requests": requests})
    assert resp.status == 200, await resp.text()
    out = {r["id"]: r for r in (await resp.json())["responses"]}
    assert out["write"]["state"] == "SUCCEEDED"
    assert {out[p.strip("/")]["state"] for p in FAULTS} == {"FAILED"}


async def test_an_upstream_header_outside_latin1_reaches_both_doors_and_cookies_do_not(
    gateway: TestClient,
) -> None:
    name = "caf\u00e9 \u2603 \U0001f600"
    resp = await gateway.post("/batch", json=[{"path": "/utf8header"}])
    (out,) = await resp.json()
    assert out["headers"]["X-Name"].encode("utf-8", "surrogateescape") == name.encode()
    assert "Set-Cookie" not in out["headers"]
    boundary = "b"
    part = "Content-Type: application/http\r\n\r\nGET /utf8header HTTP/1.1\r\n\r\n"
    body = f"--{boundary}\r\n{part}\r\n--{boundary}--\r\n"
    resp = await gateway.post(
        "/batch", data=body, headers={"Content-Type": f"multipart/mixed; boundary={boundary}"}
    )
    raw = await resp.read()
    assert resp.status == 200
    assert b"X-Name: " + name.encode() in raw  # the upstream's own bytes, passed on
    assert b"secret" not in raw
    result = await graphql_caller(gateway)(
        '{ batch(requests: [{path: "/utf8header"}]) { items { headers { name value } } } }'
    )
    names = {h["name"] for h in result["data"]["batch"]["items"][0]["headers"]}
    assert "X-Name" in names and "Set-Cookie" not in names
