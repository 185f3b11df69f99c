"""The shared store under load: `serve --workers 2` on Redis against the same in memory.

    python benchmarks/store.py                 # 2 x 30 s; needs redis-server
    python benchmarks/store.py --seconds 5

Starts the benchmark upstream (20 ms latency), a redis-server on a free loopback port, and
`gqlbatch serve --workers 2` twice: with its state in memory, then in Redis. 32 clients, each
with its own token and its own address (a loopback source address of its own, 127.0.0.2 and
up), send 20-item batches of distinct GETs, one after another, for `--seconds` (and at most
`--batches` each). Every limit is its default, so no client is near its own.

It prints, per store: batches, items per second, answers 5xx, items INTERNAL_ERROR, answers
429, Redis commands per batch (`INFO commandstats`, read before and after), and the places
still held in Redis 5 s after the load ended; then the ratio of items per second. Issue 25's
goals: Redis at least 0.8x memory, no 5xx, no INTERNAL_ERROR, no 429, no place held.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from run import process  # noqa: E402

from tests.redis_server import redis_server  # noqa: E402

CLIENTS = 32
ITEMS = 20


@contextlib.contextmanager
def gateway(cfg: str, env: dict[str, str]) -> Iterator[str]:
    argv = ("-m", "gqlbatch", "serve", "--config", cfg, "--port", "0", "--workers", "2")
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with process(*argv, "--log-level", "ERROR") as (url, _):
            yield url
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def load(url: str, seconds: float, most: int) -> dict[str, Any]:
    """32 clients, each its own token and source address, for *seconds*."""
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + seconds

    async def client(n: int) -> None:
        connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{n + 2}", 0))
        headers = {"Authorization": f"Bearer client-{n}"}
        async with aiohttp.ClientSession(connector=connector) as http:
            for b in range(most):
                if time.monotonic() >= deadline:
                    return
                batch = [
                    {"id": f"i{i}", "path": f"/posts/{i % 100 + 1}", "query": {"c": n, "b": b}}
                    for i in range(ITEMS)
                ]
                async with http.post(url + "/batch", json=batch, headers=headers) as resp:
                    body = await resp.read()
                seen["batches"] += 1
                if resp.status == 200:
                    seen["items"] += ITEMS
                    seen["internal"] += body.count(b'"INTERNAL_ERROR"')
                elif resp.status == 429:
                    seen["429"] += 1
                elif resp.status >= 500:
                    seen["5xx"] += 1

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    seen["seconds"] = time.monotonic() - started  # type: ignore[assignment]
    return dict(seen)


async def commands(redis: Redis) -> Counter[str]:
    stats = await redis.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})


async def held(redis: Redis) -> int:
    # Each limit key's counts ("*": the places its leases hold), beside its leases.
    counts = [key async for key in redis.scan_iter("gqlbatch:held:*:n")]
    return sum([int(await redis.hget(key, "*") or 0) for key in counts])


def row(name: str, seen: dict[str, Any], per_batch: str, places: str) -> str:
    rate = seen.get("items", 0) / seen["seconds"]
    return (
        f"| {name} | {seen.get('batches', 0)} | {rate:.0f} | {seen.get('5xx', 0)} | "
        f"{seen.get('internal', 0)} | {seen.get('429', 0)} | {per_batch} | {places} |"
    )


async def main_async(args: argparse.Namespace) -> None:
    with (
        process(str(HERE / "upstream.py"), "--latency-ms", "20") as (upstream, _),
        redis_server() as redis_url,
        tempfile.NamedTemporaryFile("w", suffix=".toml") as cfg,
    ):
        cfg.write(f'[upstreams.default]\nbase_url = "{upstream}"\n')
        cfg.flush()
        memory: dict[str, Any] = {"seconds": 1.0}
        if "memory" in args.stores:
            with gateway(cfg.name, {}) as url:
                memory = await load(url, args.seconds, args.batches)
        redis = Redis.from_url(redis_url, decode_responses=True)
        try:
            with gateway(cfg.name, {"GQLBATCH_STORE__URL": redis_url}) as url:
                before = await commands(redis)
                shared = await load(url, args.seconds, args.batches)
                after = await commands(redis)
                await asyncio.sleep(args.settle)  # what leases outlive the load, if any
                places = await held(redis)
        finally:
            await redis.aclose()
    batches = max(shared.get("batches", 0), 1)
    sent = after - before
    sent.pop("info", None)  # this benchmark's own
    per_batch = sum(sent.values()) / batches
    ratio = (shared.get("items", 0) / shared["seconds"]) / max(
        memory.get("items", 0) / memory["seconds"], 1e-9
    )
    print(
        f"serve --workers 2; {CLIENTS} clients with their own tokens and addresses; "
        f"{ITEMS}-item batches of distinct GETs; 20 ms upstream; {args.seconds:g} s each; "
        f"cores: {os.cpu_count()}\n"
    )
    print(
        "| store | batches | items/s | 5xx | INTERNAL_ERROR items | 429 | "
        f"Redis commands per batch | places held {args.settle:g} s after |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    if "memory" in args.stores:
        print(row("memory", memory, "-", "-"))
    print(row("redis", shared, f"{per_batch:.2f}", str(places)))
    print(f"| redis / memory, items/s | {ratio:.2f}x | | | | | | |")
    print("\nRedis commands per batch, by command (a script's own commands counted too):")
    print(", ".join(f"{name} {n / batches:.2f}" for name, n in sent.most_common()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per store, at most")
    parser.add_argument("--batches", type=int, default=100_000, help="per client, at most")
    parser.add_argument(
        "--stores",
        default="memory,redis",
        help="which to run: memory, redis or both (the ratio needs both)",
    )
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds after the load, before places count"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
