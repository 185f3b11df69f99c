"""Limits on what comes in: GraphQL document size, request bytes, outstanding calls in all;
plus what the server says about it: masked internal errors and one log line per batch."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import graphql_caller
from tests.fakes import FakeService


@pytest.fixture
async def strict(make_gateway: Any, upstream_url: str) -> TestClient:
    return await make_gateway(
        upstream_url,
        max_query_depth=4,
        max_query_aliases=2,
        max_query_tokens=60,
        max_request_bytes=2000,
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            'mutation { batch(requests: [{path: "/a"}]) { items { error { code } } '
            "stats { wallMs } } }",
            None,
        ),
        (
            'mutation { batch(requests: [{path: "/a"}]) { items { ... on Failed { error { code '
            "} } ... on Succeeded { error { message } } } } }",
            None,
        ),
        (
            '{ a: batch(requests: [{path: "/a"}]) { replayed } b: batch(requests: [{path: "/a"}])'
            ' { replayed } c: batch(requests: [{path: "/a"}]) { replayed } }',
            "3 aliases found. Allowed: 2",
        ),
        (
            "{ batch(requests: [" + ", ".join(['{path: "/a"}'] * 20) + "]) { replayed } }",
            "Document contains more than 60 tokens",
        ),
    ],
    ids=["within-limits", "depth-within", "aliases", "tokens"],
)
async def test_query_limits(
    query: str, message: str | None, strict: TestClient, service: FakeService
) -> None:
    service.route("GET", "/a", json={})
    result = await graphql_caller(strict)(query)
    if message is None:
        assert "errors" not in result, result
        return
    (error,) = result["errors"]
    assert message in error["message"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert service.calls == []


async def test_query_depth_limit(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    client = await make_gateway(upstream_url, max_query_depth=2)
    result = await graphql_caller(client)(
        'mutation Deep { batch(requests: [{path: "/a"}]) { items { error { code } } } }'
    )
    error = result["errors"][0]
    assert "'Deep' exceeds maximum operation depth of 2" in error["message"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert service.calls == []


async def test_graphql_body_over_the_limit_is_413(strict: TestClient) -> None:
    resp = await strict.post("/graphql", json={"query": "{ __typename }", "pad": "x" * 3000})
    assert resp.status == 413
    body = await resp.json()
    assert body["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"
    assert "2000-byte limit" in body["errors"][0]["message"]


# The places contract (memory and Redis) is tests/test_stores.py's.


async def test_one_structured_log_line_per_batch(
    service: FakeService, gateway: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    service.route("GET", "/a", json={})
    service.route("GET", "/b", status=500, json={})
    with caplog.at_level(logging.INFO, logger="gqlbatch.batch"):
        await gateway.post(
            "/batch",
            json=[{"path": "/a"}, {"path": "/b"}, {"path": "/c/{resultOf(1).id}"}],
            headers={"X-Request-Id": "req-1", "Authorization": "alice"},
        )
        await gateway.post("/batch", json=[{"path": "nope"}], headers={"X-Request-Id": "req-2"})
    lines = [r.fields for r in caplog.records if r.name == "gqlbatch.batch"]
    ran, rejected = lines
    assert ran["request_id"] == "req-1" and ran["client"].startswith("cred:")
    assert (ran["outcome"], ran["items"], ran["upstream_calls"]) == ("ran", 3, 2)
    assert ran["states"] == {"SUCCEEDED": 1, "FAILED": 1, "SKIPPED": 1}
    assert isinstance(ran["duration_ms"], float)
    assert (rejected["request_id"], rejected["outcome"], rejected["code"]) == (
        "req-2",
        "rejected",
        "FORBIDDEN_TARGET",
    )
    assert rejected["client"].startswith("addr:")


async def test_rest_internal_error_is_masked_and_logged(
    service: FakeService,
    gateway: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import gqlbatch.doors.rest as rest_module

    def broken(outcome: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(rest_module, "responses_json", broken)
    service.route("GET", "/a", json={})
    with caplog.at_level(logging.ERROR, logger="gqlbatch.errors"):
        resp = await gateway.post("/batch", json=[{"path": "/a"}])
    body = await resp.json()
    assert resp.status == 500
    assert body["error"]["code"] == "INTERNAL_ERROR"
    assert "secret" not in json.dumps(body)
    error_id = body["error"]["errorId"]
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records)


async def test_client_mistakes_are_not_server_errors(
    gateway: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        await gateway.post("/batch", json=[{"path": "//evil"}])
        await gateway.post("/graphql", json={"query": "{ nope }"})
        await gateway.post("/batch", data="x", headers={"Content-Type": "text/plain"})
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_concurrent_batches_release_what_they_hold(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    from gqlbatch.doors.http import OUTSTANDING

    service.route("GET", "/a", json={})
    client = await make_gateway(upstream_url, max_outstanding_per_client=50)
    await asyncio.gather(*(client.post("/batch", json=[{"path": "/a"}] * 10) for _ in range(5)))
    assert await client.server.app[OUTSTANDING].held() == 0


async def test_a_batch_larger_than_the_limit_runs_with_its_concurrency_held_to_it(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    # The limit counts calls in flight: a batch of six calls under a limit of two runs two at
    # a time, instead of being refused for ever. The upstream answers in pairs (a barrier of
    # two): fewer than two at once would hang, and a third at once would show in the peak.
    in_flight = [0, 0]  # now, peak
    pairs = asyncio.Barrier(2)

    async def handler(request: Any) -> Any:
        from aiohttp import web

        in_flight[0] += 1
        in_flight[1] = max(in_flight[1], in_flight[0])
        await pairs.wait()
        in_flight[0] -= 1
        return web.json_response({})

    for i in range(6):
        service.route("GET", f"/p{i}", handler=handler)
    client = await make_gateway(upstream_url, max_outstanding_per_client=2)
    resp = await client.post("/batch", json=[{"path": f"/p{i}"} for i in range(6)])
    assert resp.status == 200
    assert [r["status"] for r in (await resp.json())] == [200] * 6
    assert in_flight[1] == 2


async def test_a_repeated_query_is_validated_once(strict: TestClient, service: FakeService) -> None:
    # Strawberry's ValidationCache keys its LRU cache on the validation rule classes, and each
    # query limiter instance makes a new class: built per request, they made every request
    # validate again. Its key also holds the parsed document, whose hash walks every node on
    # every request; ours is the document's text. So the first request validates, through
    # Strawberry's validation (its own cache off, size 0), and the repeats never reach it.
    from strawberry.extensions.validation_cache import _get_validate_cache

    from gqlbatch.doors.graphql.documents import _PARSED

    service.route("GET", "/a", json={})
    validations = _get_validate_cache(0)
    parsed_before = (_PARSED.hits, _PARSED.misses)
    query = "mutation($p: String!) { batch(requests: [{path: $p}]) { replayed } }"
    call = graphql_caller(strict)
    before = validations.cache_info()
    assert "errors" not in await call(query, {"p": "/a"})
    first = validations.cache_info()
    for _ in range(3):
        assert "errors" not in await call(query, {"p": "/a"})
    after = validations.cache_info()
    assert first.misses - before.misses == 1
    assert after.misses == first.misses
    # parsed once too: the three repeats are hits
    assert _PARSED.hits - parsed_before[0] >= 3 and _PARSED.misses - parsed_before[1] <= 1
    invalid = "mutation { batch(requests: [{path: 1}]) { replayed } }"
    # An invalid document is refused with the same errors each time, from memory the second.
    refusals = [(await call(invalid, {}))["errors"] for _ in range(2)]
    assert refusals[0] == refusals[1] and "String" in refusals[0][0]["message"]
