"""gqlbatch as a real process, for the tests that need one (the CLI, SIGTERM, memory)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def gqlbatch_process(*args: str, printing: str) -> AsyncIterator[str]:
    """Run `python -m gqlbatch ARGS --port 0` and yield the URL it prints; stop it after."""
    async with gqlbatch_server(*args, printing=printing) as (url, _):
        yield url


@contextlib.asynccontextmanager
async def gqlbatch_server(
    *args: str, printing: str
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """The same, yielding the process too."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gqlbatch",
        *args,
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield await asyncio.wait_for(printed(proc, printing), 20), proc
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def printed(proc: asyncio.subprocess.Process, pattern: str) -> str:
    assert proc.stdout is not None and proc.stderr is not None
    while True:
        line = (await proc.stdout.readline()).decode()
        if not line:
            raise AssertionError(f"exited before printing its URL: {await proc.stderr.read()!r}")
        found = re.search(pattern, line)
        if found:
            return found[1]


SERVING = r"gqlbatch serving (http://\S+)/graphql"
