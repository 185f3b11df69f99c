"""CORS for pages on other origins, and the websocket's Origin check (DESIGN §10a). The real
browser, preflight and all, is in tests/test_browser.py."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from gqlbatch.core.config import CorsSettings
from gqlbatch.core.errors import ConfigError
from gqlbatch.ops.config_file import settings_from_toml
from tests.fakes import FakeService

APP = "http://app.example"
EVIL = "http://evil.example"


def preflight(origin: str, headers: str = "authorization, content-type") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": headers,
    }


@pytest.fixture
async def cors_gateway(make_gateway: Any, upstream_url: str) -> Any:
    return await make_gateway(
        upstream_url,
        cors=CorsSettings(origins=(APP,), allow_credentials=True, max_age_s=60),
        forward_headers=("Authorization", "X-Tenant"),
    )


async def test_a_listed_origin_gets_its_preflight_answered(
    cors_gateway: Any, service: FakeService
) -> None:
    for path in ("/graphql", "/batch", "/$batch"):
        resp = await cors_gateway.options(path, headers=preflight(APP))
        assert resp.status == 204, path
        assert resp.headers["Access-Control-Allow-Origin"] == APP
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert resp.headers["Access-Control-Max-Age"] == "60"
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        allowed = {h.strip() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
        # What the page may send includes every forwarded header, and Apollo's own.
        assert {"authorization", "x-tenant", "content-type", "idempotency-key"} <= allowed
        assert "apollo-require-preflight" in allowed
        assert "Origin" in resp.headers["Vary"]
    assert service.lines == []  # a preflight is answered by the gateway alone


async def test_an_unlisted_origin_gets_no_cors_headers(cors_gateway: Any) -> None:
    refused = await cors_gateway.options("/graphql", headers=preflight(EVIL))
    assert refused.status == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
    # Its real request is refused: a page may send some POSTs with no preflight at all.
    resp = await cors_gateway.post("/batch", json=[], headers={"Origin": EVIL})
    assert resp.status == 403
    assert "Access-Control-Allow-Origin" not in resp.headers
    # Every answer says it varies by Origin, so that no cache hands one origin's to another.
    for headers in ({"Origin": EVIL}, {}):
        answer = await cors_gateway.post("/batch", json=[], headers=headers)
        assert "Origin" in answer.headers["Vary"]


async def test_every_answer_to_a_listed_origin_carries_the_headers(
    cors_gateway: Any, service: FakeService
) -> None:
    service.route("GET", "/a", json={"id": 1})
    ok = await cors_gateway.post("/batch", json=[{"path": "/a"}], headers={"Origin": APP})
    refused = await cors_gateway.post("/batch", json=[{"path": "//evil"}], headers={"Origin": APP})
    streamed = await cors_gateway.post(
        "/batch",
        json=[{"path": "/a"}],
        headers={"Origin": APP, "Accept": "application/x-ndjson"},
    )
    for resp in (ok, refused, streamed):
        assert resp.headers["Access-Control-Allow-Origin"] == APP
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert "X-Request-Id" in resp.headers["Access-Control-Expose-Headers"]
        assert "Origin" in resp.headers["Vary"]
    assert (ok.status, refused.status, streamed.status) == (200, 400, 200)


async def test_without_origins_there_is_no_cors(gateway: Any) -> None:
    resp = await gateway.options("/graphql", headers=preflight(APP))
    assert resp.status == 405
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_a_wildcard_answers_any_origin_with_a_star(
    make_gateway: Any, upstream_url: str
) -> None:
    gateway = await make_gateway(upstream_url, cors=CorsSettings(origins=("*",)))
    resp = await gateway.options("/graphql", headers=preflight(EVIL))
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in resp.headers


def test_cors_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="any site"):
        CorsSettings(origins=("*",), allow_credentials=True)
    for origin in ("app.example", "http://app.example/", "http://app.example/x", "ftp://a"):
        with pytest.raises(ConfigError, match="is not an origin"):
            CorsSettings(origins=(origin,))
    settings, _ = settings_from_toml(
        '[cors]\norigins = ["https://app.example:8443"]\nallow_credentials = true\n'
        '[upstreams.a]\nbase_url = "http://127.0.0.1:1"\n'
    )
    assert settings.cors == CorsSettings(
        origins=("https://app.example:8443",), allow_credentials=True
    )


async def test_a_websocket_from_a_foreign_page_is_refused(cors_gateway: Any) -> None:
    url = cors_gateway.make_url("/graphql")
    protocols = ("graphql-transport-ws",)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, protocols=protocols, headers={"Origin": EVIL})
        assert refused.value.status == 403
        own = f"http://{url.host}:{url.port}"
        for headers in ({"Origin": APP}, {"Origin": own}, {}):  # listed, own, not a browser
            async with http.ws_connect(url, protocols=protocols, headers=headers) as ws:
                await ws.send_json({"type": "connection_init"})
                assert (await ws.receive_json())["type"] == "connection_ack"


def form_batch(path: str) -> aiohttp.FormData:
    """A one-part multipart/form-data batch, as a page's form (or the Aspose SDK) sends it:
    no preflight precedes it."""
    form = aiohttp.FormData()
    form.add_field("r0", f"POST {path} HTTP/1.1\r\n\r\n", content_type="application/http")
    return form


async def test_a_state_changing_request_from_an_unlisted_page_is_refused(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    # Issue 24, finding 11: a multipart/form-data POST from a page on another origin needs no
    # preflight, and /batch and /$batch ran it with the user's cookie.
    service.route("POST", "/w", status=201, json={})
    gateway = await make_gateway(upstream_url, forward_headers=("Cookie",))
    url = gateway.make_url("/")
    own = f"http://{url.host}:{url.port}"
    cookie = {"Cookie": "session=alice"}
    for path in ("/batch", "/$batch", "/graphql"):
        resp = await gateway.post(path, data=form_batch("/w"), headers={"Origin": EVIL, **cookie})
        assert resp.status == 403, path
        assert (await resp.text()).count("FORBIDDEN_ORIGIN") == 1
    refused = await gateway.delete("/batch/jobs/x", headers={"Origin": EVIL, **cookie})
    assert refused.status == 403
    assert service.lines == []
    for headers in ({"Origin": own}, {"Sec-Fetch-Site": "same-origin", "Origin": own}, {}):
        resp = await gateway.post("/batch", data=form_batch("/w"), headers={**headers, **cookie})
        assert resp.status == 200
    assert service.lines == ["POST /w"] * 3


async def test_a_page_allowed_by_a_wildcard_never_carries_the_users_credentials(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    # Issue 24, finding 10: with origins = ["*"] ("any page, without credentials") and Cookie
    # forwarded, a page on another origin opened the websocket and ran a POST with the
    # user's cookie.
    service.route("POST", "/w", status=201, json={})
    gateway = await make_gateway(
        upstream_url,
        cors=CorsSettings(origins=("*",)),
        forward_headers=("Authorization", "Cookie"),
    )
    page = {"Origin": EVIL, "Cookie": "session=alice", "Authorization": "Bearer its-own"}
    http = await gateway.post("/batch", json=[{"method": "POST", "path": "/w"}], headers=page)
    assert http.status == 200
    url = gateway.make_url("/graphql")
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, protocols=("graphql-transport-ws",), headers=page) as ws,
    ):
        await ws.send_json({"type": "connection_init"})
        assert (await ws.receive_json())["type"] == "connection_ack"
        query = 'mutation { batch(requests: [{method: POST, path: "/w"}]) { items { status } } }'
        await ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": query}})
        assert (await ws.receive_json())["payload"]["data"]["batch"]["items"] == [{"status": 201}]
    over_http, over_websocket = service.calls
    assert "Cookie" not in over_http.headers
    assert over_http.headers["Authorization"] == "Bearer its-own"  # the page set it itself
    assert "Cookie" not in over_websocket.headers
    assert "Authorization" not in over_websocket.headers  # a handshake's is the browser's
    # A page the gateway trusts, its own, keeps the user's cookie.
    own = f"http://{url.host}:{url.port}"
    await gateway.post(
        "/batch", json=[{"method": "POST", "path": "/w"}], headers={**page, "Origin": own}
    )
    assert service.calls[-1].headers["Cookie"] == "session=alice"
