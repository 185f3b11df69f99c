"""The benchmark's upstream: gqlbatch's sample API plus a 10 KB blob route, on loopback.

    python benchmarks/upstream.py --latency-ms 20

Prints its URL on the first line, then serves until it is terminated.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from gqlbatch import running
from gqlbatch.ops.demo import sample_api

BLOB = "x" * 10_240


async def _blob(request: web.Request) -> web.Response:
    return web.json_response({"id": request.match_info["id"], "data": BLOB})


async def serve(latency_ms: float) -> None:
    app = sample_api(latency_ms=latency_ms)
    app.router.add_get("/blob/{id}", _blob)
    async with running(app, "127.0.0.1", 0) as url:
        print(url, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=0.0)
    asyncio.run(serve(parser.parse_args().latency_ms))
