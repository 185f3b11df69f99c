"""Running a server until it is stopped: the event loop `--loop` chooses, SIGTERM and Ctrl-C
turned into a clean stop, a listening socket's errors turned into one line, and the garbage
collector tuned for a long-running server once it has started.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from gqlbatch.core.errors import ConfigError

if TYPE_CHECKING:  # aiohttp is imported by the commands that serve, when they serve
    from aiohttp import web

__all__ = ["listening", "loop_factory", "loop_name", "run_until_interrupted", "tune_collector"]


def loop_name() -> str:
    """The running event loop's library: "uvloop" or "asyncio"."""
    return type(asyncio.get_running_loop()).__module__.partition(".")[0]


def tune_collector() -> None:
    """Garbage collection for a long-running server, once it has started.

    A batch allocates tens of thousands of short-lived objects that reference counting frees;
    at CPython's default threshold of 700 the young generation was collected about three times
    per 100-item batch (the cost is in BENCHMARKS.md). The objects alive once the server is up
    (modules, the schema, the pools) are frozen out of every later collection. Safe because a
    finished batch leaves no reference cycle (tests/test_memory.py runs a server tuned so).
    """
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


@contextlib.asynccontextmanager
async def listening(app: web.Application, host: str, port: int) -> AsyncIterator[str]:
    from gqlbatch.doors.listener import running

    server = running(app, host, port)
    try:
        url = await server.__aenter__()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    try:
        yield url
    finally:
        await server.__aexit__(None, None, None)


def run_until_interrupted(coro: Coroutine[Any, Any, None], loop: str = "asyncio") -> int:
    """Serve until Ctrl-C or SIGTERM, then shut down cleanly: connections close, pools close.
    *loop* is `--loop`'s choice."""
    try:
        factory = loop_factory(loop)
    except ConfigError:
        coro.close()  # never awaited: said so, rather than warned about
        raise
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=factory) as runner:
        runner.run(until_terminated(coro))
    return 0


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop `--loop` names: None for asyncio's own.

    uvloop runs the same aiohttp server and client in about 10% fewer instructions per screen
    (BENCHMARKS.md): its loop, transports and timers are C, where asyncio's are Python.
    """
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "--loop uvloop: uvloop is not installed (pip install uvloop; it does not run "
                "on Windows)"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def until_terminated(coro: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(coro)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
