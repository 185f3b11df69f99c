"""UpstreamClient against real loopback servers: one test per arm of the error translation."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from gqlbatch import Settings
from gqlbatch.core.errors import UpstreamBadResponse, UpstreamTimeout, UpstreamUnreachable
from gqlbatch.core.wire import BodyEncoding, UpstreamCall
from gqlbatch.upstreams.client import UpstreamClient
from tests.fakes import FakeService


@pytest.fixture
async def client(upstream_url: str) -> AsyncIterator[UpstreamClient]:
    c = UpstreamClient(Settings.from_upstream_urls([upstream_url], max_response_bytes=1000))
    yield c
    await c.close()


def get(path: str, **kw: Any) -> UpstreamCall:
    return UpstreamCall("default", "GET", path, **kw)


async def test_json_response_with_query_headers_and_body(
    service: FakeService, client: UpstreamClient
) -> None:
    service.route("POST", "/users", status=201, json={"id": 3}, headers={"Location": "/users/3"})
    resp = await client.send(
        UpstreamCall(
            "default",
            "POST",
            "/users",
            query=(("a", "1 2"), ("a", "3")),
            headers=(("Authorization", "Bearer t"), ("Content-Type", "application/json")),
            body=b'{"name":"x"}',
        )
    )
    assert (resp.status, resp.body, resp.body_encoding) == (201, {"id": 3}, BodyEncoding.JSON)
    assert ("Location", "/users/3") in resp.headers
    (call,) = service.calls
    assert call.query == [("a", "1 2"), ("a", "3")]
    assert call.headers["Authorization"] == "Bearer t"
    assert call.json == {"name": "x"}


async def test_an_upstream_cookie_is_never_sent_back(
    service: FakeService, upstream_url: str
) -> None:
    # One session serves every client of the gateway: a cookie jar would hand one client's
    # session cookie to the next caller. aiohttp's default jar ignores cookies from an IP
    # address, so the upstream is named "localhost" here, as a real one would have a name.
    named = upstream_url.replace("127.0.0.1", "localhost")
    client = UpstreamClient(Settings.from_upstream_urls([named]))
    service.route("GET", "/login", json={}, headers={"Set-Cookie": "session=alice; Path=/"})
    service.route("GET", "/me", json={})
    try:
        await client.send(get("/login"))
        await client.send(get("/me"))
    finally:
        await client.close()
    assert [c.path for c in service.calls] == ["/login", "/me"]
    assert "Cookie" not in service.calls[1].headers


async def test_error_status_is_a_response_not_an_exception(
    service: FakeService, client: UpstreamClient
) -> None:
    service.route("GET", "/gone", status=503, json={"retry": True})
    resp = await client.send(get("/gone"))
    assert (resp.status, resp.body) == (503, {"retry": True})


async def test_text_and_binary_and_empty_bodies(
    service: FakeService, client: UpstreamClient
) -> None:
    service.route("GET", "/t", text="héllo", content_type="text/plain")
    service.route("GET", "/b", body=b"\x00\x01\xff", content_type="image/png")
    service.route("GET", "/e", status=204, body=b"")
    t, b, e = [await client.send(get(p)) for p in ("/t", "/b", "/e")]
    assert (t.body, t.body_encoding) == ("héllo", BodyEncoding.TEXT)
    assert (base64.b64decode(b.body), b.body_encoding) == (b"\x00\x01\xff", BodyEncoding.BASE64)
    assert (e.status, e.body, e.body_encoding) == (204, None, BodyEncoding.EMPTY)


async def test_json_in_each_encoding_json_loads_reads(
    service: FakeService, client: UpstreamClient
) -> None:
    # The decoder is built once and handed text; the bytes are decoded the way json.loads
    # decodes them: a UTF-8 byte-order mark is skipped and UTF-16 is told by its zero bytes.
    service.route("GET", "/bom", body='\ufeff{"a": "é"}'.encode(), content_type="application/json")
    service.route(
        "GET", "/u16", body='{"a": "é"}'.encode("utf-16-le"), content_type="application/json"
    )
    latin = web.Response(body='{"a": "é"}'.encode("latin-1"), content_type="application/json")
    latin.charset = "latin-1"
    service.route("GET", "/latin", handler=lambda _: _ready(latin))
    answers = [await client.send(get(p)) for p in ("/bom", "/u16", "/latin")]
    assert [a.body for a in answers] == [{"a": "é"}] * 3
    service.route("GET", "/nan", body=b'{"a": [1, NaN]}', content_type="application/json")
    with pytest.raises(UpstreamBadResponse, match="NaN is not a JSON value"):
        await client.send(get("/nan"))


async def _ready(response: web.Response) -> web.Response:
    return response


async def test_set_cookie_is_dropped_whatever_its_case(
    service: FakeService, client: UpstreamClient
) -> None:
    service.route("GET", "/c", json={}, headers={"SET-COOKIE": "a=1", "X-Kept": "yes"})
    answer = await client.send(get("/c"))
    names = [name.lower() for name, _ in answer.headers]
    assert "x-kept" in names and "set-cookie" not in names


async def test_encoded_path_is_sent_as_is(service: FakeService, client: UpstreamClient) -> None:
    service.route("GET", "/users/a/b", json={})  # aiohttp's router sees the decoded path
    await client.send(get("/users/a%2Fb"))
    assert service.calls[0].raw_path == "/users/a%2Fb"
    await client.send(get("/caf%C3%A9"))
    assert service.calls[1].path == "/café"


async def test_invalid_json_is_a_bad_response(service: FakeService, client: UpstreamClient) -> None:
    service.route("GET", "/bad", text="{not json", content_type="application/json")
    with pytest.raises(UpstreamBadResponse, match="declared JSON but is not"):
        await client.send(get("/bad"))


async def test_body_over_the_cap_is_a_bad_response(
    service: FakeService, client: UpstreamClient
) -> None:
    service.route("GET", "/big", text="x" * 2000)

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(20):
            await resp.write(b"y" * 100)
        await resp.write_eof()
        return resp

    service.route("GET", "/stream", handler=chunked)
    with pytest.raises(UpstreamBadResponse, match="over the 1000-byte limit"):
        await client.send(get("/big"))
    with pytest.raises(UpstreamBadResponse, match="over the 1000-byte limit"):
        await client.send(get("/stream"))


async def test_slow_upstream_times_out(service: FakeService, client: UpstreamClient) -> None:
    service.route("GET", "/slow", gate=asyncio.Event())
    with pytest.raises(UpstreamTimeout, match="did not answer within 50 ms"):
        await client.send(get("/slow", timeout_ms=50))


async def test_closed_port_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = UpstreamClient(Settings.from_upstream_urls([f"http://127.0.0.1:{port}"]))
    try:
        with pytest.raises(UpstreamUnreachable, match="ClientConnectorError"):
            await c.send(get("/x"))
    finally:
        await c.close()


async def test_redirects_are_not_followed(service: FakeService, client: UpstreamClient) -> None:
    service.route("GET", "/r", status=302, json=None, headers={"Location": "http://evil.test/"})
    resp = await client.send(get("/r"))
    assert resp.status == 302
    assert [c.path for c in service.calls] == ["/r"]


async def test_base_path_is_kept(service: FakeService, upstream_url: str) -> None:
    service.route("GET", "/api/v1/users", json=[])
    c = UpstreamClient(Settings.from_upstream_urls([upstream_url + "/api/v1/"]))
    try:
        assert (await c.send(get("/users"))).status == 200
    finally:
        await c.close()


@pytest.mark.parametrize("padding", [0, 600], ids=["kept-url", "long-url-built-each-time"])
async def test_query_values_arrive_as_sent(
    service: FakeService, client: UpstreamClient, padding: int
) -> None:
    # Short URLs are kept between calls, long ones built each time; either way every value
    # arrives as it was, whatever characters it holds.
    service.route("GET", "/q", json={})
    values = ["a b", "x&y=z", "1+1", "é/?#", "p" * padding]
    await client.send(get("/q", query=tuple(("v", v) for v in values)))
    await client.send(get("/q", query=(("v", "again"),)))
    assert [c.query for c in service.calls] == [[("v", v) for v in values], [("v", "again")]]
