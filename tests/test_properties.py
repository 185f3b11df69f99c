"""Property-based: arbitrary batches, valid and invalid, through both doors.

Over many generated inputs there is never a 500 or an internal error, a refused batch never
reaches the upstream, and every refusal names at least one problem with a code and a message.
The gateway and a counting upstream run in a background thread, so that hypothesis can drive
plain synchronous requests.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gqlbatch import Settings, create_app, running

IDS = st.sampled_from(["a", "b", "c", "0", "1", "x y", "", "dup"])
PLACEHOLDERS = st.sampled_from(
    [
        "{resultOf(a).id}",
        "{resultOf(b)}",
        "{resultOf(nope).x}",
        "{resultOf(a",
        "{statusOf(a)}",
        "{headerOf(a, Location)}",
        "{headerOf(a)}",
        "{item}",
        "{index}",
        "{resultOf(a)[*].id}",
        "{resultOf(a)[x]}",
        "{{resultOf(a)}",
        "resultOf(a).id",
        "{ not: placeholder }",
    ]
)
PATHS = st.one_of(
    st.sampled_from(
        [
            "/ok",
            "/ok/1",
            "/ok?x=1",
            "/",
            "//evil",
            "http://evil/",
            "/../x",
            "/%2e%2e/x",
            "ok",
            "/batch",
            "/a\r\nb",
            "/\uff0e\uff0e/x",
            "/a#b",
        ]
    ),
    st.builds(lambda p: "/ok/" + p, PLACEHOLDERS),
    st.text(max_size=20),
)
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    PLACEHOLDERS,
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
ITEM = st.fixed_dictionaries(
    {},
    optional={
        "requestId": IDS,
        "method": st.sampled_from(["GET", "get", "POST", "DELETE", "TRACE", "", 7]),
        "path": PATHS,
        "query": st.one_of(JSON, st.dictionaries(st.text(max_size=4), JSON_LEAF, max_size=3)),
        "headers": st.one_of(
            st.dictionaries(
                st.sampled_from(["X-A", "Host", "Connection", "bad name", "X-B"]),
                st.one_of(st.text(max_size=8), PLACEHOLDERS),
                max_size=2,
            ),
            JSON,
        ),
        "body": JSON,
        "dependsOn": st.one_of(st.lists(IDS, max_size=3), JSON),
        "forEach": st.one_of(PLACEHOLDERS, st.lists(JSON_LEAF, max_size=3), JSON_LEAF),
        "timeoutMs": st.one_of(st.integers(-5, 5000), st.text(max_size=3)),
        "idempotencyKey": st.one_of(st.text(max_size=5), st.integers()),
        "upstream": st.sampled_from(["default", "nope", 3]),
        "unknown": JSON_LEAF,
    },
)
BATCHES = st.one_of(
    st.lists(st.one_of(ITEM, JSON_LEAF), max_size=6),
    st.fixed_dictionaries(
        {"requests": st.lists(ITEM, max_size=6)},
        optional={
            "mode": JSON_LEAF,
            "onError": JSON_LEAF,
            "atomic": st.booleans(),
            "options": JSON,
        },
    ),
    JSON,
)


class Upstream:
    """Answers 200 to everything and counts what it receives."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        return web.json_response({"id": 1, "ok": True}, headers={"Location": "/ok/1"})


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[str, Upstream]]:
    upstream = Upstream()
    ready: dict[str, str] = {}
    started = threading.Event()
    stop: list[asyncio.Event] = []

    async def serve() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", upstream.handle)
        async with running(app) as upstream_url:
            settings = Settings.from_upstream_urls([upstream_url], max_items=10)
            async with running(create_app(settings)) as url:
                ready["url"] = url
                stop.append(asyncio.Event())
                started.set()
                await stop[0].wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10)
    yield ready["url"], upstream
    loop.call_soon_threadsafe(stop[0].set)
    thread.join(10)


def _check_refusal(body: Any) -> None:
    problems = body["error"]["problems"]
    assert problems, body
    assert all(p["code"] and p["message"] for p in problems), body


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=BATCHES)
def test_rest_door_never_fails_and_never_leaks_a_refused_batch(
    batch: Any, live: tuple[str, Upstream]
) -> None:
    url, upstream = live
    upstream.calls = 0
    resp = requests.post(
        url + "/batch",
        data=json.dumps(batch),
        timeout=30,
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code != 500, resp.text
    body = resp.json()
    if resp.status_code == 200:
        assert len(body["responses"]) == len(
            batch if isinstance(batch, list) else batch["requests"]
        )
        return
    assert resp.status_code in (400, 413, 422, 429), resp.text
    _check_refusal(body)
    assert upstream.calls == 0, "a refused batch reached the upstream"


QUERY = """mutation($r: [SubRequestInput!]!) {
  batch(requests: $r) { items { requestId state status error { code } } }
}"""


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(items=st.lists(ITEM, max_size=6))
def test_graphql_door_never_fails_and_never_leaks_a_refused_batch(
    items: list[dict[str, Any]], live: tuple[str, Upstream]
) -> None:
    url, upstream = live
    upstream.calls = 0
    resp = requests.post(
        url + "/graphql", json={"query": QUERY, "variables": {"r": items}}, timeout=30
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    for error in body.get("errors", []):
        assert error.get("extensions", {}).get("code") != "INTERNAL_ERROR", error
    if body.get("data") is None or body["data"].get("batch") is None:
        assert upstream.calls == 0, "a refused batch reached the upstream"
        codes = [e.get("extensions", {}).get("code") for e in body["errors"]]
        if codes[0] is not None:  # our refusal (GraphQL's own type errors carry no code)
            assert body["errors"][0]["extensions"]["problems"]


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=20) | st.from_regex(r"[a-z/%.~]*"))
def test_a_path_kept_as_is_is_what_quote_would_give(path: str) -> None:
    # call.to_call skips `quote` for paths its regular expression accepts: only when quoting
    # would not change them.
    from urllib.parse import quote

    from gqlbatch.call import _KEPT_AS_IS, _PATH_SAFE

    if _KEPT_AS_IS.fullmatch(path):
        assert quote(path, safe=_PATH_SAFE) == path
