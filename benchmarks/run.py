"""The benchmark runner: starts its own upstream and a gqlbatch server on loopback, runs each
scenario for a bounded number of rounds and seconds, and prints a table.

    python benchmarks/run.py                 # every scenario, about two minutes on 2 cores
    python benchmarks/run.py --quick         # fewer rounds, for a smoke run
    python benchmarks/run.py --only fanout,screen

Each process is separate, as in production: the upstream (gqlbatch's sample API with a set
latency), the gateway (`gqlbatch serve`, its CPU and memory read from /proc), and this client.
Everything binds 127.0.0.1, every loop is bounded in rounds and in time, and every process is
stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).parent
QUERY = """mutation Bench($r: [SubRequestInput!]!) {
  batch(requests: $r) { items { status body } stats { upstreamCalls criticalPathMs } }
}"""


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    sub_requests: int | str
    upstream_calls: int | str
    wall_ms: float
    lower_bound_ms: float
    note: str = ""

    @property
    def ratio(self) -> str:
        return f"{self.wall_ms / self.lower_bound_ms:.2f}" if self.lower_bound_ms else "-"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)

    def print(self) -> None:
        head = (
            "scenario",
            "sub-requests",
            "upstream calls",
            "wall p50 ms",
            "critical path ms",
            "ratio",
            "note",
        )
        lines = [head] + [
            (
                r.scenario,
                str(r.sub_requests),
                str(r.upstream_calls),
                f"{r.wall_ms:.1f}",
                f"{r.lower_bound_ms:.0f}" if r.lower_bound_ms else "-",
                r.ratio,
                r.note,
            )
            for r in self.rows
        ]
        print("| " + " | ".join(lines[0]) + " |")
        print("|" + "|".join(" --- " for _ in head) + "|")
        for line in lines[1:]:
            print("| " + " | ".join(line) + " |")
        print()
        for fact in self.facts:
            print(f"- {fact}")


# ---------------------------------------------------------------------------------------------
# Processes


@contextlib.contextmanager
def process(*argv: str) -> Iterator[tuple[str, int]]:
    """Start a child that prints its URL first; yield (url, pid); stop it on the way out."""
    # As a context manager, Popen closes the pipe it opened once the child has exited.
    with subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.PIPE, text=True, cwd=HERE.parent
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            url = next(w for w in line.split() if w.startswith("http://"))
            yield url.removesuffix("/graphql"), proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def config(slow: str, fast: str, *, max_fanout: int = 1000, per_client: int = 200) -> str:
    bulk = "".join(
        f'[[upstreams.{name}.bulk]]\nmatch = "{match}"\n{extra}\n'
        for name in ("slowbulk", "fastbulk")
        for match, extra in (
            ("/users/{id}", ""),
            ("/posts/{id}", ""),
            ("/comments?postId={id}", "many = true"),
        )
    )
    upstreams = "".join(
        f'[upstreams.{name}]\nbase_url = "{url}"\n'
        for name, url in (("slow", slow), ("slowbulk", slow), ("fast", fast), ("fastbulk", fast))
    )
    limits = (
        f"[limits]\nmax_items = 1000\nmax_fanout = {max_fanout}\n"
        f"max_outstanding_per_client = {per_client}\n"
    )
    text = limits + upstreams + bulk
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as handle:
        handle.write(text)
    return handle.name


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


# ---------------------------------------------------------------------------------------------
# Batches


def fanout(upstream: str, n: int = 100) -> list[dict[str, Any]]:
    return [{"path": f"/posts/{i}", "upstream": upstream} for i in range(1, n + 1)]


def chain(upstream: str, depth: int = 5) -> list[dict[str, Any]]:
    # Each step reads the previous one's id; the query makes every call distinct, so that no
    # step is answered from the batch's cache.
    items = [{"path": "/posts/1", "upstream": upstream, "query": {"step": 0}}]
    items += [
        {"path": f"/posts/{{resultOf({k - 1}).id}}", "upstream": upstream, "query": {"step": k}}
        for k in range(1, depth)
    ]
    return items


def screen(upstream: str) -> list[dict[str, Any]]:
    """DESIGN §12's screen, written naively: a user, their 10 posts, each post's author and
    comments: 22 sub-requests."""

    def item(path: str, **kw: Any) -> dict[str, Any]:
        return {"path": path, "upstream": upstream, **kw}

    return [
        item("/users/1", requestId="user"),
        item("/posts", requestId="posts", query={"userId": "{resultOf(user).id}"}),
        *(item(f"/users/{{resultOf(posts)[{i}].userId}}") for i in range(10)),
        *(item("/comments", query={"postId": f"{{resultOf(posts)[{i}].id}}"}) for i in range(10)),
    ]


def screen_for_each(upstream: str) -> list[dict[str, Any]]:
    """The same screen with forEach: 4 sub-requests, 22 calls asked for."""
    return [
        {"requestId": "user", "path": "/users/1", "upstream": upstream},
        {
            "requestId": "posts",
            "path": "/posts",
            "query": {"userId": "{resultOf(user).id}"},
            "upstream": upstream,
        },
        {"forEach": "{resultOf(posts)[*].userId}", "path": "/users/{item}", "upstream": upstream},
        {
            "forEach": "{resultOf(posts)[*].id}",
            "path": "/comments",
            "query": {"postId": "{item}"},
            "upstream": upstream,
        },
    ]


SCREEN_QUERY = """mutation Screen($r: [SubRequestInput!]!) {
  batch(requests: $r) {
    items { requestId state status body error { code message } }
    stats { subRequests upstreamCalls wallMs criticalPathMs }
  }
}"""
"""What a screen selects: each item's outcome and body, and the batch's cost."""


async def post_batch(
    http: aiohttp.ClientSession,
    url: str,
    items: list[dict[str, Any]],
    query: str = QUERY,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    body = {"query": query, "variables": {"r": items}}
    async with http.post(url + "/graphql", json=body, headers=headers) as r:
        data = await r.json()
    if data.get("errors"):
        raise RuntimeError(json.dumps(data["errors"])[:500])
    return data["data"]["batch"]


async def timed(
    runs: int, seconds: float, once: Callable[[], Awaitable[Any]], warmup: int = 3
) -> tuple[float, Any]:
    """p50 wall ms of *once* over at most *runs* rounds and *seconds*, after a warm-up."""
    last = None
    for _ in range(warmup):
        last = await once()
    walls: list[float] = []
    deadline = time.monotonic() + seconds
    while len(walls) < runs and (not walls or time.monotonic() < deadline):
        started = time.perf_counter()
        last = await once()
        walls.append((time.perf_counter() - started) * 1000)
    return statistics.median(walls), last


async def timed_pair(
    runs: int,
    seconds: float,
    first: Callable[[], Awaitable[Any]],
    second: Callable[[], Awaitable[Any]],
    warmup: int = 3,
) -> tuple[float, float, Any]:
    """p50 wall ms of *first* and of *second*, measured in alternating rounds so that both
    see the same machine: on two shared cores, timings drift by ±20% over a minute, and two
    measurements taken one after the other compare that drift as much as the code."""
    last = None
    for _ in range(warmup):
        await first()
        last = await second()
    walls: tuple[list[float], list[float]] = ([], [])
    deadline = time.monotonic() + seconds
    while len(walls[0]) < runs and (not walls[0] or time.monotonic() < deadline):
        for once, into in ((first, walls[0]), (second, walls[1])):
            started = time.perf_counter()
            last = await once()
            into.append((time.perf_counter() - started) * 1000)
    return statistics.median(walls[0]), statistics.median(walls[1]), last


# ---------------------------------------------------------------------------------------------
# Scenarios


async def scenario_fanout(ctx: Context) -> None:
    latency, http, url = ctx.latency_ms, ctx.http, ctx.gateway
    targets = [f"{ctx.slow}/posts/{i}" for i in range(1, 101)]
    # The target compares gqlbatch with the bare client: measured in alternating rounds.
    bare_ms, wall, out = await timed_pair(
        ctx.runs,
        2 * ctx.seconds,
        lambda: fire_all(http, targets),
        lambda: post_batch(http, url, fanout("slow")),
    )
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=6)) as browser:
        six_ms, _ = await timed(
            max(3, ctx.runs // 5), ctx.seconds, lambda: fire_all(browser, targets), warmup=1
        )
    seq_ms, _ = await timed(3, ctx.seconds, lambda: fire_sequential(http, targets), warmup=0)
    bulk, bulk_out = await timed(
        ctx.runs, ctx.seconds, lambda: post_batch(http, url, fanout("slowbulk"))
    )
    rows = ctx.report.rows
    rows.append(Row("fan-out: sequential client", 100, 100, seq_ms, latency, "baseline"))
    rows.append(Row("fan-out: 6-connection client", 100, 100, six_ms, latency, "baseline"))
    rows.append(
        Row("fan-out: bare aiohttp, all at once", 100, 100, bare_ms, latency, "baseline: the floor")
    )
    rows.append(
        Row(
            "fan-out: gqlbatch",
            100,
            out["stats"]["upstreamCalls"],
            wall,
            latency,
            f"{wall / bare_ms:.2f}x bare client (target <= 1.3)",
        )
    )
    rows.append(
        Row("fan-out: gqlbatch, bulk route", 100, bulk_out["stats"]["upstreamCalls"], bulk, latency)
    )


async def fire_all(http: aiohttp.ClientSession, targets: list[str]) -> None:
    await asyncio.gather(*(fetch_json(http, t) for t in targets))


async def fire_sequential(http: aiohttp.ClientSession, targets: list[str]) -> None:
    for target in targets:
        await fetch_json(http, target)


async def fetch_json(http: aiohttp.ClientSession, target: str) -> Any:
    async with http.get(target) as r:
        return await r.json()


async def scenario_chain(ctx: Context) -> None:
    targets = [f"{ctx.slow}/posts/1?step={k}" for k in range(5)]
    bare, wall, out = await timed_pair(
        ctx.runs,
        2 * ctx.seconds,
        lambda: fire_sequential(ctx.http, targets),
        lambda: post_batch(ctx.http, ctx.gateway, chain("slow")),
    )
    bound = 5 * ctx.latency_ms
    rows = ctx.report.rows
    rows.append(
        Row("chain of 5: bare aiohttp, one after another", 5, 5, bare, bound, "baseline: the floor")
    )
    rows.append(
        Row(
            "chain of 5: gqlbatch",
            5,
            out["stats"]["upstreamCalls"],
            wall,
            bound,
            f"target <= {1.1 * bound:.0f} ms",
        )
    )


async def scenario_screen(ctx: Context) -> None:
    bound = 3 * ctx.latency_ms  # user -> posts -> (authors, comments)
    for upstream, label in (
        ("slow", "screen, no bulk routes"),
        ("slowbulk", "screen, bulk routes"),
    ):
        wall, out = await timed(
            ctx.runs, ctx.seconds, lambda u=upstream: post_batch(ctx.http, ctx.gateway, screen(u))
        )
        ctx.report.rows.append(Row(label, 22, out["stats"]["upstreamCalls"], wall, bound))


async def scenario_cpu(ctx: Context) -> None:
    wall, _ = await timed(
        ctx.runs, ctx.seconds, lambda: post_batch(ctx.http, ctx.gateway, fanout("fast"))
    )
    ctx.report.rows.append(
        Row(
            "100 GETs at zero upstream latency",
            100,
            100,
            wall,
            0,
            f"{wall * 10:.0f} us per sub-request, end to end",
        )
    )
    rounds = max(20, ctx.runs * 2)
    gateway_us = await cpu_per_call(
        rounds,
        ctx.seconds,
        lambda: cpu_seconds(ctx.gateway_pid),
        lambda: post_batch(ctx.http, ctx.gateway, fanout("fast")),
    )
    targets = [f"{ctx.fast}/posts/{i}" for i in range(1, 101)]
    bare_us = await cpu_per_call(
        rounds, ctx.seconds, time.process_time, lambda: fire_all(ctx.http, targets)
    )
    ctx.report.facts.append(
        f"gateway CPU per sub-request at zero upstream latency: {gateway_us:.0f} us, of which "
        f"its own aiohttp client calls cost about {bare_us:.0f} us (a bare aiohttp client's CPU "
        f"per call, measured in this run); gqlbatch's own share: {gateway_us - bare_us:.0f} us "
        f"(target < 150 us)"
    )
    ctx.report.facts.append(
        "where it goes (in-process profile, share of CPU by package): "
        + await profile_shares(ctx.fast)
    )


async def scenario_screen_cpu(ctx: Context) -> None:
    """The gateway's CPU per screen at zero upstream latency (issue 15's goals: the naive
    screen at most 4 ms, the forEach screen at most 3 ms), one screen at a time."""
    for label, items in (
        ("naive screen (22 items)", screen("fast")),
        ("naive screen, bulk routes", screen("fastbulk")),
        ("forEach screen (4 items)", screen_for_each("fast")),
        ("forEach screen, bulk routes", screen_for_each("fastbulk")),
    ):
        ms = await cpu_per_call(
            max(20, ctx.runs * 2),
            ctx.seconds,
            lambda: cpu_seconds(ctx.gateway_pid),
            lambda items=items: post_batch(ctx.http, ctx.gateway, items, SCREEN_QUERY),
            calls=1,
        )
        ctx.report.facts.append(f"gateway CPU per screen, {label}: {ms / 1000:.2f} ms")


async def cpu_per_call(
    rounds: int,
    seconds: float,
    clock: Callable[[], float],
    once: Callable[[], Awaitable[Any]],
    calls: int = 100,
) -> float:
    """CPU microseconds per call over rounds of *calls* calls, by *clock*; bounded in rounds
    and time."""
    for _ in range(5):
        await once()
    before, started, done = clock(), time.monotonic(), 0
    while done < rounds and time.monotonic() - started < seconds:
        await once()
        done += 1
    return (clock() - before) / (done * calls) * 1e6


async def profile_shares(fast_url: str) -> str:
    # The gateway, its upstream client and this client share one process here, so the profile
    # is of the whole path; the shares still show which layer costs what.
    from gqlbatch import Settings, create_app, running

    settings = Settings.from_upstream_urls([fast_url], max_items=1000)
    async with running(create_app(settings)) as url, aiohttp.ClientSession() as http:
        items = [{"path": f"/posts/{i}"} for i in range(1, 101)]
        await post_batch(http, url, items)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(20):
            await post_batch(http, url, items)
        profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    shares: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        shares[_package(filename)] = shares.get(_package(filename), 0.0) + tottime
    total = sum(shares.values())
    top = sorted(shares.items(), key=lambda kv: -kv[1])[:7]
    return ", ".join(f"{name} {100 * t / total:.0f}%" for name, t in top)


def _package(filename: str) -> str:
    for name in (
        "gqlbatch",
        "strawberry",
        "graphql",
        "aiohttp",
        "aiodataloader",
        "yarl",
        "multidict",
        "asyncio",
        "json",
    ):
        if f"/{name}/" in filename:
            return name
    return "other"


async def scenario_throughput(ctx: Context) -> None:
    deadline = time.monotonic() + ctx.seconds
    limit = ctx.runs * 20
    done = 0

    async def client(n: int) -> None:
        # Sixteen distinct clients (credentials), each under its own outstanding-call limit.
        nonlocal done
        headers = {"Authorization": f"Bearer client-{n}"}
        while done < limit and time.monotonic() < deadline:
            await post_batch(ctx.http, ctx.gateway, screen("slowbulk"), headers=headers)
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(16)))
    rate = done / (time.monotonic() - started)
    ctx.report.facts.append(
        f"screens per second at 16 concurrent clients (bulk routes, "
        f"{ctx.latency_ms:.0f} ms upstream latency): {rate:.0f} ({done} screens)"
    )


async def scenario_rss(ctx: Context) -> None:
    cfg = config(ctx.slow, ctx.fast, max_fanout=1000)
    with process(
        "-m", "gqlbatch", "serve", "--config", cfg, "--port", "0", "--log-level", "WARNING"
    ) as (url, pid):
        idle = memory_kib(pid, "VmRSS")
        items = [{"forEach": list(range(1000)), "path": "/blob/{item}", "upstream": "fast"}]
        query = "mutation($r: [SubRequestInput!]!) { batch(requests: $r) { items { body } } }"
        async with aiohttp.ClientSession() as http:
            out = await post_batch(http, url, items, query)
        assert len(out["items"][0]["body"]) == 1000
        peak = memory_kib(pid, "VmHWM")
    ctx.report.facts.append(
        f"peak RSS of the gateway for a 1,000-item batch with 10 KB bodies: "
        f"{peak / 1024:.0f} MiB (idle {idle / 1024:.0f} MiB)"
    )


async def scenario_idempotency(ctx: Context) -> None:
    # 20 POSTs under one Idempotency-Key: the first run, then replays of it. A replay must
    # make no upstream call at all; the counter is the upstream's own record of POSTs.
    items = [
        {"method": "POST", "path": "/posts", "upstream": "fast", "body": {"n": i}}
        for i in range(20)
    ]
    key = f"bench-{time.monotonic_ns()}"

    async def send() -> float:
        started = time.perf_counter()
        async with ctx.http.post(
            ctx.gateway + "/batch", json=items, headers={"Idempotency-Key": key}
        ) as resp:
            await resp.read()
            assert resp.status == 200
        return (time.perf_counter() - started) * 1000

    first = await send()
    async with ctx.http.get(ctx.fast + "/posts") as resp:
        before = len(await resp.json())
    replay, _ = await timed(ctx.runs, ctx.seconds, send)
    async with ctx.http.get(ctx.fast + "/posts") as resp:
        after = len(await resp.json())
    ctx.report.rows.append(Row("20 POSTs, first run with an Idempotency-Key", 20, 20, first, 0))
    ctx.report.rows.append(
        Row(
            "the same batch replayed",
            20,
            after - before,
            replay,
            0,
            "stored result; upstream POSTs counted at the upstream",
        )
    )


SCENARIOS: dict[str, Callable[[Context], Awaitable[None]]] = {
    "fanout": scenario_fanout,
    "chain": scenario_chain,
    "screen": scenario_screen,
    "cpu": scenario_cpu,
    "screencpu": scenario_screen_cpu,
    "throughput": scenario_throughput,
    "rss": scenario_rss,
    "idempotency": scenario_idempotency,
}


@dataclass
class Context:
    latency_ms: float
    runs: int
    seconds: float
    slow: str
    fast: str
    gateway: str
    gateway_pid: int
    http: aiohttp.ClientSession
    report: Report


async def main_async(args: argparse.Namespace) -> Report:
    report = Report()
    wanted = args.only.split(",") if args.only else list(SCENARIOS)
    with (
        process(str(HERE / "upstream.py"), "--latency-ms", str(args.latency_ms)) as (slow, _),
        process(str(HERE / "upstream.py")) as (fast, _),
    ):
        cfg = config(slow, fast)
        with process(
            "-m", "gqlbatch", "serve", "--config", cfg, "--port", "0", "--log-level", "WARNING"
        ) as (url, pid):
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                ctx = Context(
                    args.latency_ms, args.runs, args.seconds, slow, fast, url, pid, http, report
                )
                for name in wanted:
                    print(f"running {name} ...", file=sys.stderr, flush=True)
                    await SCENARIOS[name](ctx)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=30, help="rounds per measurement, at most")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement, at most")
    parser.add_argument("--quick", action="store_true", help="5 rounds and 3 s per measurement")
    parser.add_argument("--only", help=f"comma-separated: {','.join(SCENARIOS)}")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.seconds = 5, 3.0
    report = asyncio.run(main_async(args))
    print(
        f"cores: {os.cpu_count()}, upstream latency: {args.latency_ms:.0f} ms, "
        f"python {sys.version.split()[0]}\n"
    )
    report.print()


if __name__ == "__main__":
    main()
