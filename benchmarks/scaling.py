"""Many processes and streamed results: what they buy and what they cost.

    python benchmarks/scaling.py              # about a minute on 2 cores; needs redis-server
    python benchmarks/scaling.py --quick      # fewer rounds, for a smoke run

Starts its own upstreams (benchmarks/upstream.py, one with latency and one without), a
redis-server on a free loopback port, and `gqlbatch serve` in each configuration measured,
each a process of its own. Every loop is bounded in rounds and in seconds. It prints:

- streaming: time to the first item and to the last of a 100-item batch over
  `application/x-ndjson`, against the whole batch answered at once;
- workers: screens per second at 16 clients with 1 worker and with 2 (a shared Redis store);
- the store: the time of a small batch (admission, and an idempotent batch) with the state in
  memory and in Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

HERE = Path(__file__).parent
# Run as a script: the runner's helpers (upstreams, config, screen) and the tests' redis-server
# starter are found next to it and one level up.
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from run import config, process, screen  # noqa: E402

from tests.redis_server import redis_server  # noqa: E402


@contextlib.contextmanager
def gateway(cfg: str, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    argv = ("-m", "gqlbatch", "serve", "--config", cfg, "--port", "0", "--log-level", "ERROR")
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        with process(*argv, *extra) as (url, _):
            yield url
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def streaming(url: str, rounds: int, seconds: float) -> list[str]:
    # 100 items: 90 on the upstream without latency, 10 on the one with it. Streamed, the
    # fast ones arrive long before the slow ones; answered at once, all wait for the slowest.
    items = [{"id": f"i{n}", "path": f"/posts/{n + 1}", "upstream": "fast"} for n in range(90)]
    items += [{"id": f"s{n}", "path": f"/posts/{n + 1}", "upstream": "slow"} for n in range(10)]
    firsts, lasts, wholes = [], [], []
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        for _ in range(rounds):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            first = None
            async with http.post(
                url + "/batch", json=items, headers={"Accept": "application/x-ndjson"}
            ) as resp:
                async for _line in resp.content:
                    if first is None:
                        first = time.perf_counter() - started
            lasts.append((time.perf_counter() - started) * 1000)
            firsts.append((first or 0) * 1000)
            started = time.perf_counter()
            async with http.post(url + "/batch", json=items) as resp:
                await resp.read()
            wholes.append((time.perf_counter() - started) * 1000)
    return [
        f"| streamed 100 items (90 fast, 10 at 20 ms), first line | "
        f"{statistics.median(firsts):.1f} ms |",
        f"| streamed, last line | {statistics.median(lasts):.1f} ms |",
        f"| the same batch answered at once | {statistics.median(wholes):.1f} ms |",
    ]


async def screens_per_second(url: str, rounds: int, seconds: float) -> float:
    query = "mutation($r: [SubRequestInput!]!) { batch(requests: $r) { stats { wallMs } } }"
    limit, done = rounds * 20, 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client(n: int) -> None:
            nonlocal done
            headers = {"Authorization": f"Bearer client-{n}"}
            body = {"query": query, "variables": {"r": screen("slowbulk")}}
            while done < limit and time.monotonic() < deadline:
                async with http.post(url + "/graphql", json=body, headers=headers) as resp:
                    await resp.read()
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(client(n) for n in range(16)))
        return done / (time.monotonic() - started)


async def small_batch_ms(url: str, rounds: int, idempotent: bool) -> float:
    times = []
    async with aiohttp.ClientSession() as http:
        for n in range(rounds * 4):
            headers = {"Authorization": "Bearer one"}
            if idempotent:
                headers["Idempotency-Key"] = f"key-{n}"
            started = time.perf_counter()
            async with http.post(
                url + "/batch", json=[{"path": "/users/1", "upstream": "fast"}], headers=headers
            ) as resp:
                await resp.read()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def main_async(args: argparse.Namespace) -> None:
    with (
        process(str(HERE / "upstream.py"), "--latency-ms", "20") as (slow, _),
        process(str(HERE / "upstream.py")) as (fast, _),
        redis_server() as redis,
    ):
        cfg = config(slow, fast)
        store = {"GQLBATCH_STORE__URL": redis}
        rows = ["| measure | value |", "| --- | --- |"]
        with gateway(cfg) as url:
            rows += await streaming(url, args.runs, args.seconds)
            one = await screens_per_second(url, args.runs, args.seconds)
            memory_plain = await small_batch_ms(url, args.runs, idempotent=False)
            memory_idem = await small_batch_ms(url, args.runs, idempotent=True)
        with gateway(cfg, "--workers", "2", env=store) as url:
            two = await screens_per_second(url, args.runs, args.seconds)
        with gateway(cfg, env=store) as url:
            redis_plain = await small_batch_ms(url, args.runs, idempotent=False)
            redis_idem = await small_batch_ms(url, args.runs, idempotent=True)
        rows += [
            f"| screens per second, 16 clients, 1 process | {one:.0f} |",
            f"| screens per second, 16 clients, 2 workers sharing Redis | {two:.0f} |",
            f"| one-item batch p50, state in memory | {memory_plain:.2f} ms |",
            f"| one-item batch p50, state in Redis | {redis_plain:.2f} ms |",
            f"| one-item idempotent batch p50, in memory | {memory_idem:.2f} ms |",
            f"| one-item idempotent batch p50, in Redis | {redis_idem:.2f} ms |",
        ]
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}\n")
    print("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="rounds per measurement, at most")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    parser.add_argument("--quick", action="store_true", help="5 rounds and 2 s per measurement")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.seconds = 5, 2.0
    with tempfile.TemporaryDirectory():
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
