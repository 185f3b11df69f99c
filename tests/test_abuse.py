"""Hostile requests, as raw bytes, through both doors: each gets a 4xx with a code, and the
upstream hears nothing. Then the limits that hold for a whole HTTP request (aliases), the
bytes a batch may render and read, and the headers a client may not repeat.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gqlbatch import Settings, create_app
from tests.conftest import graphql_caller
from tests.fakes import FakeService

JSON = {"Content-Type": "application/json"}
MUTATION = (
    'mutation($b: JSON) { batch(requests: [{method: POST, path: "/p", body: $b}]) { replayed } }'
)


def gql(variables: str) -> str:
    """A GraphQL body whose variable $b is *variables*, as raw JSON text."""
    return '{"query": ' + json.dumps(MUTATION) + ', "variables": {"b": ' + variables + "}}"


def multipart(part: bytes, boundary: str = "b") -> tuple[bytes, dict[str, str]]:
    body = (
        f"--{boundary}\r\nContent-Type: application/http\r\n\r\n".encode()
        + part
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/mixed; boundary={boundary}"}


DEEP = "[" * 500 + "]" * 500
BIG_INT = "9" * 5000
REQUESTS: list[tuple[str, str, bytes | str, dict[str, str], str]] = [
    # (id, path, body, headers, code)
    (
        "rest-deep",
        "/batch",
        f'[{{"path": "/p", "method": "POST", "body": {DEEP}}}]',
        JSON,
        "INVALID_INPUT",
    ),
    ("gql-deep", "/graphql", gql(DEEP), JSON, "INVALID_INPUT"),
    (
        "rest-nan",
        "/batch",
        '[{"path": "/p", "method": "POST", "body": NaN}]',
        JSON,
        "INVALID_INPUT",
    ),
    (
        "rest-inf",
        "/batch",
        '[{"path": "/p", "method": "POST", "body": 1e400}]',
        JSON,
        "INVALID_INPUT",
    ),
    ("gql-nan", "/graphql", gql("NaN"), JSON, "INVALID_INPUT"),
    ("gql-big-int-variable", "/graphql", gql(BIG_INT), JSON, "INVALID_INPUT"),
    (
        "rest-big-int",
        "/batch",
        f'[{{"path": "/p", "method": "POST", "body": {BIG_INT}}}]',
        JSON,
        "INVALID_INPUT",
    ),
    ("rest-timeout-1e400", "/batch", '[{"path": "/p", "timeoutMs": 1e400}]', JSON, "INVALID_INPUT"),
    ("rest-upstream-list", "/batch", '[{"path": "/p", "upstream": ["a"]}]', JSON, "INVALID_INPUT"),
    (
        "rest-upstream-object",
        "/batch",
        '[{"path": "/p", "upstream": {"a": 1}}]',
        JSON,
        "INVALID_INPUT",
    ),
    ("gql-null", "/graphql", "null", JSON, "INVALID_INPUT"),
    ("gql-number", "/graphql", "5", JSON, "INVALID_INPUT"),
    ("gql-list-of-numbers", "/graphql", "[1, 2]", JSON, "INVALID_INPUT"),
    ("gql-not-json", "/graphql", "{nope", JSON, "INVALID_INPUT"),
    (
        "gql-float-literal",
        "/graphql",
        json.dumps(
            {
                "query": 'mutation { batch(requests: [{method: POST, path: "/p", '
                "body: {x: 1e400}}]) { replayed } }"
            }
        ),
        JSON,
        "QUERY_TOO_COMPLEX",
    ),
    (
        "gql-int-literal",
        "/graphql",
        json.dumps(
            {
                "query": 'mutation { batch(requests: [{method: POST, path: "/p", body: {x: '
                + BIG_INT
                + "}}]) { replayed } }"
            }
        ),
        JSON,
        "QUERY_TOO_COMPLEX",
    ),
    (
        "gql-nested-document",
        "/graphql",
        json.dumps({"query": "{ a" + " { a" * 3000 + " }" * 3001}),
        JSON,
        "QUERY_TOO_COMPLEX",
    ),
    (
        "gql-huge-document",
        "/graphql",
        json.dumps({"query": "{ __typename " + "#" * 300_000 + "\n}"}),
        JSON,
        "REQUEST_TOO_LARGE",
    ),
    ("rest-utf8-garbage", "/batch", b'[{"path": "/p\xff"}]', JSON, "INVALID_INPUT"),
]
MULTIPART = [
    (
        "part-not-utf8",
        *multipart(b"POST /p HTTP/1.1\r\nContent-Type: text/plain\r\n\r\n\xff\xfe"),
        "INVALID_INPUT",
    ),
    (
        "part-json-deep",
        *multipart(b"POST /p HTTP/1.1\r\nContent-Type: application/json\r\n\r\n" + DEEP.encode()),
        "INVALID_INPUT",
    ),
    (
        "boundary-over-70",
        *multipart(b"GET /p HTTP/1.1\r\n\r\n", boundary="x" * 80),
        "INVALID_INPUT",
    ),
    ("no-boundary", b"--b--", {"Content-Type": "multipart/mixed"}, "INVALID_INPUT"),
    # the stdlib's email parser raises IndexError on an RFC 2231 parameter with no value
    (
        "content-type-crash",
        b"--b--",
        {"Content-Type": "multipart/mixed; boundary=kE;e*"},
        "INVALID_INPUT",
    ),
    (
        "too-many-parts",
        b"--b\r\nContent-Type: application/http\r\n\r\nGET /p HTTP/1.1\r\n\r\n\r\n" * 101
        + b"--b--\r\n",
        {"Content-Type": "multipart/mixed; boundary=b"},
        "BATCH_TOO_LARGE",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "headers", "code"),
    [r[1:] for r in REQUESTS] + [("/batch", *m[1:]) for m in MULTIPART],
    ids=[r[0] for r in REQUESTS] + [m[0] for m in MULTIPART],
)
async def test_a_hostile_request_is_a_4xx_with_a_code_and_sends_nothing(
    path: str,
    body: bytes | str,
    headers: dict[str, str],
    code: str,
    gateway: TestClient,
    service: FakeService,
) -> None:
    resp = await gateway.post(path, data=body, headers=headers)
    answer = await resp.json()
    if path == "/graphql":
        # GraphQL over HTTP: under application/json a document refused by validation is a
        # 200 whose `data` is null; a request gqlbatch refuses before GraphQL is a 4xx.
        assert resp.status in (200, 400, 413), answer
        assert answer.get("data") is None, answer
        error = answer["errors"][0]["extensions"]
    else:
        assert 400 <= resp.status < 500, answer
        error = answer["error"]
    assert error["code"] == code, answer
    assert service.calls == []


async def test_every_answer_but_a_read_only_get_says_no_store(
    gateway: TestClient, service: FakeService
) -> None:
    service.route("GET", "/a", json={})
    query = '{ batch(requests: [{path: "/a"}]) { replayed } }'
    answers = [
        await gateway.post("/graphql", json={"query": query}),
        await gateway.post("/batch", json=[{"path": "/a"}]),
        await gateway.post("/batch", json=[{"path": "//evil"}]),
        await gateway.post("/graphql", data="null", headers=JSON),
        await gateway.get(
            "/graphql", params={"query": '{ batch(requests: [{path: "//x"}]) { replayed } }'}
        ),
    ]
    assert [r.headers.get("Cache-Control") for r in answers] == ["private, no-store"] * 5
    # A GET that ran cleanly is cacheable as its upstreams allow (tests/test_http_cache.py).
    read = await gateway.get("/graphql", params={"query": query})
    assert read.headers["Cache-Control"] == "public, no-cache"


async def test_a_repeated_credential_header_is_refused(
    gateway: TestClient, service: FakeService
) -> None:
    headers = [("Authorization", "Bearer alice"), ("Authorization", "Bearer bob")]
    rest = await gateway.post("/batch", json=[{"path": "/a"}], headers=headers)
    assert rest.status == 400
    assert (await rest.json())["error"]["problems"][0]["field"] == "Authorization"
    graphql = await gateway.post(
        "/graphql",
        json={"query": '{ batch(requests: [{path: "/a"}]) { replayed } }'},
        headers=headers,
    )
    assert (await graphql.json())["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
    assert service.calls == []


async def test_introspection_can_be_switched_off(make_gateway: Any, upstream_url: str) -> None:
    closed = graphql_caller(await make_gateway(upstream_url, introspection=False))
    result = await closed("{ __schema { queryType { name } } }")
    assert "introspection" in result["errors"][0]["message"].lower()
    assert (await closed("{ __typename }"))["data"] == {"__typename": "Query"}
    open_ = graphql_caller(await make_gateway(upstream_url))
    assert (await open_("{ __schema { queryType { name } } }"))["data"]


# --------------------------------------------------------------------------------------------
# Limits that hold for the whole HTTP request


def aliases(count: int, calls: int) -> str:
    requests = ", ".join(['{path: "/a"}'] * calls)
    fields = " ".join(f"b{n}: batch(requests: [{requests}]) {{ replayed }}" for n in range(count))
    return f"mutation {{ {fields} }}"


async def test_aliases_share_the_items_limit(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    service.route("GET", "/a", json={})
    client = graphql_caller(await make_gateway(upstream_url, max_items=10, max_fanout=1000))
    result = await client(aliases(count=3, calls=4))
    data, (error,) = result["data"], result["errors"]
    # The third is refused, and the other two keep their results (batch is nullable).
    assert data == {"b0": {"replayed": False}, "b1": {"replayed": False}, "b2": None}
    assert (error["path"], error["extensions"]["code"]) == (["b2"], "BATCH_TOO_LARGE")
    assert "left to this request" in error["message"]
    assert len(service.calls) == 2  # each batch's four identical reads are one call


async def test_aliases_share_the_fan_out_limit(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    # 10 aliases x 200 calls once made 2,000 upstream calls under a max_fanout of 1,000.
    service.route("GET", "/a", json={})
    service.route("GET", "/list", json=list(range(200)))
    client = graphql_caller(await make_gateway(upstream_url, max_fanout=500))
    fan = (
        '{requestId: "l", path: "/list"}, '
        '{forEach: "{resultOf(l)}", path: "/a", query: {n: "{item}"}}'
    )
    fields = " ".join(f"b{n}: batch(requests: [{fan}]) {{ items {{ state }} }}" for n in range(4))
    result = await client(f"mutation {{ {fields} }}")
    states = [result["data"][f"b{n}"]["items"][1]["state"] for n in range(4)]
    assert states == ["SUCCEEDED", "SUCCEEDED", "FAILED", "FAILED"]
    assert len([c for c in service.calls if c.path == "/a"]) <= 500


# --------------------------------------------------------------------------------------------
# Bytes rendered and read


async def test_a_call_rendered_past_its_size_fails_unsent(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    service.route("GET", "/big", json={"blob": "x" * 5_000})
    client = await make_gateway(upstream_url, max_rendered_call_bytes=4_000)
    resp = await client.post(
        "/batch",
        json=[
            {"id": "big", "path": "/big"},
            {"id": "copy", "method": "POST", "path": "/p", "body": {"b": "{resultOf(big)}"}},
            {"id": "small", "method": "POST", "path": "/p", "body": {"b": "{resultOf(big).blob}"}},
        ],
    )
    out = {r["id"]: r for r in (await resp.json())}
    assert out["copy"]["error"]["code"] == "REQUEST_TOO_LARGE"
    assert "max_rendered_call_bytes (4000)" in out["copy"]["error"]["message"]
    assert out["small"]["error"]["code"] == "REQUEST_TOO_LARGE"
    assert service.lines == ["GET /big"]


async def test_a_call_that_embeds_a_result_again_and_again_stops_at_its_cap(
    aiohttp_client: Any, upstream_url: str, service: FakeService
) -> None:
    # Issue 24, finding 3: a 1.4 KB item embedding a 0.5 MB result 100 times held the loop
    # 8 s, rendering 50 MB before its size was looked at; its item then answered 500.
    service.route("GET", "/half", json={"blob": "x" * 500_000})
    client = await aiohttp_client(create_app(Settings.from_upstream_urls([upstream_url])))
    copies = {"copies": ["{resultOf(h)}"] * 100}
    batch = [
        {"id": "h", "path": "/half"},
        {"id": "p", "method": "POST", "path": "/p", "body": copies},
    ]
    out = {r["id"]: r for r in await (await client.post("/batch", json=batch)).json()}
    assert out["p"]["status"] == 413
    assert out["p"]["error"]["code"] == "REQUEST_TOO_LARGE"
    assert service.lines == ["GET /half"]


async def test_expansion_is_capped_for_the_whole_batch(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    # A 1 KB request once rendered 50 MB upstream: 100 copies of one large result.
    service.route("GET", "/big", json={"blob": "x" * 10_000})
    service.route("POST", "/p", json={})
    client = await make_gateway(upstream_url, max_rendered_batch_bytes=50_000)
    copies = [{"method": "POST", "path": "/p", "body": "{resultOf(big)}"} for _ in range(20)]
    resp = await client.post("/batch", json=[{"id": "big", "path": "/big"}, *copies])
    out = (await resp.json())[1:]
    sent = [r for r in out if r["state"] == "SUCCEEDED"]
    refused = [r for r in out if r.get("error", {}).get("code") == "BATCH_TOO_LARGE"]
    assert len(sent) == 4 and len(refused) == 16  # 4 x ~10 KB fit in 50 KB
    assert len([c for c in service.calls if c.method == "POST"]) == 4


async def test_response_bytes_are_capped_per_request(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    for n in range(6):
        service.route("GET", f"/r{n}", text="x" * 10_000)
    client = await make_gateway(upstream_url, max_batch_response_bytes=35_000, max_concurrency=1)
    resp = await client.post(
        "/batch", json={"requests": [{"path": f"/r{n}"} for n in range(6)], "mode": "SEQUENTIAL"}
    )
    out = (await resp.json())["responses"]
    assert [r["state"] for r in out] == ["SUCCEEDED"] * 3 + ["FAILED"] * 3
    assert {r["error"]["code"] for r in out[3:]} == {"BATCH_TOO_LARGE"}
    result = await graphql_caller(client)(
        '{ batch(requests: [{path: "/r0"}]) { stats { responseBytes } } }'
    )
    assert result["data"]["batch"]["stats"]["responseBytes"] == 10_000


async def test_a_literal_fan_out_of_max_fanout_elements_is_counted_once(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    client = await make_gateway(upstream_url, max_fanout=50)
    resp = await client.post("/batch", json=[{"forEach": list(range(50)), "path": "/x/{item}"}])
    (out,) = await resp.json()
    assert out["state"] == "SUCCEEDED" and len(out["elements"]) == 50
    assert len(service.calls) == 50


# --------------------------------------------------------------------------------------------
# Issue 24, finding 16: errors that should be clear answers


async def test_a_subscription_sent_as_a_plain_request_is_told_where_it_goes(
    gateway: TestClient, service: FakeService
) -> None:
    document = 'subscription { batch(requests: [{path: "/a"}]) { __typename } }'
    answer = await (await gateway.post("/graphql", json={"query": document})).json()
    error = answer["errors"][0]
    assert error["extensions"]["code"] == "INVALID_INPUT"  # not INTERNAL_ERROR
    assert "over a websocket" in error["message"]
    assert service.calls == []  # its batch never ran


async def test_an_integer_past_what_an_option_takes_is_refused(
    gateway: TestClient, service: FakeService
) -> None:
    huge = "1" + "0" * 400
    for body in (
        f'[{{"path": "/a", "timeoutMs": {huge}}}]',
        f'{{"requests": [{{"path": "/a"}}], "timeoutMs": {huge}}}',
    ):
        resp = await gateway.post("/batch", data=body, headers={"Content-Type": "application/json"})
        assert resp.status == 400
        problem = (await resp.json())["error"]["problems"][0]
        assert problem["code"] == "INVALID_INPUT" and "1 to 2147483647" in problem["message"]
        assert len(problem["message"]) < 200
    assert service.calls == []


async def test_an_async_batch_is_refused_for_a_key_the_batch_door_refuses(
    gateway: TestClient, service: FakeService
) -> None:
    for prefer in ({"Prefer": "respond-async"}, {}):
        resp = await gateway.post(
            "/batch", json=[{"path": "/a"}], headers={"Idempotency-Key": "k" * 300, **prefer}
        )
        assert resp.status == 400, prefer
        assert "Idempotency-Key" in (await resp.json())["error"]["message"]
    assert service.calls == []


async def test_a_body_declared_too_large_is_refused_before_it_is_sent(
    gateway: TestClient,
) -> None:
    url = gateway.make_url("/batch")
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        b"POST /batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000000\r\nExpect: 100-continue\r\n\r\n"
    )
    head = await reader.readuntil(b"\r\n\r\n")  # 413 at once, not "100 Continue"
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in head
    assert b"REQUEST_TOO_LARGE" in body
