"""Operation batching: an array of GraphQL operations in one POST, as Apollo's BatchHttpLink,
graphql-request's `batchRequests` and gql's `execute_batch` send it (DESIGN §10a)."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes import FakeService

SCREEN = """query Screen($r: [SubRequestInput!]!) {
  batch(requests: $r) { items { requestId status } }
}"""

# The bytes Apollo Client's BatchHttpLink posts: one JSON array, each operation with its
# operationName, variables, extensions and query, and Apollo's Accept header.
APOLLO_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/graphql-response+json,application/json;q=0.9",
}


def operation(name: str, paths: list[str]) -> dict[str, Any]:
    requests = [{"requestId": f"{name}-{n}", "path": path} for n, path in enumerate(paths)]
    return {
        "operationName": "Screen",
        "variables": {"r": requests},
        "extensions": {"clientLibrary": {"name": "@apollo/client", "version": "4.0.0"}},
        "query": SCREEN,
    }


async def test_an_array_of_operations_gets_an_array_of_answers(
    gateway: Any, service: FakeService
) -> None:
    service.route("GET", "/a", json={"id": "a"})
    service.route("GET", "/b", json={"id": "b"})
    body = json.dumps([operation("left", ["/a"]), operation("right", ["/a", "/b"])])
    resp = await gateway.post("/graphql", data=body, headers=APOLLO_HEADERS)
    assert resp.status == 200
    answers = await resp.json()
    assert [[i["requestId"] for i in a["data"]["batch"]["items"]] for a in answers] == [
        ["left-0"],
        ["right-0", "right-1"],
    ]
    assert all(i["status"] == 200 for a in answers for i in a["data"]["batch"]["items"])


async def test_the_operations_of_one_request_share_its_limits(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    service.route("GET", "/a", json={})
    gateway = await make_gateway(upstream_url, max_items=3)
    body = [operation("one", ["/a", "/a"]), operation("two", ["/a", "/a"])]
    answers = await (await gateway.post("/graphql", json=body)).json()
    codes = [(a.get("errors") or [{}])[0].get("extensions", {}).get("code") for a in answers]
    # Four items against a limit of three for the request: one operation is refused whole.
    assert sorted(codes, key=str) == ["BATCH_TOO_LARGE", None]


async def test_too_many_operations_are_refused_before_any_runs(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    gateway = await make_gateway(upstream_url, max_operations=2)
    body = [operation(f"op{n}", ["/a"]) for n in range(3)]
    resp = await gateway.post("/graphql", json=body)
    assert resp.status == 413
    error = (await resp.json())["errors"][0]
    assert error["extensions"]["code"] == "BATCH_TOO_LARGE"
    assert "max_operations" in error["message"]
    assert service.lines == []


async def test_an_array_must_hold_operations(gateway: Any) -> None:
    for body in ([operation("ok", ["/a"]), 7], []):
        resp = await gateway.post("/graphql", json=body)
        assert resp.status == 400
        assert (await resp.json())["errors"][0]["extensions"]["code"] == "INVALID_INPUT"


async def test_gqls_execute_batch_gets_each_answer(
    aiohttp_server: Any, upstream_url: str, service: FakeService
) -> None:
    from gql import Client, GraphQLRequest, gql
    from gql.transport.aiohttp import AIOHTTPTransport

    from gqlbatch import Settings, create_app

    service.route("GET", "/a", json={"id": "a"})
    server = await aiohttp_server(
        create_app(Settings.from_upstream_urls([upstream_url])), host="127.0.0.1"
    )
    transport = AIOHTTPTransport(url=str(server.make_url("/graphql")))
    query = '{ batch(requests: [{path: "/a"}]) { items { status } } }'
    async with Client(transport=transport) as session:
        answers = await session.execute_batch([GraphQLRequest(gql(query))] * 2)
    assert answers == [{"batch": {"items": [{"status": 200}]}}] * 2
    assert service.lines == ["GET /a", "GET /a"]  # two operations: two batches, one call each


async def test_new_documents_of_one_request_are_checked_within_its_time(
    make_gateway: Any, upstream_url: str
) -> None:
    # Issue 24, finding 15: ten distinct documents in one POST held the loop 0.94 s, each
    # parsed and validated in turn. The request's documents now share a time to be checked
    # in (max_document_check_ms, 250 ms); a document seen before costs next to nothing.
    gateway = await make_gateway(upstream_url, max_document_check_ms=5)

    def document(n: int) -> dict[str, Any]:
        fields = " ".join(f"f{n}_{i}: __typename" for i in range(40))
        return {"query": f"query Op{n} {{ {fields} }}"}

    body = json.dumps([document(n) for n in range(10)])
    answers = await (await gateway.post("/graphql", data=body, headers=APOLLO_HEADERS)).json()
    checked = [a for a in answers if "data" in a]
    refused = [a for a in answers if "data" not in a]
    assert checked and refused  # the first within the time, the rest past it
    assert {a["errors"][0]["extensions"]["code"] for a in refused} == {"QUERY_TOO_COMPLEX"}
    assert "max_document_check_ms" in refused[0]["errors"][0]["message"]
    # Each alone is checked, and then known: sent again together, all of them run.
    for n in range(10):
        await gateway.post("/graphql", json=document(n))
    again = await (await gateway.post("/graphql", data=body, headers=APOLLO_HEADERS)).json()
    assert all("data" in answer for answer in again)
