"""Admission with the default limits: ordinary screens pass, a flood is refused.

    python benchmarks/admission.py               # about 25 s
    python benchmarks/admission.py --seconds 3

Starts the benchmark upstream (20 ms latency) and `gqlbatch serve` with nothing configured but
the upstream, so every limit is its default (200 outstanding calls per client, 500 per
address, 2,000 in all). Then, all from one address and one set of credentials:

1. 16 clients, each sending DESIGN §12's naive 22-item screen again and again;
2. a flood: 64 clients, each sending 100-call batches without pause, ignoring Retry-After.

It prints, per phase, the batches answered 200 and 429, their latencies, and the highest
count of calls the gateway held for the client (read from the 429 messages). Every loop is
bounded in time and in count.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from run import QUERY, process, screen  # the runner's helpers

HEADERS = {"Authorization": "Bearer one-client"}
FLOOD = [{"path": f"/posts/{(i % 100) + 1}", "query": {"n": i}} for i in range(100)]
HELD = re.compile(r"already has (\d+) upstream calls")


async def phase(
    http: aiohttp.ClientSession, url: str, *, clients: int, body: dict[str, Any], seconds: float
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    ok: list[float] = []
    refused: list[float] = []
    held: list[int] = []

    async def client() -> None:
        for _ in range(10_000):  # bounded in count as well as in time
            if time.monotonic() >= deadline:
                return
            started = time.perf_counter()
            async with http.post(url + "/graphql", json=body, headers=HEADERS) as resp:
                answer = await resp.json()
            ms = (time.perf_counter() - started) * 1000
            errors = answer.get("errors") or []
            if errors and errors[0].get("extensions", {}).get("code") == "TOO_MANY_REQUESTS":
                refused.append(ms)
                held.extend(int(m) for m in HELD.findall(errors[0]["message"]))
            else:
                assert not errors, errors
                ok.append(ms)

    await asyncio.gather(*(client() for _ in range(clients)))
    return {"ok": ok, "refused": refused, "held": held}


def row(name: str, result: dict[str, Any]) -> str:
    ok, refused = result["ok"], result["refused"]
    p50 = f"{statistics.median(ok):.0f}" if ok else "-"
    held = max(result["held"], default=0)
    return f"| {name} | {len(ok)} | {len(refused)} | {p50} | {held or '-'} |"


async def main_async(args: argparse.Namespace) -> None:
    here = Path(__file__).parent
    with process(str(here / "upstream.py"), "--latency-ms", "20") as (upstream, _):
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as config:
            config.write(f'[upstreams.slow]\nbase_url = "{upstream}"\n')
        with process(
            "-m",
            "gqlbatch",
            "serve",
            "--config",
            config.name,
            "--port",
            "0",
            "--log-level",
            "WARNING",
        ) as (url, _):
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                screens = await phase(
                    http,
                    url,
                    clients=16,
                    body={"query": QUERY, "variables": {"r": screen("slow")}},
                    seconds=args.seconds,
                )
                flood = await phase(
                    http,
                    url,
                    clients=64,
                    body={"query": QUERY, "variables": {"r": FLOOD}},
                    seconds=args.seconds,
                )
    print(f"Default limits; one client; 20 ms upstream latency; {args.seconds:g} s a phase\n")
    print("| phase | answered | refused (429) | p50 ms | most calls held when refused |")
    print("| --- | --- | --- | --- | --- |")
    print(row("16 clients, 22-item screens", screens))
    print(row("64 clients, 100-call batches, no pause", flood))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase, at most")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
