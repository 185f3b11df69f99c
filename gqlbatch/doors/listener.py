"""Serving an application on a socket, with the limits that keep slow or idle clients from
holding the server: a deadline for each request head, and a cap on connections (the
deadline for taking each answer is the application's own, `doors.slow_readers`).

aiohttp has no header-read timeout, but its keep-alive timer already closes a connection that
has not delivered a complete request head when it fires, both on a new connection and after
each response; gqlbatch sets it to `header_timeout_s`, so a client dripping its head a byte a
second is cut off there. The body's deadline is the doors' (`body_timeout_s`, 408). Past
`max_connections`, a new connection is answered 503 and closed at once, before it costs a
request handler; connections are what run out first (file descriptors), not CPU.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from gqlbatch.core.config import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS
from gqlbatch.core.errors import ErrorCode
from gqlbatch.doors.http import SETTINGS
from gqlbatch.doors.readiness import READINESS, drain

__all__ = ["app_runner", "running", "started"]

_LINGER_S = 2.0
LISTEN_BACKLOG = 2048
"""Connections the kernel completes before the server accepts them. asyncio's default of
100 let 200 slow-header connections of one client fill it, and a bystander's connection
then waited for the kernel's SYN retry, a second later (tests/test_listener.py). 2048 is
gunicorn's and uvicorn's; the kernel caps it at net.core.somaxconn."""


@asynccontextmanager
async def running(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve *app* on host:port (0 picks a free port); yield its base URL until the block ends.

    On the way out (SIGTERM, Ctrl-C, the block ending) it drains (`readiness.drain`: /readyz
    answers 503, and the requests in progress finish, still listening), then stops accepting,
    closes every connection, and closes the upstream pools.
    """
    # A gateway gets its limits from its settings; another app (the demo's sample API, a
    # benchmark's upstream) is served with the defaults of a Settings.
    settings = app.get(SETTINGS)
    header_timeout_s = settings.header_timeout_s if settings else DEFAULT_HEADER_TIMEOUT_S
    max_connections = settings.max_connections if settings else DEFAULT_MAX_CONNECTIONS
    # Bind first: a busy port then fails before the application (and its pools) starts.
    sock = socket.create_server((host, port), backlog=LISTEN_BACKLOG)
    # lingering_time: after an early answer (413, 408), aiohttp reads and drops the rest of the
    # body so that the client sees the answer rather than a reset; 10 s by default, which let
    # a dripping client hold its connection 10 s past its 408.
    runner = app_runner(app, header_timeout_s)
    listening: asyncio.Server | None = None
    try:
        await runner.setup()
        server = runner.server
        assert server is not None  # set up above
        loop = asyncio.get_running_loop()
        listening = await loop.create_server(
            _capped(server, max_connections), sock=sock, backlog=LISTEN_BACKLOG
        )
        bound_host, bound_port = sock.getsockname()[:2]
        yield f"http://{_url_host(bound_host)}:{bound_port}"
    finally:
        if listening is not None:
            await runner.drain()
            listening.close()
        await runner.cleanup()
        sock.close()


@asynccontextmanager
async def started(app: web.Application) -> AsyncIterator[None]:
    """*app* started without listening anywhere: its start-up and clean-up run around the
    block (`gqlbatch worker`: the upstream client, the store and the job worker, no HTTP)."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        yield
    finally:
        await runner.cleanup()


def app_runner(app: web.Application, header_timeout_s: int) -> _DrainingRunner:
    """The runner of *app*: its keep-alive bounded by the header timeout, and no access log;
    it drains before it stops (gunicorn's worker stops it: its `cleanup` drains first)."""
    return _DrainingRunner(
        app, access_log=None, keepalive_timeout=header_timeout_s, lingering_time=_LINGER_S
    )


class _DrainingRunner(web.AppRunner):
    """aiohttp's runner, which drains a gateway (`readiness.drain`) before its clean-up stops
    the sites that listen: aiohttp's own shutdown hooks run only once they have stopped."""

    _drained = False

    async def drain(self) -> None:
        if not self._drained and READINESS in self.app:
            self._drained = True
            await drain(self.app)

    async def cleanup(self) -> None:
        await self.drain()
        await super().cleanup()


def _capped(server: web.Server, limit: int) -> Callable[[], asyncio.BaseProtocol]:
    def protocol() -> asyncio.BaseProtocol:
        if len(server.connections) >= limit:
            return _Refused(limit)
        return server()

    return protocol


class _Refused(asyncio.Protocol):
    """A connection past the cap: one 503, then closed."""

    def __init__(self, limit: int) -> None:
        error = {
            "code": ErrorCode.TOO_MANY_REQUESTS.value,
            "message": f"the server has {limit} connections open (max_connections); "
            "try again shortly",
        }
        body = json.dumps({"error": error}).encode()
        self._answer = (
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self._answer)
        transport.close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
