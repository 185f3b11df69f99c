"""gqlbatch as a real process, for the tests that need one (the CLI, SIGTERM, memory)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
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
    *args: str,
    printing: str,
    env: dict[str, str] | None = None,
    listens: bool = True,
    log: collections.deque[bytes] | None = None,
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """The same, yielding the process too; *env* adds to the environment. A process that
    *listens* nowhere (`gqlbatch worker`) gets no `--port 0`. Its log lines (stderr) go to
    *log*, as they come."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gqlbatch",
        *args,
        *(("--port", "0") if listens else ()),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    # The server logs a line per batch to stderr. Drained as it comes: a pipe nobody reads
    # fills at 64 KiB, and then the server's next log write blocks its event loop.
    log = collections.deque(maxlen=50) if log is None else log
    drain = asyncio.create_task(_drain(proc, log))
    try:
        yield await asyncio.wait_for(printed(proc, printing, log), 20), proc
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        await drain


async def _drain(proc: asyncio.subprocess.Process, log: collections.deque[bytes]) -> None:
    assert proc.stderr is not None
    while line := await proc.stderr.readline():
        log.append(line)


async def printed(
    proc: asyncio.subprocess.Process, pattern: str, log: collections.deque[bytes]
) -> str:
    assert proc.stdout is not None
    while True:
        line = (await proc.stdout.readline()).decode()
        if not line:
            await proc.wait()
            raise AssertionError(f"exited before printing its URL: {b''.join(log)!r}")
        found = re.search(pattern, line)
        if found:
            return found[1]


SERVING = r"gqlbatch serving (http://\S+)/graphql"
WORKING = r"gqlbatch worker running jobs from (\S+)"
