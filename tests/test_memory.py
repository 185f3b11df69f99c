"""A finished batch is freed by reference counting, and memory comes back after large batches.

With the cyclic collector off, a batch that leaves a reference cycle behind leaves it for good;
the tests find such leftovers by what the collector would have freed (gc.DEBUG_SAVEALL). A
cycle that reaches a batch keeps its responses alive until a full collection, which a server
tuned for throughput runs rarely: 8 batches of 20 x 7 MiB once left 1.4 GB behind.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import socket
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gqlbatch import Settings, create_app
from gqlbatch.core.upstream_settings import RetrySettings
from tests.processes import SERVING, gqlbatch_server

OURS = ("gqlbatch", "graphql", "strawberry")


@pytest.fixture
def no_cyclic_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def leftovers() -> list[str]:
    """What a full collection would free now that came from gqlbatch, graphql-core or
    Strawberry: their objects, and frames of their code."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = list(gc.garbage)
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
    names = []
    for obj in found:
        if isinstance(obj, types.FrameType):
            if any(f"/{root}/" in obj.f_code.co_filename for root in OURS):
                names.append(f"frame {obj.f_code.co_name}")
        elif type(obj).__module__.split(".")[0] in OURS:
            names.append(type(obj).__qualname__)
    return names


@pytest.fixture
async def hostile(aiohttp_client: Any, aiohttp_server: Any) -> TestClient:
    """A gateway in front of an upstream that answers, fails, and times out; and of a
    closed port."""

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"id": 1, "rows": [{"n": n} for n in range(100)]})

    async def bad(request: web.Request) -> web.Response:
        return web.Response(text="{nope", content_type="application/json")

    async def stuck(request: web.Request) -> web.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_route("*", "/ok{tail:.*}", ok)
    app.router.add_get("/bad", bad)
    app.router.add_get("/stuck", stuck)
    server = await aiohttp_server(app, host="127.0.0.1")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = Settings.from_upstream_urls(
        [f"up={server.make_url('')}".rstrip("/"), f"closed=http://127.0.0.1:{port}"],
        retries=RetrySettings(max_attempts=2, backoff_ms=1, max_backoff_ms=1),
    )
    return await aiohttp_client(create_app(settings))


ITEMS = [
    {"requestId": "a", "upstream": "up", "path": "/ok/1"},
    {"requestId": "b", "upstream": "up", "path": "/ok/1"},
    {"requestId": "c", "upstream": "up", "path": "/ok/{resultOf(a).id}"},
    {"requestId": "d", "upstream": "up", "path": "/ok/{resultOf(a).nope}"},
    {"requestId": "e", "upstream": "up", "path": "/bad"},
    {"requestId": "f", "upstream": "up", "path": "/bad"},
    {"requestId": "g", "upstream": "closed", "path": "/x"},
    {"requestId": "h", "upstream": "closed", "path": "/x"},
    {"requestId": "i", "upstream": "up", "path": "/stuck", "timeoutMs": 50},
    {"requestId": "j", "upstream": "up", "method": "POST", "path": "/ok", "body": {"x": 1}},
    {"requestId": "k", "upstream": "up", "path": "/ok/{resultOf(e).id}"},
]
QUERY = """mutation($r: [SubRequestInput!]!) {
  batch(requests: $r) { items { requestId state error { code } ... on Succeeded { body } } }
}"""


async def send_both_doors(client: TestClient) -> None:
    rest = await client.post("/batch", json={"requests": ITEMS})
    assert rest.status == 200
    await rest.read()
    graphql = await client.post("/graphql", json={"query": QUERY, "variables": {"r": ITEMS}})
    assert "errors" not in await graphql.json()


async def test_a_finished_batch_leaves_no_cycles_behind(
    hostile: TestClient, no_cyclic_collector: None
) -> None:
    await send_both_doors(hostile)  # warm: first-use caches are not leftovers
    gc.collect()
    for _ in range(3):
        await send_both_doors(hostile)
    await asyncio.sleep(0)
    assert leftovers() == []


async def test_a_refused_batch_leaves_no_cycles_behind(
    hostile: TestClient, no_cyclic_collector: None
) -> None:
    # Issue 24: a refusal's traceback held the frame that held the task that held the
    # refusal: each refused batch, its items and its body (54 MB for a body of a million
    # numbers) waited for a full collection. Refused on the way in, and as a stream.
    refused = [{"path": "//elsewhere"}, {"id": "a", "path": "/ok", "body": list(range(1000))}]
    await hostile.post("/batch", json=refused)  # warm
    gc.collect()
    for _ in range(3):
        assert (await hostile.post("/batch", json=refused)).status == 400
        streamed = await hostile.post(
            "/batch", json=refused, headers={"Accept": "application/x-ndjson"}
        )
        assert streamed.status == 400
    await asyncio.sleep(0)
    assert leftovers() == []


class _Told(logging.Handler):
    """Sets an event when a record with *words* is logged: a server's step to wait for."""

    def __init__(self, words: str) -> None:
        super().__init__()
        self.words = words
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self.event.set()


async def test_a_client_that_leaves_mid_answer_leaves_no_cycles(
    service: Any, upstream_url: str, no_cyclic_collector: None
) -> None:
    # Issue 24: aiohttp's drain leaves a cycle when the connection is lost while it waits, and
    # the error's traceback held the frame that was writing the answer: eight clients that
    # left mid-answer held 280 MiB until a full collection.
    from gqlbatch import running

    service.route("GET", "/big", text="x" * 2_000_000)
    told = _Told("the client went before its answer was written")
    doors = logging.getLogger("gqlbatch.doors")
    level = doors.level
    doors.setLevel(logging.INFO)
    doors.addHandler(told)
    items = json.dumps([{"path": f"/big?n={n}"} for n in range(15)]).encode()
    try:
        async with running(create_app(Settings.from_upstream_urls([upstream_url]))) as base:
            async with aiohttp.ClientSession() as warm:  # first-use caches are not leftovers
                await (await warm.post(base + "/batch", data=items)).read()
            gc.collect()
            host, port = base.removeprefix("http://").rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            writer.write(
                b"POST /batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(items), items)
            )
            # The answer has begun (30 MB, far more than the sockets' buffers): the server
            # waits for the client to take it, which it never does, and leaves instead.
            await reader.readuntil(b"\r\n\r\n")
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            writer.transport.abort()
            await told.event.wait()
            for _ in range(3):  # aiohttp's end of the request, after the door's
                await asyncio.sleep(0)
            assert leftovers() == []
    finally:
        doors.removeHandler(told)
        doors.setLevel(level)


async def test_documents_forgotten_leave_no_cycles_behind(
    hostile: TestClient, no_cyclic_collector: None
) -> None:
    # Issue 24: graphql-core links a document's tokens both ways, so every parsed document was
    # a cycle: 1,500 new documents left 147,000 tokens (60 MiB) for a full collection to free.
    # More documents than are kept, each refused by its shape (validation is not reached).
    aliases = " ".join(f"a{i}: __typename" for i in range(200))
    await hostile.post("/graphql", json={"query": f"query W {{ {aliases} }}"})  # warm
    gc.collect()
    for n in range(100):
        refused = await hostile.post("/graphql", json={"query": f"query Q{n} {{ {aliases} }}"})
        assert "QUERY_TOO_COMPLEX" in await refused.text()
    assert leftovers() == []


async def test_documents_kept_between_requests_are_bounded_by_their_size(
    hostile: TestClient,
) -> None:
    # Issue 24: the parsed documents, their errors and Strawberry's validation cache were each
    # kept by count (256), and a parsed document weighs about 70 times its text: 256 documents
    # at the limits kept 0.5 GB each, for good. What is kept is bounded by the texts' size now.
    from graphql import DocumentNode

    from gqlbatch.doors.graphql.documents import CACHE_CHARS

    aliases = " ".join(f"a{i}: __typename" for i in range(1500))  # refused: 50 at most
    for n in range(100):
        if n % 10 == 0:
            query = f"query R{n} {{ {aliases} }}"
            refused = await hostile.post("/graphql", json={"query": query})
            assert "QUERY_TOO_COMPLEX" in await refused.text()
        valid = f"query V{n} {{ __typename }} # {'x' * 27_000}"
        assert (await (await hostile.post("/graphql", json={"query": valid})).json())["data"]
    gc.collect()
    alive = [
        len(o.loc.source.body)
        for o in gc.get_objects()
        if isinstance(o, DocumentNode) and o.loc is not None
    ]
    assert sum(alive) <= 2 * CACHE_CHARS, f"{len(alive)} documents of {sum(alive)} chars kept"


def rss_mib(pid: int) -> float:
    """The resident set of process *pid*, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) / 1024  # type: ignore[index]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
@pytest.mark.timeout(120)
async def test_memory_comes_back_after_large_batches(aiohttp_server: Any) -> None:
    # The server as it runs in production (`gqlbatch serve`, with its collector tuning), in
    # front of an upstream whose every answer is a JSON list of about 1 MiB. A batch of 20
    # such answers holds ~60 MiB while it runs, and the allocator keeps some of it, so RSS
    # moves by tens of MiB from one batch to the next. What must not happen is growth: the
    # highest RSS over 3 more batches stays within MARGIN_MIB of the highest over the first
    # 3. Before the cycles were broken, RSS grew by ~70 MiB a batch (167 -> 929 MiB in 12),
    # 210 MiB over those 3.
    rows = [{"id": n, "name": f"user {n}", "tags": ["a", "b"], "score": n / 3} for n in range(9000)]
    body = json.dumps(rows).encode()

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    upstream = await aiohttp_server(app, host="127.0.0.1")
    batch = [{"path": f"/rows/{n}"} for n in range(20)]
    async with (
        gqlbatch_server("serve", "--upstream", str(upstream.make_url("")), printing=SERVING) as (
            url,
            proc,
        ),
        aiohttp.ClientSession() as http,
    ):

        async def run() -> None:
            async with http.post(url + "/batch", json=batch) as resp:
                assert resp.status == 200
                await resp.read()

        warm = [await run() or round(rss_mib(proc.pid)) for _ in range(3)]
        after = [await run() or round(rss_mib(proc.pid)) for _ in range(3)]
    print(f"RSS (MiB) after each of 3 batches {warm}, then of 3 more {after}")
    assert max(after) - max(warm) < MARGIN_MIB, (warm, after)


MARGIN_MIB = 96
