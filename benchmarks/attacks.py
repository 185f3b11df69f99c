"""Issue 9's attacks against a real `gqlbatch serve` with default settings, and what each costs.

    python benchmarks/attacks.py                 # about 45 s
    python benchmarks/attacks.py --seconds 2 --only fragment-tower-650-bytes

Starts a misbehaving upstream (`--serve-upstream`, this file as a child process) and the
gateway, both on loopback. For each attack, one thread repeats it (bounded in count and time)
while a bystander asks `/healthz` every 50 ms and a sampler reads the gateway's RSS from /proc.
It prints, per attack: requests sent, the gateway's answer time (p50 and max), its peak RSS,
and the bystander's /healthz latency (p50 and max). tests/test_responsiveness.py runs the same
attacks, asserting the bystander's bound.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import http.client
import json
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

HERE = Path(__file__).parent
ROWS = [{f"k{n}": n for n in range(100)} for _ in range(1000)]


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


# --------------------------------------------------------------------------------------------
# The attacks: each sends one hostile request (or a volley) to the gateway at *url*


def post(url: str, path: str, body: bytes, content_type: str = "application/json") -> int:
    """POST *body* with the standard library's client; the status, once the answer is read."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
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
}


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


@contextmanager
def repeated(
    attack: Callable[[str], int], url: str, *, rounds: int, seconds: float
) -> Iterator[list[float]]:
    """Repeat *attack* in a thread (at most *rounds* times, *seconds* long) while the block
    runs; yield the list its answer times (ms) are added to. The block starts once the first
    attack request is on its way."""
    in_flight, stop = threading.Event(), threading.Event()
    times: list[float] = []
    deadline = time.monotonic() + seconds

    def attacker() -> None:
        for _ in range(rounds):
            in_flight.set()
            started = time.perf_counter()
            attack(url)
            times.append((time.perf_counter() - started) * 1000)
            if stop.is_set() or time.monotonic() > deadline:
                return

    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    assert in_flight.wait(10)
    try:
        yield times
    finally:
        stop.set()
        thread.join(120)


# --------------------------------------------------------------------------------------------
# The runner


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(name: str, url: str, pid: int, rounds: int, seconds: float) -> str:
    probes: list[float] = []
    peak = rss_mib(pid)
    with repeated(ATTACKS[name], url, rounds=rounds, seconds=seconds) as times:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(probes) < 1000:
            probes.append(healthz_ms(url))
            peak = max(peak, rss_mib(pid))
            time.sleep(0.05)
    return (
        f"| {name} | {len(times)} | {statistics.median(times):.0f} | {max(times):.0f} | "
        f"{peak:.0f} | {statistics.median(probes):.1f} | {max(probes):.1f} |"
    )


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
        child(
            "-m", "gqlbatch", "serve", "--upstream", upstream, "--port", "0", "--log-level", "ERROR"
        ) as (url, pid),
    ):
        idle = rss_mib(pid)
        print(
            f"gqlbatch serve, default settings; idle RSS {idle:.0f} MiB; "
            f"each attack repeated for {args.seconds:g} s at most\n"
        )
        print(
            "| attack | requests | gateway p50 ms | gateway max ms | peak RSS MiB "
            "| bystander /healthz p50 ms | max ms |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name in names:
            print(measure(name, url, pid, args.rounds, args.seconds), flush=True)


async def _serve_upstream() -> None:
    sys.path.insert(0, str(HERE.parent))
    from gqlbatch import running

    async with running(hostile_upstream(), "127.0.0.1", 0) as url:
        print(url, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    main()
