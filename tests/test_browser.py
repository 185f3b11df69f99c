"""A real browser: headless Chromium (Debian's `chromium`, which .ci/run installs), driven by
Playwright for Python with that executable (DESIGN §10a).

- A page on a second loopback origin calls the gateway with fetch(), preflighted (it sends
  Authorization), and gets its data.
- A page on another origin, allowed by `origins = ["*"]`, opens the GraphQL websocket and
  runs a POST: the user's cookie, which the browser sends with the handshake, never reaches
  the upstream (issue 24, finding 10).
- The playground runs the demo's screen and draws one waterfall bar per item; a screenshot is
  saved under the test's temporary folder.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gqlbatch import Settings, create_app
from gqlbatch.core.config import CorsSettings
from gqlbatch.ops.cli import demo_settings
from gqlbatch.ops.demo import EXAMPLE_BATCH
from tests.fakes import FakeService

playwright_api = pytest.importorskip("playwright.async_api", reason="pip install '.[test]'")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium here; .ci/run installs it (apt-get install chromium)"
)
# What this machine's closed network needs (no background calls to Google's hosts), and
# what running as root in a container needs (no sandbox).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

CALLER = """<!doctype html><html><body><pre id="result">waiting</pre><script>
fetch("%(gateway)s/graphql", {
  method: "POST",
  headers: {"Content-Type": "application/json", "Authorization": "Bearer from-the-browser"},
  body: JSON.stringify({
    query: '{ batch(requests: [{path: "/users/1"}]) { items { status body } } }',
  }),
})
  .then((r) => r.json())
  .then((answer) => { document.getElementById("result").textContent = JSON.stringify(answer); })
  .catch((error) => { document.getElementById("result").textContent = "failed: " + error; });
</script></body></html>"""


@pytest.fixture
async def browser() -> Any:
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def test_a_page_on_another_origin_calls_the_gateway(
    browser: Any, aiohttp_server: Any, service: FakeService, upstream_url: str
) -> None:
    service.route("GET", "/users/1", json={"id": 1, "name": "Ada"})
    gateway_url: list[str] = []  # known once the gateway listens, after the page's server

    async def index(_request: web.Request) -> web.Response:
        html = CALLER % {"gateway": gateway_url[0]}
        return web.Response(text=html, content_type="text/html")

    page_server = web.Application()
    page_server.router.add_get("/", index)
    caller = await aiohttp_server(page_server, host="127.0.0.1")
    origin = str(caller.make_url("")).rstrip("/")
    settings = Settings.from_upstream_urls([upstream_url])
    gateway = await aiohttp_server(create_app(_with_cors(settings, origin)), host="127.0.0.1")
    gateway_url.append(str(gateway.make_url("")).rstrip("/"))
    page = await browser.new_page()
    await page.goto(origin + "/")
    result = page.locator("#result")
    await result.filter(has_text="status").wait_for(timeout=15_000)
    assert '"name":"Ada"' in await result.text_content()
    # The browser sent its preflight (answered by the gateway alone) and then the call,
    # whose Authorization reached the upstream.
    assert [c.headers.get("Authorization") for c in service.calls] == ["Bearer from-the-browser"]


SOCKET_CALLER = """<!doctype html><html><body><pre id="result">waiting</pre><script>
const ws = new WebSocket("%(gateway)s", "graphql-transport-ws");
const query = 'mutation { batch(requests: [{method: POST, path: "/w"}]) { items { status } } }';
ws.onopen = () => ws.send(JSON.stringify({type: "connection_init"}));
ws.onmessage = (event) => {
  const message = JSON.parse(event.data);
  if (message.type === "connection_ack") {
    ws.send(JSON.stringify({id: "1", type: "subscribe", payload: {query}}));
  } else if (message.type === "next") {
    document.getElementById("result").textContent = JSON.stringify(message.payload);
  }
};
ws.onerror = () => { document.getElementById("result").textContent = "failed"; };
</script></body></html>"""


async def test_a_page_allowed_by_a_wildcard_never_sends_the_users_cookie_upstream(
    browser: Any, aiohttp_server: Any, service: FakeService, upstream_url: str
) -> None:
    # The page and the gateway are two ports of one host: two origins, one site, so the
    # browser sends the host's cookie with the page's websocket handshake (websockets have no
    # CORS). The gateway forwards Cookie, and any page may call it without credentials.
    service.route("POST", "/w", status=201, json={})
    gateway_url: list[str] = []

    async def index(_request: web.Request) -> web.Response:
        html = SOCKET_CALLER % {"gateway": gateway_url[0]}
        return web.Response(text=html, content_type="text/html")

    page_server = web.Application()
    page_server.router.add_get("/", index)
    caller = await aiohttp_server(page_server, host="127.0.0.1")
    settings = dataclasses.replace(
        Settings.from_upstream_urls([upstream_url]),
        cors=CorsSettings(origins=("*",)),
        forward_headers=("Cookie",),
    )
    gateway = await aiohttp_server(create_app(settings), host="127.0.0.1")
    gateway_url.append(str(gateway.make_url("/graphql")).replace("http://", "ws://"))
    context = await browser.new_context()
    await context.add_cookies(
        [{"name": "session", "value": "alice", "domain": "127.0.0.1", "path": "/"}]
    )
    try:
        page = await context.new_page()
        await page.goto(str(caller.make_url("/")))
        result = page.locator("#result")
        await result.filter(has_text="status").wait_for(timeout=15_000)
        assert '"status":201' in await result.text_content()
    finally:
        await context.close()
    [call] = service.calls
    assert "Cookie" not in call.headers, "the user's cookie reached the upstream"


async def test_the_playground_draws_a_bar_per_item(
    browser: Any, aiohttp_server: Any, sample_url: str, tmp_path: Path
) -> None:
    app = create_app(demo_settings(sample_url, {}), playground_example=EXAMPLE_BATCH)
    gateway = await aiohttp_server(app, host="127.0.0.1")
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(str(gateway.make_url("/playground")))
    await page.click("#run")
    bars = page.locator("#waterfall .bar")
    await page.locator("#status", has_text="4 items").wait_for(timeout=15_000)
    assert await bars.count() == 4
    ids = [await bars.nth(i).get_attribute("data-request-id") for i in range(4)]
    assert ids == ["user", "posts", "authors", "comments"]
    assert await page.locator("#waterfall .dependency").count() == 3
    assert await page.locator("#waterfall .bar.critical").count() >= 2
    await bars.nth(3).click()
    assert '"requestId": "comments"' in await page.locator("#detail").text_content()
    # The demo's upstream has an OpenAPI document: the user is shown as its type, field by field.
    await bars.nth(0).click()
    detail = await page.locator("#detail").text_content()
    assert detail.startswith('data: User\n  id: ID! = 1\n  name: String = "Ada"\n'), detail
    await page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
    assert (tmp_path / "playground.png").stat().st_size > 10_000
    assert errors == []  # nothing blocked by its Content-Security-Policy, no script error


def _with_cors(settings: Settings, origin: str) -> Settings:
    return dataclasses.replace(settings, cors=CorsSettings(origins=(origin,)))
