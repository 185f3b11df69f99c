"""Sub-requests can never reach a host other than a configured upstream.

A catalog of host-escape and injection payloads, sent through the REST door: every one is
refused with FORBIDDEN_TARGET and the upstream receives nothing. Then the same escapes as
*substituted* values, which must stay inside one path segment of the configured upstream.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.fakes import FakeService

PATHS = [
    # absolute and scheme-relative
    "http://evil.test/",
    "https://evil.test/x",
    "HTTP://EVIL.TEST/",
    "ftp://evil.test/",
    "//evil.test/x",
    "///evil.test/x",
    "/\\evil.test",
    "\\\\evil.test\\x",
    "/\\/evil.test",
    "javascript:alert(1)",
    "evil.test/x",
    "@evil.test/x",
    "http:/evil.test",
    # userinfo
    "http://user:pass@evil.test/",
    "//user@evil.test/",
    "http://upstream@evil.test/",
    # dot segments, plain and encoded
    "/../admin",
    "/api/../../etc/passwd",
    "/api/./x",
    "/api/..",
    "/api/%2e%2e/admin",
    "/api/%2E%2E/admin",
    "/api/.%2e/admin",
    "/api/%2e./admin",
    "/api/%252e%252e/admin",
    "/api/%25252e%25252e/admin",
    "/api/%2e",
    "/api/%2e%2e%2fadmin",
    "/api/..%2fadmin",
    "/api/%2e%2e%5cadmin",
    # Tomcat and Jetty read a segment's ';' parameters away: '..;' is '..'
    "/api/..;/admin",
    "/api/.;/admin",
    "/api/..;jsessionid=1/admin",
    "/api/%2e%2e;/admin",
    "/api/%2e%2e%3b/admin",
    "/api/%2e%2e%3bx=1/admin",
    # malformed escapes, and dots encoded three or more times
    "/api/%u002e%u002e/admin",
    "/api/%2/admin",
    "/api/%zz/admin",
    "/api/%2525252e%2525252e/admin",
    "/api/%25252e%25252e%25253b/admin",
    # unicode dot and slash look-alikes
    "/api/\uff0e\uff0e/admin",
    "/api/\u2025/admin",
    "/api/\u2024\u2024/admin",
    "/api/%ef%bc%8e%ef%bc%8e/admin",
    "/api/\uff0e\uff0e\uff0fadmin",
    # control characters, CR/LF and NUL, raw and encoded
    "/a\r\nHost: evil.test",
    "/a%0d%0aHost:%20evil.test",
    "/a\nX: y",
    "/a%0aX:y",
    "/a\x00b",
    "/a%00b",
    "/a\tb",
    "/a b",
    "/a\x7f",
    # fragments and backslashes hidden in encoding
    "/a#@evil.test",
    "/a%5c..%5cadmin",
]

HEADERS = [
    {"Host": "evil.test"},
    {"host": "evil.test"},
    {"Connection": "close"},
    {"Keep-Alive": "timeout=5"},
    {"Transfer-Encoding": "chunked"},
    {"Content-Length": "0"},
    {"TE": "trailers"},
    {"Trailer": "X"},
    {"Upgrade": "websocket"},
    {"Proxy-Authorization": "x"},
    {"Proxy-Connection": "keep-alive"},
    {"X-A": "1\r\nHost: evil.test"},
    {"X-A": "1\nX-B: 2"},
    {"X-A": "a\x00b"},
    {"X-A": "a\x01b"},
    {"X-A": "a\x1bb"},
    {"X-A": "a\x7fb"},
    {"X-A": "\udcff"},
    # headers that re-route a request on common frameworks and proxies
    {"X-HTTP-Method-Override": "DELETE"},
    {"X-HTTP-Method": "DELETE"},
    {"X-Method-Override": "DELETE"},
    {"X-Original-URL": "/admin"},
    {"X-Rewrite-URL": "/admin"},
    {"X-Forwarded-Host": "evil.test"},
    {"X-Forwarded-For": "127.0.0.1"},
    {"X-Forwarded-Prefix": "/admin"},
    {"Forwarded": "host=evil.test"},
    {"Bad Name": "x"},
    {"X:A": "x"},
]


def test_the_catalog_is_large_enough() -> None:
    assert len(PATHS) + len(HEADERS) >= 40


@pytest.mark.parametrize("path", PATHS, ids=[repr(p)[1:-1][:40] for p in PATHS])
async def test_escaping_paths_are_forbidden(
    path: str, gateway: TestClient, service: FakeService
) -> None:
    resp = await gateway.post("/batch", json=[{"path": "/ok"}, {"path": path}])
    body = await resp.json()
    assert resp.status == 400, body
    codes = {p["code"] for p in body["error"]["problems"]}
    assert codes == {"FORBIDDEN_TARGET"}, body
    assert service.calls == []


@pytest.mark.parametrize("headers", HEADERS, ids=[repr(h)[:40] for h in HEADERS])
async def test_smuggling_headers_are_forbidden(
    headers: dict[str, str], gateway: TestClient, service: FakeService
) -> None:
    resp = await gateway.post("/batch", json=[{"path": "/ok", "headers": headers}])
    body = await resp.json()
    assert resp.status == 400, body
    assert {p["code"] for p in body["error"]["problems"]} == {"FORBIDDEN_TARGET"}
    assert service.calls == []


VALUES = [
    "../admin",
    "..",
    ".",
    "%2e%2e",
    "%252e%252e",
    "a/b",
    "a\\b",
    "?x=1",
    "#frag",
    "//evil.test",
    "http://evil.test",
    "\uff0e\uff0e",
    "a b",
    "a\r\nb",
    "a\x01b",
    "..;",
    "..;jsessionid=1",
    "%2e%2e%3b",
    "..%2fadmin",
    "50% off",
    "42",  # ids skip the checks and the encoding: nothing in them could need either
    "Ab9",
    "\u0661\u0662",  # digits, but not ASCII: checked and encoded as any other text
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[1:-1] for v in VALUES])
async def test_substituted_values_stay_in_one_segment(
    value: str, gateway: TestClient, service: FakeService
) -> None:
    service.route("GET", "/src", json={"v": value})
    resp = await gateway.post(
        "/batch",
        json=[
            {"id": "src", "path": "/src"},
            {
                "id": "use",
                "path": "/users/{resultOf(src).v}/x",
                "headers": {"X-V": "{resultOf(src).v}"},
            },
        ],
    )
    out = (await resp.json())[1]
    sent = [c for c in service.calls if c.path != "/src"]
    if out["state"] == "FAILED" and out["error"]["code"] == "FORBIDDEN_TARGET":
        assert sent == []  # a dot segment, or CR/LF in the header: refused before sending
        return
    (call,) = sent
    # Whatever the value, it arrived as exactly one segment between /users/ and /x.
    assert call.raw_path.startswith("/users/") and call.raw_path.endswith("/x")
    assert call.raw_path.count("/") == 3
    assert call.headers["X-V"] == value


async def test_redirects_to_other_hosts_are_not_followed(
    gateway: TestClient, service: FakeService
) -> None:
    service.route(
        "GET", "/go", status=302, json=None, headers={"Location": "http://evil.test/steal"}
    )
    resp = await gateway.post("/batch", json=[{"path": "/go"}])
    out = (await resp.json())[0]
    assert (out["status"], out["headers"]["Location"]) == (302, "http://evil.test/steal")
    assert service.lines == ["GET /go"]


NESTED = [
    "/batch",
    "/batch/",
    "/BATCH",
    "/%62atch",
    "/%2562atch",
    "/$batch",
    "/%24batch",
    "/batch;x",
]


@pytest.mark.parametrize("path", NESTED)
async def test_a_batch_endpoint_is_refused_in_every_spelling(
    path: str, gateway: TestClient, service: FakeService
) -> None:
    resp = await gateway.post("/batch", json=[{"path": path}])
    body = await resp.json()
    assert resp.status == 400, body
    assert [p["code"] for p in body["error"]["problems"]] == ["NESTED_BATCH"]
    assert service.calls == []


async def test_a_percent_in_a_substituted_value_is_data(
    gateway: TestClient, service: FakeService
) -> None:
    service.route("GET", "/src", json={"v": "50% off"})
    resp = await gateway.post(
        "/batch", json=[{"id": "src", "path": "/src"}, {"path": "/q/{resultOf(src).v}"}]
    )
    assert (await resp.json())[1]["status"] == 404  # sent, and not found
    assert service.calls[-1].raw_path == "/q/50%25%20off"
