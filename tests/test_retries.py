"""Retries: the pure policy by table, and the loop against a real loopback upstream."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gqlbatch.core.errors import UpstreamBadResponse, UpstreamTimeout, UpstreamUnreachable
from gqlbatch.core.upstream_settings import RetrySettings
from gqlbatch.core.wire import UpstreamCall, UpstreamResponse
from gqlbatch.upstreams.retries import delay_ms, parse_retry_after, should_retry
from tests.conftest import graphql_caller
from tests.fakes import FakeService

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
FAST = RetrySettings(max_attempts=3, backoff_ms=1, max_backoff_ms=1, max_retry_after_ms=2000)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3000.0),
        ("0", 0.0),
        ("Sun, 22 Nov 2026 12:00:02 GMT", 2000.0),
        ("Sun, 22 Nov 2026 11:00:00 GMT", 0.0),
        (None, None),
        ("soon", None),
        ("-1", None),
    ],
    ids=["seconds", "zero", "http-date", "date-in-the-past", "absent", "garbage", "negative"],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_backoff_doubles_with_full_jitter_and_is_capped() -> None:
    settings = RetrySettings(backoff_ms=100, max_backoff_ms=1000)
    assert [delay_ms(a, None, settings, rand=lambda: 1.0) for a in (1, 2, 3, 4, 5)] == [
        100,
        200,
        400,
        800,
        1000,
    ]
    assert delay_ms(3, None, settings, rand=lambda: 0.25) == 100


def test_retry_after_is_honoured_up_to_its_cap() -> None:
    settings = RetrySettings(max_retry_after_ms=5000)
    assert delay_ms(1, 3000.0, settings) == 3000.0
    assert delay_ms(1, 6000.0, settings) is None  # longer than we will wait: give up now


def call(method: str, *headers: tuple[str, str]) -> UpstreamCall:
    return UpstreamCall("api", method, "/x", headers=headers)


def response(status: int) -> UpstreamResponse:
    return UpstreamResponse(status, (), None)


@pytest.mark.parametrize(
    ("the_call", "outcome", "retry"),
    [
        (call("GET"), response(503), True),
        (call("GET"), response(429), True),
        (call("GET"), response(502), True),
        (call("GET"), response(504), True),
        (call("GET"), response(500), False),
        (call("GET"), response(404), False),
        (call("PUT"), response(503), True),
        (call("DELETE"), UpstreamUnreachable("refused"), True),
        (call("GET"), UpstreamTimeout("slow"), False),
        (call("GET"), UpstreamBadResponse("bad"), False),
        (call("POST"), response(503), False),
        (call("POST"), UpstreamUnreachable("refused"), False),
        (call("PATCH", ("Idempotency-Key", "k1")), response(503), True),
        (call("POST", ("idempotency-key", "k1")), UpstreamUnreachable("refused"), True),
    ],
    ids=[
        "get-503",
        "get-429",
        "get-502",
        "get-504",
        "get-500",
        "get-404",
        "put-503",
        "delete-refused",
        "get-timeout",
        "get-bad-body",
        "post-503",
        "post-refused",
        "patch-with-key",
        "post-with-key",
    ],
)
def test_what_is_retried(the_call: UpstreamCall, outcome: Any, retry: bool) -> None:
    assert should_retry(the_call, outcome) is retry


def flaky(failures: list[tuple[int, dict[str, str]]]) -> Any:
    """A handler that answers each of *failures* in turn, then 200."""

    async def handler(request: web.Request) -> web.Response:
        if failures:
            status, headers = failures.pop(0)
            return web.json_response({"try": "again"}, status=status, headers=headers)
        return web.json_response({"ok": True})

    return handler


QUERY = """mutation($r: [SubRequestInput!]!, $o: BatchOptionsInput) {
  batch(requests: $r, options: $o) {
    items { state status attempts body error { code } }
    stats { callsRequested upstreamCalls callsSaved retries }
  }
}"""


@pytest.fixture
async def client(make_gateway: Any, upstream_url: str) -> TestClient:
    return await make_gateway(upstream_url, retries=FAST)


async def run(
    client: TestClient, items: list[dict[str, Any]], options: dict[str, Any] | None = None
) -> dict[str, Any]:
    result = await graphql_caller(client)(QUERY, {"r": items, "o": options})
    assert "errors" not in result, result
    return result["data"]["batch"]


async def test_throttled_read_is_retried_inside_the_batch(
    service: FakeService, client: TestClient
) -> None:
    service.route("GET", "/x", handler=flaky([(429, {"Retry-After": "0"}), (503, {})]))
    out = await run(client, [{"path": "/x"}])
    assert out["items"][0] == {
        "state": "SUCCEEDED",
        "status": 200,
        "attempts": 3,
        "body": {"ok": True},
        "error": None,
    }
    # One call, two retries: every stat a count that cannot go below zero (callsSaved was
    # 1 - 3 = -2 when retries counted as calls).
    assert out["stats"] == {
        "callsRequested": 1,
        "upstreamCalls": 1,
        "callsSaved": 0,
        "retries": 2,
    }
    assert len(service.calls) == 3


async def test_attempts_are_bounded(service: FakeService, client: TestClient) -> None:
    service.route("GET", "/x", status=503, json={"down": True})
    out = await run(client, [{"path": "/x"}])
    assert (out["items"][0]["status"], out["items"][0]["attempts"]) == (503, 3)
    assert len(service.calls) == 3


async def test_post_is_not_retried_without_a_key(service: FakeService, client: TestClient) -> None:
    service.route("POST", "/x", handler=flaky([(503, {})]))
    out = await run(client, [{"method": "POST", "path": "/x", "body": {}}])
    assert (out["items"][0]["status"], out["items"][0]["attempts"]) == (503, 1)
    assert len(service.calls) == 1


async def test_post_with_an_idempotency_key_is_retried_with_the_key(
    service: FakeService, client: TestClient
) -> None:
    service.route("POST", "/x", handler=flaky([(503, {})]))
    out = await run(
        client, [{"method": "POST", "path": "/x", "body": {}, "idempotencyKey": "order-42"}]
    )
    assert (out["items"][0]["status"], out["items"][0]["attempts"]) == (200, 2)
    assert [c.headers["Idempotency-Key"] for c in service.calls] == ["order-42"] * 2


async def test_retry_after_longer_than_the_deadline_is_not_waited_for(
    service: FakeService, client: TestClient
) -> None:
    service.route("GET", "/x", status=503, json={}, headers={"Retry-After": "1"})
    out = await run(client, [{"path": "/x"}], {"timeoutMs": 300})
    assert (out["items"][0]["status"], out["items"][0]["attempts"]) == (503, 1)
    assert len(service.calls) == 1


async def test_retry_after_longer_than_the_cap_is_not_waited_for(
    service: FakeService, client: TestClient
) -> None:
    service.route("GET", "/x", status=429, json={}, headers={"Retry-After": "60"})
    out = await run(client, [{"path": "/x"}])
    assert (out["items"][0]["status"], out["items"][0]["attempts"]) == (429, 1)


async def test_retries_respect_the_item_timeout(service: FakeService, client: TestClient) -> None:
    # Retry-After 1 s fits in the batch deadline (30 s) but not in the item's 300 ms.
    service.route("GET", "/x", status=503, json={}, headers={"Retry-After": "1"})
    out = await run(client, [{"path": "/x", "timeoutMs": 300}])
    assert (out["items"][0]["status"], out["items"][0]["attempts"]) == (503, 1)
    assert len(service.calls) == 1
