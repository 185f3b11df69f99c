"""HTTP caching of read-only screens, and compression (DESIGN §10a)."""

from __future__ import annotations

from typing import Any

import pytest

from gqlbatch.core.errors import ErrorCode
from gqlbatch.core.result import ErrorInfo, ItemResult, State
from gqlbatch.doors.http_cache import cache_control, if_none_match, vary
from tests.fakes import FakeService

SCREEN = '{ batch(requests: [{path: "/users/1"}, {path: "/posts"}]) { items { status } } }'


def item(cache: str | None = None, state: State = State.SUCCEEDED) -> ItemResult:
    headers = () if cache is None else (("Cache-Control", cache),)
    error = None if state is State.SUCCEEDED else ErrorInfo(ErrorCode.UPSTREAM_STATUS, "404")
    return ItemResult(
        request_id="r", index=0, state=state, status=200, headers=headers, error=error
    )


@pytest.mark.parametrize(
    ("caches", "credentials", "expected"),
    [
        (["max-age=60", "public, max-age=30"], False, "public, max-age=30"),
        (["max-age=60", "s-maxage=10, max-age=60"], False, "public, max-age=10"),
        (["max-age=60"], True, "private, max-age=60"),
        (["max-age=60", "private, max-age=90"], False, "private, max-age=60"),
        (["max-age=60", None], False, "public, no-cache"),
        (["max-age=60", "no-cache"], False, "public, no-cache"),
        (["max-age=0"], False, "public, no-cache"),
        (["max-age=60", "no-store"], False, "private, no-store"),
        (["max-age=nonsense"], False, "public, no-cache"),
    ],
)
def test_an_answer_is_as_fresh_as_its_least_fresh_item(
    caches: list[str | None], credentials: bool, expected: str
) -> None:
    assert cache_control([item(c) for c in caches], credentials=credentials) == expected


def test_a_failed_item_forbids_storing() -> None:
    items = [item("max-age=60"), item("max-age=60", state=State.FAILED)]
    assert cache_control(items, credentials=False) == "private, no-store"


def test_validators_and_vary() -> None:
    assert if_none_match('"a", W/"b"', '"b"') and if_none_match("*", '"x"')
    assert not if_none_match(None, '"a"') and not if_none_match('"a"', '"b"')
    # Tracing headers are forwarded but change nothing: they are not varied on.
    assert vary(["Authorization", "X-Request-Id", "Accept-Language", "traceparent"]) == (
        "Accept, Authorization, Accept-Language"
    )


@pytest.fixture
def screen_service(service: FakeService) -> FakeService:
    service.route("GET", "/users/1", json={"id": 1}, headers={"Cache-Control": "max-age=60"})
    service.route("GET", "/posts", json=[], headers={"Cache-Control": "public, max-age=30"})
    return service


async def test_a_read_only_get_is_cacheable_and_revalidates_with_304(
    gateway: Any, screen_service: FakeService
) -> None:
    first = await gateway.get("/graphql", params={"query": SCREEN})
    assert first.status == 200
    assert first.headers["Cache-Control"] == "public, max-age=30"
    assert {"Accept", "Authorization"} <= {v.strip() for v in first.headers["Vary"].split(",")}
    tag = first.headers["ETag"]
    assert tag.startswith('"') and not tag.startswith("W/")

    again = await gateway.get("/graphql", params={"query": SCREEN}, headers={"If-None-Match": tag})
    assert again.status == 304
    assert await again.read() == b""
    assert (again.headers["ETag"], again.headers["Cache-Control"]) == (tag, "public, max-age=30")
    # The batch ran again to know its answer had not changed: a 304 saves the bytes, not the
    # upstream calls; the upstreams' own max-age is what saves those, in the browser.
    assert len(screen_service.calls) == 4


async def test_credentials_make_it_private_and_failures_make_it_no_store(
    gateway: Any, screen_service: FakeService
) -> None:
    mine = await gateway.get(
        "/graphql", params={"query": SCREEN}, headers={"Authorization": "Bearer ada"}
    )
    assert mine.headers["Cache-Control"] == "private, max-age=30"
    missing = '{ batch(requests: [{path: "/users/1"}, {path: "/nowhere"}]) { items { status } } }'
    failed = await gateway.get("/graphql", params={"query": missing})
    assert failed.headers["Cache-Control"] == "private, no-store"
    assert "ETag" not in failed.headers


async def test_posts_and_mutations_are_never_stored(
    gateway: Any, screen_service: FakeService
) -> None:
    by_post = await gateway.post("/graphql", json={"query": SCREEN})
    mutation = await gateway.post(
        "/graphql", json={"query": "mutation " + SCREEN.replace("{ batch", "{ batch", 1)}
    )
    for resp in (by_post, mutation):
        assert resp.headers["Cache-Control"] == "private, no-store"
        assert "ETag" not in resp.headers


@pytest.fixture
def big_service(service: FakeService) -> FakeService:
    service.route("GET", "/big", json={"text": "x" * 4000})
    service.route("GET", "/small", json={})
    service.route("GET", "/huge", json={"text": "x" * 100_000})
    return service


async def test_answers_are_compressed_for_clients_that_accept_it(
    gateway: Any, big_service: FakeService
) -> None:
    body = [{"path": "/big"}]
    for accept, coding in (
        ("gzip, deflate", "gzip"),
        ("gzip;q=0.5, br", "br"),
        ("br;q=0, gzip", "gzip"),
        ("identity", None),
    ):
        resp = await gateway.post("/batch", json=body, headers={"Accept-Encoding": accept})
        assert resp.headers.get("Content-Encoding") == coding, accept
        assert (await resp.json())[0]["body"]["text"] == "x" * 4000  # decoded by aiohttp
        if coding:
            assert "Accept-Encoding" in resp.headers["Vary"]
    # A large answer (over 64 KiB) is compressed harder than a screen's: gzip all the same.
    huge = await gateway.post(
        "/batch", json=[{"path": "/huge"}], headers={"Accept-Encoding": "gzip"}
    )
    assert huge.headers["Content-Encoding"] == "gzip"
    assert int(huge.headers["Content-Length"]) < 1000
    assert (await huge.json())[0]["body"]["text"] == "x" * 100_000
    small = await gateway.post(
        "/batch", json=[{"path": "/small"}], headers={"Accept-Encoding": "gzip"}
    )
    assert "Content-Encoding" not in small.headers
    # A stream is sent as it comes: a compressor would hold its first items back.
    stream = await gateway.post(
        "/batch",
        json=body,
        headers={"Accept-Encoding": "gzip", "Accept": "application/x-ndjson"},
    )
    assert "Content-Encoding" not in stream.headers
