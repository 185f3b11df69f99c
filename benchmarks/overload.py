"""Push the gateway past its capacity and show that it refuses instead of queueing.

    python benchmarks/overload.py                # about 25 s
    python benchmarks/overload.py --seconds 5 --workers 32

Starts the benchmark upstream (20 ms latency) and `gqlbatch serve` on loopback, measures the
latency of 20-item batches from one client alone, then runs many workers for the same client
that send without pause (ignoring Retry-After, as a misbehaving client would; --polite makes
them wait it out). It prints how
many batches were admitted and how many refused with 429 + Retry-After, and the latency of
each. Every loop is bounded in time and in count.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from run import config, process  # the runner's process helpers

ITEMS = [{"path": f"/posts/{i}", "upstream": "slow"} for i in range(1, 21)]
HEADERS = {"Authorization": "Bearer overload-client"}


def p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one(http: aiohttp.ClientSession, url: str) -> tuple[int, float, str | None]:
    started = time.perf_counter()
    async with http.post(url + "/batch", json=ITEMS, headers=HEADERS) as resp:
        await resp.read()
        return resp.status, (time.perf_counter() - started) * 1000, resp.headers.get("Retry-After")


async def unloaded(http: aiohttp.ClientSession, url: str, rounds: int) -> list[float]:
    for _ in range(5):
        await one(http, url)
    return [(await one(http, url))[1] for _ in range(rounds)]


async def overload(
    http: aiohttp.ClientSession,
    url: str,
    workers: int,
    seconds: float,
    limit: int,
    polite: bool,
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    admitted: list[float] = []
    refused: list[float] = []
    retry_after: set[str | None] = set()
    other: list[int] = []

    async def worker() -> None:
        while time.monotonic() < deadline and len(admitted) + len(refused) < limit:
            status, ms, after = await one(http, url)
            if status == 200:
                admitted.append(ms)
            elif status == 429:
                refused.append(ms)
                retry_after.add(after)
                if polite and after:
                    await asyncio.sleep(min(float(after), deadline - time.monotonic()))
            else:
                other.append(status)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return {
        "admitted": admitted,
        "refused": refused,
        "retry_after": retry_after,
        "other": other,
        "elapsed": time.monotonic() - started,
    }


async def main_async(args: argparse.Namespace) -> None:
    here = Path(__file__).parent
    with (
        process(str(here / "upstream.py"), "--latency-ms", "20") as (slow, _),
        process(str(here / "upstream.py")) as (fast, _),
    ):
        cfg = config(slow, fast, per_client=args.per_client)
        with process(
            "-m", "gqlbatch", "serve", "--config", cfg, "--port", "0", "--log-level", "WARNING"
        ) as (url, _):
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                alone = await unloaded(http, url, args.rounds)
                loaded = await overload(
                    http, url, args.workers, args.seconds, args.max_requests, args.polite
                )
    admitted, refused = loaded["admitted"], loaded["refused"]
    manner = "honouring" if args.polite else "ignoring"
    print(
        f"20-item batches at 20 ms upstream latency; per-client limit {args.per_client} "
        f"outstanding calls; {args.workers} workers for one client, {manner} Retry-After; "
        f"{loaded['elapsed']:.1f} s\n"
    )
    print("| phase | batches | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- |")
    print(
        f"| unloaded, one at a time | {len(alone)} | {statistics.median(alone):.1f} | "
        f"{p(alone, 0.99):.1f} |"
    )
    print(
        f"| overload: admitted (200) | {len(admitted)} | {p(admitted, 0.5):.1f} | "
        f"{p(admitted, 0.99):.1f} |"
    )
    print(
        f"| overload: refused (429) | {len(refused)} | {p(refused, 0.5):.1f} | "
        f"{p(refused, 0.99):.1f} |"
    )
    print(
        f"\nRetry-After values seen: {sorted(v or 'none' for v in loaded['retry_after'])}; "
        f"other statuses: {sorted(set(loaded['other'])) or 'none'}; admitted per second: "
        f"{len(admitted) / loaded['elapsed']:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=100, help="unloaded batches")
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument(
        "--per-client",
        type=int,
        default=100,
        help="max_outstanding_per_client for the gateway under test",
    )
    parser.add_argument(
        "--polite",
        action="store_true",
        help="workers wait Retry-After after a 429, as a good client does",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
