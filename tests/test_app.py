"""The GraphQL door end to end: POST /graphql through create_app to real loopback upstreams."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import GraphQL, graphql_caller
from tests.fakes import FakeService

BATCH = """
mutation Run($requests: [SubRequestInput!]!, $options: BatchOptionsInput) {
  batch(requests: $requests, options: $options) {
    items {
      __typename requestId index state status body bodyEncoding coalesced attempts durationMs
      headers { name value }
      error { code message }
      ... on Skipped { failedDependency }
    }
    stats { subRequests upstreamCalls callsSaved wallMs criticalPathMs }
  }
}
"""


async def run(graphql: GraphQL, requests: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    result = await graphql(BATCH, {"requests": requests, "options": kw.pop("options", None)}, **kw)
    assert "errors" not in result, result
    return result["data"]["batch"]


async def test_create_then_read_back_through_result_of(
    make_gateway: Any, sample_url: str, aiohttp_server: Any
) -> None:
    client = await make_gateway(sample_url)
    out = await run(
        graphql_caller(client),
        [
            {
                "requestId": "create",
                "method": "POST",
                "path": "/posts",
                "body": {"title": "Hi", "userId": 1},
            },
            {"requestId": "read", "path": "/posts/{resultOf(create).id}"},
        ],
    )
    create, read = out["items"]
    assert (create["__typename"], create["status"]) == ("Succeeded", 201)
    assert read["body"] == {"title": "Hi", "userId": 1, "id": 101}
    assert read["body"] == create["body"]


async def test_ten_identical_gets_make_one_upstream_call(
    service: FakeService, graphql: GraphQL
) -> None:
    service.route("GET", "/users/1", json={"id": 1})
    out = await run(graphql, [{"path": "/users/1"} for _ in range(10)])
    assert service.lines == ["GET /users/1"]
    assert [i["body"] for i in out["items"]] == [{"id": 1}] * 10
    assert sum(i["coalesced"] for i in out["items"]) == 9
    assert (
        out["stats"]["subRequests"],
        out["stats"]["upstreamCalls"],
        out["stats"]["callsSaved"],
    ) == (10, 1, 9)


async def test_failed_dependency_skips_dependents_and_siblings_succeed(
    service: FakeService, graphql: GraphQL
) -> None:
    service.route("GET", "/users/1", status=500, json={"error": "db down"})
    service.route("GET", "/posts", json=[{"id": 1}])
    out = await run(
        graphql,
        [
            {"requestId": "user", "path": "/users/1"},
            {"requestId": "orders", "path": "/orders", "query": {"user": "{resultOf(user).id}"}},
            {"requestId": "posts", "path": "/posts"},
        ],
    )
    user, orders, posts = out["items"]
    assert (user["__typename"], user["status"], user["body"], user["error"]["code"]) == (
        "Failed",
        500,
        {"error": "db down"},
        "UPSTREAM_STATUS",
    )
    assert (orders["__typename"], orders["error"]["code"], orders["failedDependency"]) == (
        "Skipped",
        "FAILED_DEPENDENCY",
        "user",
    )
    assert posts["__typename"] == "Succeeded"
    assert sorted(service.lines) == ["GET /posts", "GET /users/1"]


async def test_invalid_batch_lists_every_problem_and_sends_nothing(
    service: FakeService, graphql: GraphQL
) -> None:
    result = await graphql(
        BATCH,
        {
            "requests": [
                {"requestId": "a", "path": "/a", "dependsOn": ["b"]},
                {"requestId": "b", "path": "/b", "dependsOn": ["a"]},
                {"requestId": "c", "path": "/c", "dependsOn": ["ghost"]},
                {"requestId": "c", "path": "/d"},
            ]
        },
    )
    assert result["data"] == {"batch": None}
    (error,) = result["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT"
    problems = error["extensions"]["problems"]
    assert {(p["code"], p["requestId"], p["index"], p["field"]) for p in problems} == {
        ("DUPLICATE_REQUEST_ID", "c", 3, "requestId"),
        ("UNKNOWN_DEPENDENCY", "c", 2, "dependsOn"),
        ("DEPENDENCY_CYCLE", "a", 0, "dependsOn"),
    }
    assert all(p["message"] for p in problems)
    assert service.calls == []


async def test_cycle_alone_is_reported_with_its_own_code(
    service: FakeService, graphql: GraphQL
) -> None:
    result = await graphql(
        BATCH,
        {
            "requests": [
                {"requestId": "a", "path": "/a/{resultOf(b).id}"},
                {"requestId": "b", "path": "/b/{resultOf(a).id}"},
            ]
        },
    )
    error = result["errors"][0]
    assert error["extensions"]["code"] == "DEPENDENCY_CYCLE"
    assert "a -> b -> a" in error["message"] or "b -> a -> b" in error["message"]
    assert service.calls == []


async def test_query_batch_is_read_only(service: FakeService, graphql: GraphQL) -> None:
    query = """query($r: [SubRequestInput!]!) { batch(requests: $r) { items { state } } }"""
    result = await graphql(query, {"r": [{"path": "/a"}, {"path": "/b", "method": "POST"}]})
    assert result["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert service.calls == []
    service.route("GET", "/a", json={"ok": True})
    ok = await graphql(query, {"r": [{"path": "/a"}]})
    assert ok["data"]["batch"]["items"] == [{"state": "SUCCEEDED"}]


async def test_query_batch_over_http_get(service: FakeService, gateway: TestClient) -> None:
    service.route("GET", "/a", json={"ok": True})
    resp = await gateway.get(
        "/graphql", params={"query": '{ batch(requests: [{path: "/a"}]) { items { body } } }'}
    )
    assert resp.status == 200
    assert (await resp.json())["data"]["batch"]["items"] == [{"body": {"ok": True}}]


async def test_allow_listed_headers_are_forwarded_and_items_may_override(
    service: FakeService, graphql: GraphQL
) -> None:
    service.route("GET", "/a", json={})
    service.route("GET", "/b", json={})
    await run(
        graphql,
        [
            {"path": "/a"},
            {
                "path": "/b",
                "headers": [
                    {"name": "authorization", "value": "Bearer item"},
                    {"name": "X-Trace", "value": "{statusOf(0)}"},
                ],
            },
        ],
        headers={"Authorization": "Bearer batch", "Cookie": "secret=1", "X-Request-Id": "r1"},
    )
    a, b = sorted(service.calls, key=lambda c: c.path)
    assert a.headers["Authorization"] == "Bearer batch"
    assert a.headers["X-Request-Id"] == "r1"
    assert "Cookie" not in a.headers
    assert b.headers["Authorization"] == "Bearer item"
    assert b.headers["X-Trace"] == "200"


async def test_placeholders_feed_path_query_headers_and_typed_body(
    service: FakeService, graphql: GraphQL
) -> None:
    service.route(
        "POST",
        "/users",
        status=201,
        json={"id": 42, "tags": ["a", "b"]},
        headers={"Location": "/users/42"},
    )
    service.route("PUT", "/users/42/profile", json={"ok": True})
    out = await run(
        graphql,
        [
            {"requestId": "u", "method": "POST", "path": "/users", "body": {"name": "x"}},
            {
                "method": "PUT",
                "path": "/users/{resultOf(u).id}/profile",
                "query": {"tags": "{resultOf(u).tags}"},
                "headers": [{"name": "X-Loc", "value": "{headerOf(u, Location)}"}],
                "body": {
                    "id": "{resultOf(u).id}",
                    "tags": "{resultOf(u).tags}",
                    "label": "user {resultOf(u).id}",
                    "raw": "{ not: a placeholder }",
                },
            },
        ],
    )
    assert [i["state"] for i in out["items"]] == ["SUCCEEDED", "SUCCEEDED"]
    put = service.calls[1]
    assert put.line == "PUT /users/42/profile?tags=a,b"
    assert put.headers["X-Loc"] == "/users/42"
    assert put.json == {
        "id": 42,
        "tags": ["a", "b"],
        "label": "user 42",
        "raw": "{ not: a placeholder }",
    }


async def test_reference_not_found_is_a_failed_item(service: FakeService, graphql: GraphQL) -> None:
    service.route("GET", "/a", json={"id": 1})
    out = await run(
        graphql, [{"requestId": "a", "path": "/a"}, {"path": "/b/{resultOf(a).user.id}"}]
    )
    error = out["items"][1]["error"]
    assert error["code"] == "REFERENCE_NOT_FOUND"
    assert "'a' result has no key 'user' (keys: 'id')" in error["message"]


async def test_upstream_headers_are_name_value_pairs(
    service: FakeService, graphql: GraphQL
) -> None:
    service.route("GET", "/a", json={}, headers={"X-Trace": "abc", "X-Version": '"v1"'})
    (item,) = (await run(graphql, [{"path": "/a"}]))["items"]
    headers = {h["name"]: h["value"] for h in item["headers"]}
    assert (headers["X-Trace"], headers["X-Version"], headers["Content-Type"]) == (
        "abc",
        '"v1"',
        "application/json; charset=utf-8",
    )


async def test_item_lookup_and_body_projection(service: FakeService, graphql: GraphQL) -> None:
    service.route(
        "GET",
        "/users",
        json=[{"id": 1, "name": "A", "email": "a@x"}, {"id": 2, "name": "B", "email": "b@x"}],
    )
    result = await graphql("""
      mutation { batch(requests: [{requestId: "users", path: "/users"}]) {
        users: item(requestId: "users") { ... on Succeeded { body(select: ["name"]) } }
        none: item(requestId: "nope") { state }
      } }""")
    assert result["data"]["batch"] == {
        "users": {"body": [{"name": "A"}, {"name": "B"}]},
        "none": None,
    }
    # The argument may arrive from a variable, and a bad selector is the client's error.
    result = await graphql(
        """query($s: [String!]) { batch(requests: [{path: "/users"}]) {
             items { body(select: $s) } } }""",
        {"s": ["email"]},
    )
    assert result["data"]["batch"]["items"] == [{"body": [{"email": "a@x"}, {"email": "b@x"}]}]
    result = await graphql(
        'query { batch(requests: [{path: "/users"}]) { items { body(select: ["a[x"]) } } }'
    )
    (error,) = result["errors"]
    assert (error["path"], error["extensions"]["code"]) == (
        ["batch", "items", 0, "body"],
        "INVALID_INPUT",
    )


async def test_deadline_returns_partial_results(service: FakeService, graphql: GraphQL) -> None:
    service.route("GET", "/fast", json={"ok": 1})
    service.route("GET", "/slow", gate=asyncio.Event())
    out = await run(graphql, [{"path": "/fast"}, {"path": "/slow"}], options={"timeoutMs": 100})
    fast, slow = out["items"]
    assert (fast["state"], fast["body"]) == ("SUCCEEDED", {"ok": 1})
    assert (slow["__typename"], slow["error"]["code"]) == ("Cancelled", "TIMEOUT")


async def test_unreachable_upstream_is_an_item_error(make_gateway: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = await make_gateway(f"http://127.0.0.1:{port}")
    out = await run(graphql_caller(client), [{"path": "/a"}])
    assert out["items"][0]["error"]["code"] == "UPSTREAM_UNREACHABLE"


async def test_internal_error_is_masked_and_logged_with_an_id(
    service: FakeService,
    graphql: GraphQL,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A bug inside the engine must reach the client as an id, never as a traceback or the
    # exception's text, on the compiled path as on graphql-core's.
    import gqlbatch.doors.graphql.batches as batches_module

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(batches_module, "run_batch", broken)
    service.route("GET", "/a", json={})
    with caplog.at_level(logging.ERROR, logger="gqlbatch.errors"):
        result = await graphql(BATCH, {"requests": [{"path": "/a"}]})
    (error,) = result["errors"]
    assert "secret" not in str(result)
    assert error["extensions"]["code"] == "INTERNAL_ERROR"
    error_id = error["extensions"]["errorId"]
    assert error_id in error["message"]
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records)


async def test_health_and_graphiql(gateway: TestClient) -> None:
    assert (await (await gateway.get("/healthz")).json()) == {"status": "ok"}
    page = await gateway.get("/graphql", headers={"Accept": "text/html"})
    assert page.status == 200 and "GraphiQL" in await page.text()


async def test_demo_sample_api_records_and_filters(sample_url: str, make_gateway: Any) -> None:
    client = await make_gateway(sample_url)
    out = await run(graphql_caller(client), [{"path": "/users", "query": {"id": [1, 2]}}])
    assert [u["id"] for u in out["items"][0]["body"]] == [1, 2]


async def test_client_rejection_is_not_logged_as_a_server_error(
    graphql: GraphQL, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        result = await graphql(BATCH, {"requests": [{"path": "nope"}]})
    assert result["errors"][0]["extensions"]["code"] == "FORBIDDEN_TARGET"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(
    ("accept", "media", "bad_status"),
    [
        (
            "application/graphql-response+json, application/json;q=0.9",
            "application/graphql-response+json",
            400,
        ),
        ("application/json", "application/json", 200),
        ("*/*", "application/json", 200),
    ],
    ids=["graphql-response", "json", "any"],
)
async def test_graphql_over_http_media_types(
    accept: str, media: str, bad_status: int, service: FakeService, gateway: TestClient
) -> None:
    service.route("GET", "/a", json={})
    good = await gateway.post(
        "/graphql",
        headers={"Accept": accept},
        json={"query": '{ batch(requests: [{path: "/a"}]) { items { status } } }'},
    )
    assert (good.status, good.content_type) == (200, media)
    bad = await gateway.post("/graphql", headers={"Accept": accept}, json={"query": "{ nope }"})
    assert (bad.status, bad.content_type) == (bad_status, media)
    assert "data" not in await bad.json()  # validation failed: no execution, no data entry
    unparsed = await gateway.post("/graphql", headers={"Accept": accept}, json={"query": "{"})
    assert (unparsed.status, unparsed.content_type) == (bad_status, media)
    assert "data" not in await unparsed.json()  # graphql-http audits D586 and 5E5B
    rejected = await gateway.post(
        "/graphql",
        headers={"Accept": accept},
        json={"query": '{ batch(requests: [{path: "x"}]) { items { status } } }'},
    )
    assert rejected.status == 200  # a rejected batch is a field error: data is present, null
    assert (await rejected.json())["data"] == {"batch": None}


async def test_a_websocket_upgrade_still_reaches_strawberry(gateway: TestClient) -> None:
    # BatchView.is_websocket_request only looks further when the request asks to upgrade.
    async with gateway.ws_connect("/graphql", protocols=["graphql-transport-ws"]) as ws:
        await ws.send_json({"type": "connection_init"})
        assert (await ws.receive_json(timeout=5))["type"] == "connection_ack"


async def test_select_is_bounded_in_paths(service: FakeService, graphql: GraphQL) -> None:
    service.route("GET", "/rows", json=[{f"k{n}": n for n in range(100)}] * 1000)
    many = [f"k{n}" for n in range(65)]
    result = await graphql(
        """query($s: [String!]) { batch(requests: [{path: "/rows"}]) {
             items { body(select: $s) } } }""",
        {"s": many},
    )
    (error,) = result["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert "65 paths; at most 64 (max_select_paths)" in error["message"]
    result = await graphql(
        """query($s: [String!]) { batch(requests: [{path: "/rows"}]) {
             items { body(select: $s) } } }""",
        {"s": many[:64]},
    )
    rows = result["data"]["batch"]["items"][0]["body"]
    assert len(rows) == 1000 and len(rows[0]) == 64


async def test_a_batch_runs_to_its_end_when_the_client_goes_away(
    service: FakeService, gateway: TestClient
) -> None:
    # docs/security.md "Client disconnect": a write that started is never left half-way, and the
    # items after it still run; only the answer has no one to go to.
    gate, done = asyncio.Event(), asyncio.Event()

    async def second(request: Any) -> Any:
        from aiohttp import web

        done.set()
        return web.json_response({})

    service.route("POST", "/first", gate=gate, json={"id": 1})
    service.route("POST", "/second", handler=second)
    body = json.dumps(
        [
            {"id": "first", "method": "POST", "path": "/first"},
            {"method": "POST", "path": "/second", "dependsOn": ["first"]},
        ]
    ).encode()
    _, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(
        b"POST /batch HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    await service.received()
    writer.transport.abort()
    gate.set()
    await asyncio.wait_for(done.wait(), 10)
    assert service.lines == ["POST /first", "POST /second"]


async def test_each_item_says_when_it_began_for_a_waterfall(
    graphql: Any, service: FakeService
) -> None:
    service.route("GET", "/a", json={"id": 1})
    service.route("GET", "/b/1", json={})
    query = """{ batch(requests: [
        {requestId: "a", path: "/a"},
        {requestId: "b", path: "/b/{resultOf(a).id}"},
        {requestId: "gone", path: "/missing"},
        {requestId: "skipped", path: "/b/{resultOf(gone).id}"}
    ]) { items { requestId startedMs durationMs } } }"""
    items = {i["requestId"]: i for i in (await graphql(query))["data"]["batch"]["items"]}
    a, b = items["a"], items["b"]
    # A dependent begins once its dependency has ended (ms, rounded to a microsecond).
    assert b["startedMs"] >= a["startedMs"] + a["durationMs"] - 0.002
    assert items["skipped"]["durationMs"] == 0
    gone = items["gone"]
    assert items["skipped"]["startedMs"] >= gone["startedMs"] + gone["durationMs"] - 0.002
    assert all(i["startedMs"] >= 0 for i in items.values())
