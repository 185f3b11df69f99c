"""The REST door: POST /batch with JSON and multipart, against real loopback upstreams.

Fixtures re-type the examples of the formats' public documentation (Microsoft Graph JSON
batching, UCWA multipart/batching, Aspose RequestId/DependsOn parts, Google's batch parts).
"""

from __future__ import annotations

import asyncio
import json
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from gqlbatch import Settings, create_app
from tests.fakes import FakeService


@pytest.fixture
async def sample_gateway(make_gateway: Any, sample_url: str) -> TestClient:
    return await make_gateway(sample_url)


async def post_json(client: TestClient, body: Any, **headers: str) -> tuple[int, Any, Any]:
    resp = await client.post("/batch", json=body, headers=headers)
    return resp.status, await resp.json(), resp.headers


async def test_requests_envelope_answers_in_order(sample_gateway: TestClient) -> None:
    status, out, _ = await post_json(
        sample_gateway,
        {
            "requests": [
                {"method": "GET", "path": "/users/2"},
                {"method": "POST", "path": "/posts", "body": {"title": "new", "userId": 2}},
                {"method": "GET", "path": "/users/999"},
            ]
        },
    )
    assert status == 200
    assert [(r["id"], r["status"]) for r in out["responses"]] == [
        ("0", 200),
        ("1", 201),
        ("2", 404),
    ]
    assert out["responses"][0]["body"]["name"] == "Grace"
    assert out["responses"][1]["body"] == {"title": "new", "userId": 2, "id": 101}
    assert out["responses"][2]["error"]["code"] == "UPSTREAM_STATUS"


async def test_microsoft_graph_style_batch(sample_gateway: TestClient) -> None:
    # After the JSON batching example in Microsoft Graph's documentation: ids, relative urls
    # without a leading slash, a header object, dependsOn; failed dependencies answer 424.
    status, out, _ = await post_json(
        sample_gateway,
        {
            "requests": [
                {"id": "1", "method": "GET", "url": "users/1"},
                {
                    "id": "2",
                    "dependsOn": ["1"],
                    "method": "POST",
                    "url": "/posts",
                    "body": {"title": "Lunch", "userId": "{resultOf(1).id}"},
                    "headers": {"Content-Type": "application/json"},
                },
                {"id": "3", "method": "GET", "url": "/users/999"},
                {"id": "4", "dependsOn": ["3"], "method": "GET", "url": "/posts?userId=1"},
            ]
        },
    )
    assert status == 200
    r1, r2, r3, r4 = out["responses"]
    assert [r["id"] for r in out["responses"]] == ["1", "2", "3", "4"]
    assert r1["headers"]["Content-Type"].startswith("application/json")
    assert (r2["status"], r2["body"]["userId"], r2["headers"]["Location"]) == (201, 1, "/posts/101")
    assert (r3["status"], r4["status"], r4["state"]) == (404, 424, "SKIPPED")
    assert r4["body"]["error"]["code"] == "FAILED_DEPENDENCY"


async def test_bare_array_with_post_put_and_delete(
    service: FakeService, gateway: TestClient
) -> None:
    service.route("POST", "/items", status=201, json={"id": 7})
    service.route("PUT", "/items/7", json={"id": 7, "name": "b"})
    service.route("DELETE", "/items/7", status=204, body=b"")
    status, out, _ = await post_json(
        gateway,
        [
            {"id": "create", "method": "POST", "path": "/items", "body": {"name": "a"}},
            {
                "id": "update",
                "method": "PUT",
                "path": "/items/{resultOf(create).id}",
                "body": {"name": "b"},
            },
            {"id": "delete", "method": "DELETE", "path": "/items/7", "dependsOn": ["update"]},
        ],
    )
    assert status == 200
    # A bare array in, a bare array of responses out, in order (DESIGN §2).
    assert [(r["id"], r["status"]) for r in out] == [
        ("create", 201),
        ("update", 200),
        ("delete", 204),
    ]
    assert out[2]["body"] is None
    assert service.lines == ["POST /items", "PUT /items/7", "DELETE /items/7"]
    assert service.calls[1].json == {"name": "b"}


async def test_options_from_body_and_prefer_header(
    service: FakeService, gateway: TestClient
) -> None:
    service.route("GET", "/bad", status=500, json={})
    service.route("GET", "/ok", json={})
    batch = [{"path": "/bad"}, {"path": "/ok"}]
    _, stop, _ = await post_json(
        gateway, {"requests": batch, "mode": "SEQUENTIAL", "onError": "STOP"}
    )
    assert [r["state"] for r in stop["responses"]] == ["FAILED", "CANCELLED"]
    _, odata, _ = await post_json(
        gateway,
        {"requests": batch, "options": {"mode": "SEQUENTIAL"}},
        Prefer="odata.continue-on-error=false",
    )
    assert [r["status"] for r in odata["responses"]] == [500, 424]
    _, cont, _ = await post_json(
        gateway, {"requests": batch, "mode": "SEQUENTIAL"}, Prefer="odata.continue-on-error"
    )
    assert [r["status"] for r in cont["responses"]] == [500, 200]


async def test_invalid_batch_is_400_with_problems_and_nothing_runs(
    service: FakeService, gateway: TestClient
) -> None:
    status, out, _ = await post_json(
        gateway,
        {
            "requests": [
                {"id": "a", "path": "/a", "dependsOn": ["b"]},
                {"id": "b", "path": "/b", "dependsOn": ["a"]},
                {"id": "b", "url": "http://evil.test/x"},
            ]
        },
    )
    assert status == 400
    assert out["error"]["code"] == "INVALID_INPUT"
    assert {p["code"] for p in out["error"]["problems"]} == {
        "DEPENDENCY_CYCLE",
        "DUPLICATE_REQUEST_ID",
        "FORBIDDEN_TARGET",
    }
    assert service.calls == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"requests": [{"path": "/batch"}]}, "NESTED_BATCH"),
        ({"requests": [{"path": "/graphql", "method": "POST"}]}, "NESTED_BATCH"),
        ({"items": []}, "INVALID_INPUT"),
        ({"requests": [{"path": "/a"}], "atomic": "yes"}, "INVALID_INPUT"),
    ],
    ids=["batch", "graphql", "no-requests", "atomic"],
)
async def test_bad_batches_are_400(
    body: Any, code: str, service: FakeService, gateway: TestClient
) -> None:
    status, out, _ = await post_json(gateway, body)
    assert (status, out["error"]["code"]) == (400, code)
    assert service.calls == []


async def test_too_many_items_is_413(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    client = await make_gateway(upstream_url, max_items=2)
    status, out, _ = await post_json(client, [{"path": "/a"}] * 3)
    assert (status, out["error"]["code"]) == (413, "BATCH_TOO_LARGE")
    assert service.calls == []


async def test_body_over_the_size_limit_is_413(make_gateway: Any, upstream_url: str) -> None:
    client = await make_gateway(upstream_url, max_request_bytes=1000)
    big = [{"path": "/a", "body": {"x": "y" * 2000}}]
    status, out, _ = await post_json(client, big)
    assert (status, out["error"]["code"]) == (413, "REQUEST_TOO_LARGE")
    resp = await client.post(
        "/batch",
        data=_multipart([("GET /a", {}, "x" * 2000)]),
        headers={"Content-Type": "multipart/mixed; boundary=b"},
    )
    assert resp.status == 413


async def test_unknown_content_type_is_415(gateway: TestClient) -> None:
    resp = await gateway.post("/batch", data="GET /a", headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    error = (await resp.json())["error"]
    assert error["code"] == "INVALID_INPUT"
    assert [p["field"] for p in error["problems"]] == ["Content-Type"]  # listed like any other


async def test_not_json_is_400(gateway: TestClient) -> None:
    resp = await gateway.post("/batch", data="{nope", headers={"Content-Type": "application/json"})
    assert resp.status == 400


async def test_over_the_outstanding_limit_is_429_and_nothing_runs(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    # The limit counts calls really in flight: alice's first batch holds three (its two
    # identical /slow/1 reads are one call), so her next batch is refused, whole.
    gate = asyncio.Event()
    for n in (1, 2, 3):
        service.route("GET", f"/slow/{n}", gate=gate, json={})
    service.route("GET", "/fast", json={})
    client = await make_gateway(upstream_url, max_outstanding_per_client=3, retry_after_s=2)
    alice = {"Authorization": "Bearer alice"}
    slow = [{"path": "/slow/1"}, {"path": "/slow/1"}, {"path": "/slow/2"}, {"path": "/slow/3"}]
    first = asyncio.create_task(client.post("/batch", json=slow, headers=alice))
    await service.received(3)
    status, out, headers = await post_json(client, [{"path": "/fast"}], **alice)
    assert (status, headers["Retry-After"], out["error"]["code"]) == (429, "2", "TOO_MANY_REQUESTS")
    assert out["error"]["retryAfter"] == 2
    other, _, _ = await post_json(client, [{"path": "/fast"}], Authorization="Bearer bob")
    assert other == 200
    calls_before_release = len(service.calls)
    gate.set()
    assert (await first).status == 200
    assert calls_before_release == 3 + 1  # alice's three, and bob's /fast
    again, _, _ = await post_json(client, [{"path": "/fast"}], **alice)
    assert again == 200


async def test_graphql_door_refuses_over_the_limit_with_retry_after(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    gate = asyncio.Event()
    service.route("GET", "/slow", gate=gate, json={})
    client = await make_gateway(upstream_url, max_outstanding_per_client=1)
    query = 'mutation { batch(requests: [{path: "/slow"}]) { items { status } } }'
    first = asyncio.create_task(client.post("/graphql", json={"query": query}))
    await service.received()
    second = await (await client.post("/graphql", json={"query": query})).json()
    extensions = second["errors"][0]["extensions"]
    assert (extensions["code"], extensions["retryAfter"]) == ("TOO_MANY_REQUESTS", 1)
    gate.set()
    await first
    assert len(service.calls) == 1


# --------------------------------------------------------------------------------------------
# Multipart


def _multipart(
    parts: list[tuple[str, dict[str, str], str]], boundary: str = "b", newline: str = "\r\n"
) -> bytes:
    chunks = []
    for request, headers, body in parts:
        part_headers = {"Content-Type": "application/http", **headers}
        head = newline.join(f"{k}: {v}" for k, v in part_headers.items())
        chunks.append(
            f"--{boundary}{newline}{head}{newline}{newline}{request}{newline}{newline}{body}"
        )
    return (newline.join(chunks) + f"{newline}--{boundary}--{newline}").encode()


def _parse_multipart(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    return [(dict(p.items()), p.get_payload(decode=True)) for p in message.iter_parts()]


def _http(payload: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = payload.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


async def test_multipart_batching_two_gets(sample_gateway: TestClient) -> None:
    # After UCWA's multipart/batching example: boundary, application/http; msgtype=request
    # parts with full request lines, Host and Accept headers.
    boundary = "77f2569d-c005-442b-b856-782305305e5f"
    body = (
        f"--{boundary}\r\n"
        "Content-Type: application/http; msgtype=request\r\n\r\n"
        "GET /users/1 HTTP/1.1\r\nHost: fe1.contoso.com\r\nAccept: application/json\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: application/http; msgtype=request\r\n\r\n"
        "GET /posts/3 HTTP/1.1\r\nHost: fe1.contoso.com\r\nAccept: application/json\r\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    resp = await sample_gateway.post(
        "/batch", data=body, headers={"Content-Type": f"multipart/batching;boundary={boundary}"}
    )
    assert resp.status == 200
    assert resp.content_type == "multipart/batching"
    parts = _parse_multipart(resp.headers["Content-Type"], await resp.read())
    assert all(h["Content-Type"].startswith("application/http") for h, _ in parts)
    (s1, h1, b1), (s2, _, b2) = (_http(p) for _, p in parts)
    assert (s1, s2) == (200, 200)
    assert h1["Content-Type"].startswith("application/json")
    assert json.loads(b1)["name"] == "Ada" and json.loads(b2)["id"] == 3


async def test_aspose_style_parts_with_depends_on_and_result_of(sample_gateway: TestClient) -> None:
    good_body = _multipart(
        [
            (
                "POST /posts HTTP/1.1\r\nContent-Type: application/json",
                {"RequestId": "create"},
                '{"title": "aspose", "userId": 3}',
            ),
            (
                "GET /posts/{resultOf(create).id} HTTP/1.1",
                {"RequestId": "read", "DependsOn": "create"},
                "",
            ),
        ]
    )
    resp = await sample_gateway.post(
        "/batch", data=good_body, headers={"Content-Type": "multipart/mixed; boundary=b"}
    )
    assert resp.status == 200 and resp.content_type == "multipart/mixed"
    parts = _parse_multipart(resp.headers["Content-Type"], await resp.read())
    (s1, _, b1), (s2, _, b2) = (_http(p) for _, p in parts)
    assert (s1, s2) == (201, 200)
    assert json.loads(b1) == json.loads(b2) == {"title": "aspose", "userId": 3, "id": 101}


async def test_google_style_parts_echo_content_id(sample_gateway: TestClient) -> None:
    # Google's batch parts: no HTTP version, no Host, a Content-ID to echo.
    body = _multipart(
        [
            ("GET /users/1", {"Content-ID": "<item1:12930812@barnyard.example.com>"}, ""),
            ("GET /users/999", {"Content-ID": "<item2:12930812@barnyard.example.com>"}, ""),
        ],
        boundary="batch_foobarbaz",
    )
    resp = await sample_gateway.post(
        "/batch", data=body, headers={"Content-Type": "multipart/mixed; boundary=batch_foobarbaz"}
    )
    parts = _parse_multipart(resp.headers["Content-Type"], await resp.read())
    assert [h["Content-ID"] for h, _ in parts] == [
        "<item1:12930812@barnyard.example.com>",
        "<item2:12930812@barnyard.example.com>",
    ]
    assert [_http(p)[0] for _, p in parts] == [200, 404]


async def test_multipart_with_bare_newlines_and_absolute_self_urls(
    sample_gateway: TestClient,
) -> None:
    host = f"{sample_gateway.host}:{sample_gateway.port}"
    # MIME framing is CRLF, as RFC 2046 requires; the HTTP message inside may use bare LF.
    body = _multipart([(f"GET http://{host}/users/2 HTTP/1.1\nAccept: application/json", {}, "")])
    resp = await sample_gateway.post(
        "/batch", data=body, headers={"Content-Type": "multipart/mixed; boundary=b"}
    )
    parts = _parse_multipart(resp.headers["Content-Type"], await resp.read())
    assert json.loads(_http(parts[0][1])[2])["name"] == "Grace"


async def test_malformed_multipart_is_400_not_a_crash(sample_gateway: TestClient) -> None:
    lf_only = _multipart([("GET /users/1", {}, "")], newline="\n")
    resp = await sample_gateway.post(
        "/batch", data=lf_only, headers={"Content-Type": "multipart/mixed; boundary=b"}
    )
    assert resp.status == 400
    assert "malformed" in (await resp.json())["error"]["message"]
    no_boundary = await sample_gateway.post(
        "/batch", data=b"x", headers={"Content-Type": "multipart/mixed"}
    )
    assert no_boundary.status == 400


@pytest.mark.parametrize(
    ("request_line", "headers", "code"),
    [
        ("GET http://evil.test/users/1 HTTP/1.1", {}, "FORBIDDEN_TARGET"),
        ("POST /batch HTTP/1.1", {}, "NESTED_BATCH"),
        ("NOT A REQUEST", {}, "INVALID_INPUT"),
        ("GET /users/1", {"Content-Type": "text/plain"}, "INVALID_INPUT"),
        ("GET /users/1", {"Content-Type": "multipart/mixed; boundary=c"}, "NESTED_BATCH"),
    ],
    ids=["other-host", "nested-path", "garbage", "not-http", "nested-multipart"],
)
async def test_bad_parts_are_refused_whole(
    request_line: str, headers: dict[str, str], code: str, sample_gateway: TestClient
) -> None:
    body = _multipart([("GET /users/1", {}, ""), (request_line, headers, "")])
    resp = await sample_gateway.post(
        "/batch", data=body, headers={"Content-Type": "multipart/mixed; boundary=b"}
    )
    assert resp.status == 400
    assert code in {p["code"] for p in (await resp.json())["error"]["problems"]}


async def test_settings_from_urls_serve_both_doors(
    upstream_url: str, aiohttp_client: Any, service: FakeService
) -> None:
    service.route("GET", "/a", json={"ok": True})
    client = await aiohttp_client(create_app(Settings.from_upstream_urls([upstream_url])))
    status, out, _ = await post_json(client, [{"path": "/a"}])
    assert (status, out[0]["body"]) == (200, {"ok": True})


async def test_integrator_batch_key_and_odata_path(
    service: FakeService, gateway: TestClient
) -> None:
    # An integrator's import, byte for byte: {"batch": [...]} on /$batch (OData and Microsoft
    # Graph's path), with Graph's `id` and `url` without a leading slash.
    service.route("POST", "/items", status=201, json={"id": 9})
    raw = (
        b'{"batch":[{"id":"a","method":"POST","url":"items","body":{"name":"x"},'
        b'"headers":{"Content-Type":"application/json"}},'
        b'{"id":"b","method":"GET","url":"items/{resultOf(a).id}"}]}'
    )
    service.route("GET", "/items/9", json={"id": 9, "name": "x"})
    resp = await gateway.post("/$batch", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 200
    out = await resp.json()
    assert [(r["id"], r["status"], r["body"]) for r in out["responses"]] == [
        ("a", 201, {"id": 9}),
        ("b", 200, {"id": 9, "name": "x"}),
    ]
    assert service.lines == ["POST /items", "GET /items/9"]


async def test_odata_path_answers_like_batch(service: FakeService, gateway: TestClient) -> None:
    service.route("GET", "/items/1", json={"id": 1})
    raw = b'[{"id":"1","method":"GET","url":"/items/1"}]'
    answers = []
    for path in ("/batch", "/$batch"):
        resp = await gateway.post(path, data=raw, headers={"Content-Type": "application/json"})
        answers.append((resp.status, await resp.json()))
    assert answers[0] == answers[1]
    assert answers[0][1][0]["status"] == 200


# --------------------------------------------------------------------------------------------
# The Aspose SDK's dialect, byte for byte: its ApiClient writes each request as a form-data part
# "METHOD target \r\n" (no HTTP version, a target relative to the API base, a space before the
# CRLF), then its headers (RequestId, DependsOn), a blank line and the body; urllib3's
# encode_multipart_formdata frames the parts, and the batch is a PUT.

ASPOSE_BOUNDARY = "a7f3c9e1d2b84f6e9c0a1b2c3d4e5f60"


def _aspose_batch(*messages: bytes) -> bytes:
    out = b""
    for n, message in enumerate(messages):
        out += (
            (
                f"--{ASPOSE_BOUNDARY}\r\n"
                f'Content-Disposition: form-data; name="{n}"\r\n'
                "Content-Type: application/http; msgtype=request\r\n\r\n"
            ).encode()
            + message
            + b"\r\n"
        )
    return out + f"--{ASPOSE_BOUNDARY}--\r\n".encode()


def _aspose_read(content_type: str, body: bytes, ids: list[str]) -> dict[str, tuple[int, Any]]:
    """The SDK's reading of the answer: one part per request; in each, the status is the first
    word of the first line, the headers follow, and RequestId names the request it answers."""
    parts = _parse_multipart(content_type, body)
    assert len(parts) == len(ids)  # else: "Response parts and requests count mismatch."
    results = {}
    for _, payload in parts:
        head, body_bytes = payload.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        code = int(lines[0].split(b" ", 1)[0].decode("UTF-8"))
        headers = dict(line.decode().split(":", 1) for line in lines[1:])
        headers = {k.strip(): v.strip() for k, v in headers.items()}
        results[headers["RequestId"]] = (code, json.loads(body_bytes) if body_bytes else None)
    assert sorted(results) == sorted(ids)
    return results


async def test_aspose_sdk_batch_as_it_sends_it(service: FakeService, gateway: TestClient) -> None:
    service.route("POST", "/posts", status=201, json={"id": 7, "title": "t"})
    service.route("GET", "/posts/7", json={"id": 7, "title": "t"})
    service.route("PUT", "/archive", json={"ok": True})
    body = _aspose_batch(
        b'POST posts \r\nRequestId: 4d1c\r\nContent-Type: application/json\r\n\r\n{"title": "t"}',
        b"GET posts/resultOf(4d1c).id \r\nRequestId: 9e2a\r\nDependsOn: 4d1c\r\n\r\n",
        b'PUT archive \r\nRequestId: 3b7f\r\nDependsOn: 9e2a\r\n\r\n"resultOf(9e2a)',
    )
    resp = await gateway.put(
        "/batch",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={ASPOSE_BOUNDARY}"},
    )
    assert resp.status == 200 and resp.content_type == "multipart/form-data"
    answers = _aspose_read(
        resp.headers["Content-Type"], await resp.read(), ["4d1c", "9e2a", "3b7f"]
    )
    assert answers == {
        "4d1c": (201, {"id": 7, "title": "t"}),
        "9e2a": (200, {"id": 7, "title": "t"}),
        "3b7f": (200, {"ok": True}),
    }
    # In dependency order, the bare references substituted (in the path, and as the whole
    # body), and the two naming headers kept from the upstream.
    assert service.lines == ["POST /posts", "GET /posts/7", "PUT /archive"]
    assert json.loads(service.calls[2].body) == {"id": 7, "title": "t"}
    for call in service.calls:
        assert "RequestId" not in call.headers and "DependsOn" not in call.headers


async def test_aspose_relative_targets_cannot_leave_the_upstream(
    service: FakeService, gateway: TestClient
) -> None:
    body = _aspose_batch(b"GET ../admin \r\nRequestId: a\r\n\r\n")
    resp = await gateway.put(
        "/batch",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={ASPOSE_BOUNDARY}"},
    )
    assert resp.status == 400
    assert {p["code"] for p in (await resp.json())["error"]["problems"]} == {"FORBIDDEN_TARGET"}
    assert service.calls == []


async def test_put_is_for_multipart_batches(gateway: TestClient) -> None:
    resp = await gateway.put("/batch", json=[{"path": "/a"}])
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_mixed_parts_echo_their_request_id(sample_gateway: TestClient) -> None:
    body = _multipart([("GET /users/1", {"RequestId": "u1"}, "")])
    resp = await sample_gateway.post(
        "/batch", data=body, headers={"Content-Type": "multipart/mixed; boundary=b"}
    )
    ((headers, _),) = _parse_multipart(resp.headers["Content-Type"], await resp.read())
    assert headers["RequestId"] == "u1"


@given(
    st.recursive(
        st.none() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=10,
    ),
    st.booleans(),
)
@settings(max_examples=200)
def test_an_answer_written_in_pieces_is_the_same_json(value: Any, wrapped: bool) -> None:
    # Issue 24: a large answer is written a response at a time, off the loop; it must read
    # back as the answer written at once.
    from gqlbatch.doors.rest import _in_pieces

    answer: Any = {"responses": value if isinstance(value, list) else [value]} if wrapped else value
    if wrapped and isinstance(value, dict):
        answer = {**value, "responses": [value]}
    assert json.loads("".join(_in_pieces(answer))) == json.loads(json.dumps(answer))


async def test_a_large_answer_is_written_a_response_at_a_time(
    gateway: Any, service: FakeService
) -> None:
    service.route("GET", "/big", json={"blob": "x" * 1_100_000})
    service.route("GET", "/small", json={"n": 1})
    small = await gateway.post("/batch", json=[{"path": "/small"}])
    assert "Content-Length" in small.headers  # written at once
    assert (await small.json())[0]["body"] == {"n": 1}
    items = {"requests": [{"path": "/big"}, {"path": "/small"}]}
    large = await gateway.post("/batch", json=items, headers={"Accept-Encoding": "gzip"})
    assert large.headers["Transfer-Encoding"] == "chunked"  # written as it goes
    assert large.headers["Content-Encoding"] == "gzip"
    answer = await large.json()
    assert [r["body"] for r in answer["responses"]] == [{"blob": "x" * 1_100_000}, {"n": 1}]


async def test_a_configured_door_path_answers_as_batch_and_is_no_sub_request(
    make_gateway: Any, sample_url: str
) -> None:
    # Issue 27: UCWA posts to its own application's batch path, the Aspose SDK to
    # /v4.0/words/batch; both got 404. `{app}` matches any one segment.
    ucwa = "/ucwa/oauth/v1/applications/{app}/batch"
    gateway = await make_gateway(sample_url, batch_paths=(ucwa, "/v4.0/words/batch"))
    batch = {"requests": [{"id": "u", "url": "/users/1"}]}
    for path in ("/ucwa/oauth/v1/applications/123/batch", "/v4.0/words/batch"):
        answer = await gateway.post(path, json=batch)
        assert answer.status == 200, await answer.text()
        assert (await answer.json())["responses"][0]["status"] == 200
    assert (await gateway.post("/ucwa/oauth/v1/applications/1/2/batch", json=batch)).status == 404
    for nested in ("/ucwa/oauth/v1/applications/9/batch", "/ucwa/oauth/v1/applications/9/%62atch"):
        refused = await gateway.post("/batch", json={"requests": [{"id": "n", "url": nested}]})
        assert refused.status == 400
        [problem] = (await refused.json())["error"]["problems"]
        assert problem["code"] == "NESTED_BATCH"
