"""One engine, two doors: the same batch gives the same results through GraphQL and REST."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gqlbatch import create_app
from gqlbatch.ops.cli import demo_settings
from tests.conftest import graphql_caller

QUERY = """mutation($r: [SubRequestInput!]!, $o: BatchOptionsInput) {
  batch(requests: $r, options: $o) { items { requestId state status body error { code } } }
}"""

BATCHES: list[tuple[str, list[dict[str, Any]], dict[str, Any] | None]] = [
    (
        "reads",
        [{"requestId": "a", "path": "/users/1"}, {"requestId": "b", "path": "/posts/2"}],
        None,
    ),
    (
        "dependency-chain",
        [
            {"requestId": "u", "path": "/users/3"},
            {"requestId": "p", "path": "/posts", "query": {"userId": "{resultOf(u).id}"}},
            {"requestId": "c", "path": "/comments", "query": {"postId": "{resultOf(p)[0].id}"}},
        ],
        None,
    ),
    (
        "failure-and-skip",
        [
            {"requestId": "missing", "path": "/users/999"},
            {"requestId": "child", "path": "/users/{resultOf(missing).id}"},
            {"requestId": "ok", "path": "/users/2"},
        ],
        None,
    ),
    (
        "write-then-read",
        [
            {"requestId": "w", "method": "POST", "path": "/posts", "body": {"title": "t"}},
            {"requestId": "r", "path": "/posts/{resultOf(w).id}"},
        ],
        None,
    ),
    (
        "reference-not-found",
        [
            # A field the document lets a post have, past the end of this user's posts: known
            # missing only at run time (a field no answer can have is refused up front).
            {"requestId": "u", "path": "/posts", "query": {"userId": 1}},
            {"requestId": "x", "path": "/posts/{resultOf(u)[99].id}"},
        ],
        None,
    ),
    (
        "for-each-and-bulk",
        [
            {"requestId": "p", "path": "/posts", "query": {"userId": 4}},
            {
                "requestId": "c",
                "forEach": "{resultOf(p)[*].id}",
                "path": "/comments",
                "query": {"postId": "{item}"},
            },
        ],
        None,
    ),
    (
        "stop-on-error",
        [
            {"requestId": "bad", "path": "/users/0"},
            {"requestId": "after", "path": "/users/1"},
        ],
        {"mode": "SEQUENTIAL", "onError": "STOP"},
    ),
]


async def gateway(aiohttp_client: Any, aiohttp_server: Any) -> TestClient:
    from gqlbatch.ops.demo import sample_api

    server = await aiohttp_server(sample_api(), host="127.0.0.1")
    settings = demo_settings(str(server.make_url("")).rstrip("/"), {})
    client: TestClient = await aiohttp_client(create_app(settings))
    return client


@pytest.mark.parametrize(
    ("items", "options"), [(i, o) for _, i, o in BATCHES], ids=[name for name, _, _ in BATCHES]
)
async def test_graphql_and_rest_agree(
    items: list[dict[str, Any]],
    options: dict[str, Any] | None,
    aiohttp_client: Any,
    aiohttp_server: Any,
) -> None:
    # Each door gets its own fresh sample API, so writes in one do not change the other.
    via_graphql = await graphql_caller(await gateway(aiohttp_client, aiohttp_server))(
        QUERY, {"r": items, "o": options}
    )
    rest = await gateway(aiohttp_client, aiohttp_server)
    resp = await rest.post("/batch", json={"requests": items, **(options or {})})
    assert resp.status == 200
    via_rest = (await resp.json())["responses"]

    graphql_items = via_graphql["data"]["batch"]["items"]
    assert [_graphql_view(i) for i in graphql_items] == [_rest_view(r) for r in via_rest]


def _graphql_view(item: dict[str, Any]) -> tuple[Any, ...]:
    error = item["error"]["code"] if item["error"] else None
    return item["requestId"], item["state"], item["status"], item["body"], error


def _rest_view(response: dict[str, Any]) -> tuple[Any, ...]:
    error = response.get("error", {}).get("code")
    has_response = "error" not in response or response["error"]["code"] == "UPSTREAM_STATUS"
    status = response["status"] if has_response else None
    body = response["body"] if has_response else None
    return response["id"], response["state"], status, body, error


def test_a_graphql_input_reaches_the_engine_in_the_rest_form() -> None:
    # The GraphQL door hands parse_batch what the REST door sends: GraphQL names, nested
    # inputs as mappings, a null the same as an absent field, JSON values untouched.
    from gqlbatch.core.request import ITEM_KEYS
    from gqlbatch.core.wire import Method
    from gqlbatch.doors.graphql.inputs import (
        CompensationInput,
        HeaderInput,
        SubRequestInput,
        plain_input,
    )

    body = [{"title": "t"}]
    item = SubRequestInput(
        path="/posts",
        request_id="w",
        method=Method.POST,
        headers=[HeaderInput(name="X-A", value="1")],
        body=body,
        depends_on=["u"],
        timeout_ms=None,
        compensate=CompensationInput(path="/posts/{resultOf(w).id}"),
        idempotency_key="k1",
    )
    plain = plain_input(item)
    assert plain == {
        "path": "/posts",
        "requestId": "w",
        "method": "POST",
        "headers": [{"name": "X-A", "value": "1"}],
        "body": [{"title": "t"}],
        "dependsOn": ["u"],
        "compensate": {"path": "/posts/{resultOf(w).id}", "method": "DELETE"},
        "idempotencyKey": "k1",
    }
    assert plain["body"] is body  # not copied: a bulk import's bodies are large
    assert set(plain) <= ITEM_KEYS


async def test_each_door_applies_its_configured_options_and_the_client_wins(
    make_gateway: Any, upstream_url: str, service: Any
) -> None:
    # "Partial or total atomicity by configuration": [doors.json] stops at the first failure,
    # [doors.graphql] makes batches atomic; a client that sets an option keeps its own.
    from tests.conftest import graphql_caller

    service.route("GET", "/bad", status=500, json={})
    service.route("GET", "/ok", json={})
    service.route("POST", "/orders", status=201, json={"id": 5})
    service.route("DELETE", "/orders/5", status=204, body=b"")
    doors = {"json": {"mode": "SEQUENTIAL", "onError": "STOP"}, "graphql": {"atomic": True}}
    client = await make_gateway(upstream_url, door_options=doors)

    items = [{"path": "/bad"}, {"path": "/ok"}]
    resp = await client.post("/batch", json={"requests": items})
    assert [r["state"] for r in (await resp.json())["responses"]] == ["FAILED", "CANCELLED"]
    resp = await client.post("/batch", json={"requests": items, "onError": "CONTINUE"})
    assert [r["state"] for r in (await resp.json())["responses"]] == ["FAILED", "SUCCEEDED"]

    graphql = graphql_caller(client)
    query = """mutation($o: BatchOptionsInput) { batch(requests: [
        {requestId: "o", method: POST, path: "/orders",
         compensate: {path: "/orders/{resultOf(o).id}"}},
        {requestId: "x", path: "/bad"}
      ], options: $o) { rolledBack } }"""
    assert (await graphql(query))["data"]["batch"]["rolledBack"] is True
    assert service.lines[-3:] == ["POST /orders", "GET /bad", "DELETE /orders/5"]
    # An explicit atomic: false is the client's choice, not the door's.
    result = await graphql(
        query.replace('compensate: {path: "/orders/{resultOf(o).id}"}', ""),
        {"o": {"atomic": False}},
    )
    assert result["data"]["batch"]["rolledBack"] is False
