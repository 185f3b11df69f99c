"""While each attack of issue 9 runs, a bystander's `/healthz` still answers within 500 ms.

The gateway and a misbehaving upstream each run on their own event loop, in their own thread,
with default limits; an attacker thread repeats one attack (bounded in count), and the test
thread probes `/healthz`. The attacker sets an event as its first request goes out, so every
probe is known to overlap the attack; none of them waits on a timer. If an attack froze the
gateway's loop, the probes would wait as long as it did (a 650-byte query once held it 46 s).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from aiohttp import web

from gqlbatch import Settings, create_app, running
from tests.test_query_shape import fragment_tower

PROBES = 5
BOUND_S = 0.5
ROWS = [{f"k{n}": n for n in range(100)} for _ in range(1000)]


@contextmanager
def serving(make_app: Callable[[], web.Application]) -> Iterator[str]:
    """Serve the app *make_app* builds on a loop of its own, in a thread; yield its URL."""
    ready: dict[str, Any] = {}
    started = threading.Event()

    async def serve() -> None:
        stop = asyncio.Event()
        async with running(make_app()) as url:
            ready.update(url=url, stop=stop, loop=asyncio.get_running_loop())
            started.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield ready["url"]
    finally:
        ready["loop"].call_soon_threadsafe(ready["stop"].set)
        thread.join(10)


def hostile_upstream() -> web.Application:
    bomb = gzip.compress(b"0" * (64 * 1024 * 1024), compresslevel=9)

    async def rows(request: web.Request) -> web.Response:
        return web.json_response(ROWS)

    async def half_mib(request: web.Request) -> web.Response:
        return web.json_response({"blob": "x" * 500_000})

    async def deep(request: web.Request) -> web.Response:
        return web.Response(text="[" * 100_000 + "]" * 100_000, content_type="application/json")

    async def gzip_bomb(request: web.Request) -> web.Response:
        return web.Response(
            body=bomb, content_type="text/plain", headers={"Content-Encoding": "gzip"}
        )

    async def big_int(request: web.Request) -> web.Response:
        return web.Response(text='{"n": ' + "9" * 100_000 + "}", content_type="application/json")

    async def drip(request: web.Request) -> web.StreamResponse:
        # A slow upstream: its answer comes a byte every 50 ms, for a second.
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 20
        await response.prepare(request)
        for byte in b'{"slow": "........"}':
            await response.write(bytes([byte]))
            await asyncio.sleep(0.05)
        return response

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"id": 1})

    app = web.Application()
    for path, handler in [
        ("/rows", rows),
        ("/half", half_mib),
        ("/deep", deep),
        ("/bomb", gzip_bomb),
        ("/bigint", big_int),
        ("/drip", drip),
    ]:
        app.router.add_get(path, handler)
    app.router.add_route("*", "/{tail:.*}", ok)
    return app


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with serving(hostile_upstream) as upstream:
        settings = Settings.from_upstream_urls([upstream])
        with serving(lambda: create_app(settings)) as url:
            yield url


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> None:
    requests.post(url + "/graphql", json={"query": query, "variables": variables}, timeout=60)


def batch(url: str, items: list[dict[str, Any]]) -> None:
    requests.post(url + "/batch", json=items, timeout=60)


def raw(url: str, path: str, body: bytes) -> None:
    requests.post(url + path, data=body, headers={"Content-Type": "application/json"}, timeout=60)


NINE_MIB_DOCUMENT = json.dumps({"query": "{ __typename " + "#" * (9 * 1024 * 1024) + "\n}"})
DEEP_BODY = b"[" * 1_000_000 + b"]" * 1_000_000
ALIASES = (
    "mutation { "
    + " ".join(
        f'b{a}: batch(requests: [{{requestId: "l", path: "/rows"}}, '
        f'{{forEach: "{{resultOf(l)[*].k{a}}}", path: "/x/{{item}}"}}]) {{ replayed }}'
        for a in range(10)
    )
    + " }"
)
SELECT = """{ batch(requests: [{path: "/rows"}]) { items { body(select: $s) } } }"""


def drip_heads(url: str) -> None:
    # 200 connections that send a request head a byte at a time: each is cut off at the
    # header deadline, and none may cost the bystander anything.
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sockets = [socket.create_connection((host, int(port))) for _ in range(200)]
    try:
        for byte in b"POST /batch HTTP/1.1\r\nX: ":
            for s in sockets:
                s.send(bytes([byte]))
    except OSError:
        pass  # cut off by the server
    finally:
        for s in sockets:
            s.close()


ATTACKS: dict[str, Callable[[str], None]] = {
    "fragment-tower-650-bytes": lambda url: graphql(url, fragment_tower(7, 10, "x: requestId")),
    "nine-mib-document": lambda url: raw(url, "/graphql", NINE_MIB_DOCUMENT.encode()),
    "json-a-million-deep": lambda url: raw(url, "/batch", DEEP_BODY),
    "select-64-paths-of-1000-rows": lambda url: graphql(
        url,
        SELECT.replace("{ batch", "query($s: [String!]) { batch"),
        {"s": [f"k{n}" for n in range(64)]},
    ),
    "expansion-100-copies-of-half-a-mib": lambda url: batch(
        url,
        [{"requestId": "h", "path": "/half"}]
        + [{"method": "POST", "path": "/p", "body": "{resultOf(h)}"} for _ in range(99)],
    ),
    "ten-aliases-of-fan-out": lambda url: graphql(url, ALIASES),
    "hostile-upstream": lambda url: batch(
        url,
        [{"method": "POST", "path": "/w"}]
        + [{"path": p} for p in ("/deep", "/bomb", "/bigint", "/drip", "/rows")],
    ),
    "200-dripping-heads": drip_heads,
}


def probe(url: str) -> float:
    started = time.perf_counter()
    resp = requests.get(url + "/healthz", timeout=30)
    assert resp.status_code == 200
    return time.perf_counter() - started


@contextmanager
def under_attack(attack: Callable[[str], None], url: str) -> Iterator[None]:
    in_flight, stop = threading.Event(), threading.Event()

    def attacker() -> None:
        for _ in range(50):  # bounded, whatever the probes do
            in_flight.set()
            attack(url)
            if stop.is_set():
                return

    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    assert in_flight.wait(10)
    try:
        yield
    finally:
        stop.set()
        thread.join(120)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(ATTACKS))
def test_healthz_answers_a_bystander_during_the_attack(name: str, gateway: str) -> None:
    with under_attack(ATTACKS[name], gateway):
        latencies = [probe(gateway) for _ in range(PROBES)]
    assert max(latencies) < BOUND_S, [round(s, 3) for s in latencies]
