"""The attacks of issues 9 and 24 against a real `gqlbatch serve` with default settings, and
what each costs.

    python benchmarks/attacks.py                 # about 3 minutes
    python benchmarks/attacks.py --seconds 2 --only fragment-tower-650-bytes

Starts a misbehaving upstream (`--serve-upstream`, this file as a child process; it publishes
an OpenAPI document, which the gateway checks bodies against, and counts what it receives)
and the gateway, both on loopback. For each attack, one thread repeats it (bounded in count
and time) while a bystander asks `/healthz` every 50 ms and a sampler reads the gateway's RSS
from /proc. It prints, per attack: requests sent, the gateway's answer time (p50 and max),
its peak RSS and its RSS once the attack is over, the bystander's /healthz latency (p50 and
max), and the requests the upstream received. tests/test_responsiveness.py runs the same
attacks (all but the slowest), asserting the bystander's bound.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gzip
import hashlib
import http.client
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

HERE = Path(__file__).parent
ROWS = [{f"k{n}": n for n in range(100)} for _ in range(1000)]
BIG = base64.b64encode(random.Random(24).randbytes(1_500_000)).decode()
"""2 MB of text that compression cannot shrink much: what a job's results or an unread answer
hold."""
DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "hostile", "version": "1"},
    "paths": {
        "/tags": {
            "post": {
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {"type": "array", "items": {"type": "integer"}}
                        }
                    }
                },
                "responses": {"201": {"description": "created"}},
            }
        },
        "/slugs": {
            "post": {
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"slug": {"type": "string", "pattern": "^(a|aa)+$"}},
                            }
                        }
                    }
                },
                "responses": {"201": {"description": "created"}},
            }
        },
    },
}
"""The upstream's OpenAPI document: bodies of POST /tags and /slugs are checked against it."""


# --------------------------------------------------------------------------------------------
# The misbehaving upstream


def hostile_upstream() -> web.Application:
    """An upstream that answers 1,000 wide rows, half a MiB, JSON 100,000 deep, a gzip bomb,
    a 100,000-digit integer, a slow drip, and 200 {"id": 1} to anything else."""
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

    async def big(request: web.Request) -> web.Response:
        return web.Response(text=BIG)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)  # a job that takes its time: its followers wait on it
        return web.json_response({"slow": True})

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["n"]), text="odd")

    received = [0]

    @web.middleware
    async def counting(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in ("/count", "/openapi.json"):
            received[0] += 1
        return await handler(request)  # type: ignore[no-any-return]

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"received": received[0]})

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(DOCUMENT)

    app = web.Application(middlewares=[counting])
    for path, handler in [
        ("/rows", rows),
        ("/half", half_mib),
        ("/deep", deep),
        ("/bomb", gzip_bomb),
        ("/bigint", big_int),
        ("/drip", drip),
        ("/big", big),
        ("/slow", slow),
        ("/status/{n}", status),
        ("/count", count),
        ("/openapi.json", openapi),
    ]:
        app.router.add_get(path, handler)
    app.router.add_route("*", "/{tail:.*}", ok)
    return app


# --------------------------------------------------------------------------------------------
# The attacks: each sends one hostile request (or a volley) to the gateway at *url*


def post(
    url: str,
    path: str,
    body: bytes,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> int:
    """POST *body* with the standard library's client; the status, once the answer is read."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request(
            "POST", path, body=body, headers={"Content-Type": content_type, **(headers or {})}
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> int:
    return post(url, "/graphql", json.dumps({"query": query, "variables": variables}).encode())


def batch(url: str, items: list[dict[str, Any]]) -> int:
    return post(url, "/batch", json.dumps(items).encode())


def fragment_tower(levels: int, fan: int, leaf: str = "requestId") -> str:
    """Fragment i spreads fragment i+1 *fan* times; the last selects *leaf*."""
    frags = []
    for i in range(levels):
        body = " ".join([f"...F{i + 1}"] * fan) if i < levels - 1 else leaf
        frags.append(f"fragment F{i} on ItemResult {{ {body} }}")
    return "mutation Tower { batch(requests: []) { items { ...F0 } } } " + " ".join(frags)


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
SELECT = (
    'query($s: [String!]) { batch(requests: [{path: "/rows"}]) { items { body(select: $s) } } }'
)


# Issue 24's: the surfaces added since issue 9


def jobs_of(url: str, items: list[dict[str, Any]], client: str = "mallory") -> int:
    return post(
        url,
        "/batch",
        json.dumps(items).encode(),
        headers={"Prefer": "respond-async", "Authorization": f"Bearer {client}"},
    )


def _ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/graphql"


async def _follow(url: str, sockets: int, each: int) -> int:
    """One job held by its slow item, then *sockets* websockets of *each* followers of it."""
    follow = "subscription($id: ID!) { batchJob(id: $id) { __typename } }"
    async with aiohttp.ClientSession() as http_session:
        async with http_session.post(
            url + "/batch", json=[{"path": "/slow"}], headers={"Prefer": "respond-async"}
        ) as resp:
            job = await resp.json()

        async def one() -> None:
            try:
                async with (
                    asyncio.timeout(10),
                    http_session.ws_connect(
                        _ws_url(url), protocols=("graphql-transport-ws",)
                    ) as ws,
                ):
                    await ws.send_json({"type": "connection_init"})
                    await ws.receive_json()
                    for n in range(each):
                        payload = {"query": follow, "variables": {"id": job["id"]}}
                        await ws.send_json({"id": str(n), "type": "subscribe", "payload": payload})
                    ended = 0
                    async for message in ws:
                        if json.loads(message.data).get("type") in ("complete", "error"):
                            ended += 1
                            if ended == each:
                                return
            except (aiohttp.ClientError, TimeoutError):
                return  # refused (429), or cut

        await asyncio.gather(*(one() for _ in range(sockets)))
    return 200


async def _idle_websockets(url: str, count: int, hold_s: float) -> int:
    async with aiohttp.ClientSession() as http_session:
        opened = []
        for _ in range(count):
            with contextlib.suppress(aiohttp.ClientError):  # refused: it has its websockets
                opened.append(
                    await http_session.ws_connect(_ws_url(url), protocols=("graphql-ws",))
                )
        await asyncio.sleep(hold_s)
        for ws in opened:
            await ws.close()
    return 200


def never_reading(url: str, clients: int = 8, hold_s: float = 15.0) -> int:
    """*clients* connections that each ask for a 30 MB answer and never read it, held longer
    than the write deadline (10 s)."""
    parts = urlsplit(url)
    items = json.dumps([{"path": f"/big?n={n}"} for n in range(15)]).encode()
    held = []
    for _ in range(clients):
        s = socket.create_connection((parts.hostname, parts.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(
            b"POST /batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(items), items)
        )
        held.append(s)
    time.sleep(hold_s)
    for s in held:
        s.close()
    return 0


def register_documents(url: str, count: int = 100) -> int:
    """*count* distinct documents, each registered as Apollo's link does (hash and text)."""
    status = 0
    for _ in range(count):
        salt = os.urandom(8).hex()
        document = (
            f"query Q{salt} {{ __typename "
            + " ".join(f"a{n}: __typename" for n in range(200))
            + " }"
        )
        sha = hashlib.sha256(document.encode()).hexdigest()
        body = {
            "query": document,
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha}},
        }
        status = post(url, "/graphql", json.dumps(body).encode())
    return status


def new_documents(url: str) -> int:
    """Ten distinct documents at the limits, in one operation batch."""
    salt = os.urandom(4).hex()
    operations = [
        {"query": fragment_tower(7, 10, "x: requestId").replace("Tower", f"T{salt}{n}")}
        for n in range(10)
    ]
    return post(url, "/graphql", json.dumps(operations).encode())


SUBMIT_ALIASES = (
    "mutation($e: JSON) { "
    + " ".join(
        f'j{n}: submitBatch(requests: [{{forEach: $e, path: "/x/{{item}}"}}]) {{ id }}'
        for n in range(10)
    )
    + " }"
)


def drip_heads(url: str) -> int:
    """200 connections that send a request head a byte at a time; cut off at the deadline."""
    parts = urlsplit(url)
    sockets = [socket.create_connection((parts.hostname, parts.port)) for _ in range(200)]
    try:
        for byte in b"POST /batch HTTP/1.1\r\nX: ":
            for s in sockets:
                s.send(bytes([byte]))
    except OSError:
        pass  # cut off by the server
    finally:
        for s in sockets:
            s.close()
    return 0


ATTACKS: dict[str, Callable[[str], int]] = {
    "fragment-tower-650-bytes": lambda url: graphql(url, fragment_tower(7, 10, "x: requestId")),
    "nine-mib-document": lambda url: post(url, "/graphql", NINE_MIB_DOCUMENT.encode()),
    "json-a-million-deep": lambda url: post(url, "/batch", DEEP_BODY),
    "select-64-paths-of-1000-rows": lambda url: graphql(
        url, SELECT, {"s": [f"k{n}" for n in range(64)]}
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
    # Issue 24's
    "openapi-a-million-wrong-elements": lambda url: batch(
        url, [{"method": "POST", "path": "/tags", "body": ["x"] * 1_000_000}]
    ),
    "openapi-9-mib-of-valid-integers": lambda url: batch(
        url, [{"method": "POST", "path": "/tags", "body": [1234567] * 1_150_000}]
    ),
    "openapi-backtracking-pattern": lambda url: batch(
        url, [{"method": "POST", "path": "/slugs", "body": {"slug": "a" * 60 + "!"}}]
    ),
    "rendering-four-items-of-100-copies": lambda url: batch(
        url,
        [{"requestId": "h", "path": "/half"}]
        + [
            {"method": "POST", "path": "/p", "body": {"c": ["{resultOf(h)}"] * 100}}
            for _ in range(4)
        ],
    ),
    "2000-followers-of-one-job": lambda url: asyncio.run(_follow(url, 20, 100)),
    "submit-batch-3-operations-of-10-aliases": lambda url: post(
        url,
        "/graphql",
        json.dumps([{"query": SUBMIT_ALIASES, "variables": {"e": list(range(1000))}}] * 3).encode(),
    ),
    "one-client-fills-the-job-table": lambda url: jobs_of(url, [{"path": "/x/1"}]),
    "finished-jobs-of-30-mb": lambda url: jobs_of(
        url, [{"path": f"/big?n={n}"} for n in range(15)]
    ),
    "8-clients-that-never-read": never_reading,
    "512-idle-websockets": lambda url: asyncio.run(_idle_websockets(url, 512, 5.0)),
    "1500-persisted-queries": register_documents,
    "ten-new-documents-in-one-post": new_documents,
    "statuses-100-to-999": lambda url: batch(
        url, [{"path": f"/status/{random.randint(100, 999)}"} for _ in range(100)]
    ),
}
BENCHMARK_ONLY = frozenset(
    {
        "8-clients-that-never-read",
        "2000-followers-of-one-job",
        "submit-batch-3-operations-of-10-aliases",
        "one-client-fills-the-job-table",
        "finished-jobs-of-30-mb",
        "512-idle-websockets",
        "1500-persisted-queries",
        "statuses-100-to-999",
        "openapi-9-mib-of-valid-integers",
    }
)
"""Attacks the benchmark runs and the tests do not: each lasts seconds (past the write
deadline, a slow job's run, held websockets) or leaves jobs running behind it. Their
effects are each tested on their own (tests/test_jobs.py, test_websockets.py,
test_listener.py, ...)."""
ROUNDS = {"finished-jobs-of-30-mb": 16, "submit-batch-3-operations-of-10-aliases": 10}
"""Attacks that leave work running after them (jobs) are repeated no more than this."""


def healthz_ms(url: str) -> float:
    """One bystander request: /healthz, timed end to end."""
    parts = urlsplit(url)
    started = time.perf_counter()
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    return (time.perf_counter() - started) * 1000


class Attacking:
    """An attack being repeated: its answer times (ms) so far, and whether it goes on."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.thread: threading.Thread | None = None

    def going_on(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


@contextmanager
def repeated(
    attack: Callable[[str], int], url: str, *, rounds: int, seconds: float
) -> Iterator[Attacking]:
    """Repeat *attack* in a thread (at most *rounds* times, *seconds* long, and not once the
    block has ended) while the block runs. The block starts once the first attack request is
    on its way."""
    in_flight, stop = threading.Event(), threading.Event()
    attacking = Attacking()
    deadline = time.monotonic() + seconds

    def attacker() -> None:
        for _ in range(rounds):
            in_flight.set()
            started = time.perf_counter()
            attack(url)
            attacking.times.append((time.perf_counter() - started) * 1000)
            if stop.is_set() or time.monotonic() > deadline:
                return

    attacking.thread = threading.Thread(target=attacker, daemon=True)
    attacking.thread.start()
    assert in_flight.wait(10)
    try:
        yield attacking
    finally:
        stop.set()
        attacking.thread.join(120)


def settled(upstream: str, quiet_s: float = 1.0, most_s: float = 120.0) -> int:
    """What the upstream has received once nothing more has come for *quiet_s* (the jobs an
    attack left are done), waiting *most_s* at most."""
    deadline = time.monotonic() + most_s
    seen = upstream_received(upstream)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = upstream_received(upstream)
        if now == seen:
            return now
        seen = now
    return seen


def upstream_received(upstream: str) -> int:
    """The requests the hostile upstream has received so far."""
    with urllib.request.urlopen(upstream + "/count", timeout=10) as answer:
        return int(json.load(answer)["received"])


# --------------------------------------------------------------------------------------------
# The runner


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(name: str, url: str, upstream: str, pid: int, rounds: int, seconds: float) -> str:
    probes: list[float] = []
    peak = rss_mib(pid)
    sent_before = upstream_received(upstream)
    rounds = min(rounds, ROUNDS.get(name, rounds))
    with repeated(ATTACKS[name], url, rounds=rounds, seconds=seconds) as attacking:
        deadline = time.monotonic() + seconds
        # Probed as long as the attack goes on (one may last past its seconds, bounded by
        # its own rounds and the thread's join), and at least *seconds*.
        while (time.monotonic() < deadline or attacking.going_on()) and len(probes) < 5000:
            probes.append(healthz_ms(url))
            peak = max(peak, rss_mib(pid))
            time.sleep(0.05)
    sent = settled(upstream) - sent_before  # what the attack left running included
    after = rss_mib(pid)
    times = attacking.times or [float("nan")]
    return (
        f"| {name} | {len(attacking.times)} | {statistics.median(times):.0f} | "
        f"{max(times):.0f} | {peak:.0f} | {after:.0f} | {statistics.median(probes):.1f} | "
        f"{max(probes):.1f} | {sent} |"
    )


def gateway_config(upstream: str) -> str:
    """A configuration of the gateway in front of *upstream*, which publishes its document."""
    text = f'[upstreams.default]\nbase_url = "{upstream}"\nopenapi = "{upstream}/openapi.json"\n'
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as handle:
        handle.write(text)
    return handle.name


@contextmanager
def gateway(upstream: str) -> Iterator[tuple[str, int]]:
    """`gqlbatch serve`, default settings, in front of *upstream* and its document."""
    config = gateway_config(upstream)
    try:
        with child(
            "-m", "gqlbatch", "serve", "--config", config, "--port", "0", "--log-level", "ERROR"
        ) as (url, pid):
            yield url, pid
    finally:
        os.unlink(config)


def series(url: str) -> int:
    """The series of gqlbatch_upstream_calls_total the gateway exposes."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(1 for line in text.splitlines() if line.startswith("gqlbatch_upstream_calls_total{"))


@contextmanager
def child(*argv: str) -> Iterator[tuple[str, int]]:
    sys.path.insert(0, str(HERE))
    from run import process  # the runner's helper: a child that prints its URL first

    with process(*argv) as (url, pid):
        yield url, pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per attack, at most")
    parser.add_argument("--rounds", type=int, default=200, help="attack requests, at most")
    parser.add_argument("--only", help=f"comma-separated: {','.join(ATTACKS)}")
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        asyncio.run(_serve_upstream())
        return
    names = args.only.split(",") if args.only else list(ATTACKS)
    with (
        child(str(Path(__file__)), "--serve-upstream") as (upstream, _),
        gateway(upstream) as (url, pid),
    ):
        idle = rss_mib(pid)
        print(
            f"gqlbatch serve, default settings, in front of an upstream with an OpenAPI "
            f"document; idle RSS {idle:.0f} MiB; each attack repeated for {args.seconds:g} s "
            "at most (one that lasts longer, once)\n"
        )
        print(
            "| attack | requests | gateway p50 ms | gateway max ms | peak RSS MiB "
            "| RSS after MiB | bystander /healthz p50 ms | max ms | upstream received |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name in names:
            print(measure(name, url, upstream, pid, args.rounds, args.seconds), flush=True)
        print(
            f"\nRSS at the end: {rss_mib(pid):.0f} MiB; metric series of upstream calls: "
            f"{series(url)}"
        )


async def _serve_upstream() -> None:
    sys.path.insert(0, str(HERE.parent))
    from gqlbatch import running

    async with running(hostile_upstream(), "127.0.0.1", 0) as url:
        print(url, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    main()
