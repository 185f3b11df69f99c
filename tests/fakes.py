"""Fake upstream REST services: real aiohttp applications that record every request.

Tests start them on 127.0.0.1 with pytest-aiohttp's `aiohttp_server` and assert on what they
recorded. Nothing here patches aiohttp.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from gqlbatch.execution.offload import OffLoop

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    raw_path: str
    query: list[tuple[str, str]]
    headers: CIMultiDict[str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def line(self) -> str:
        """ "GET /users/1?x=1" - the form most assertions want."""
        qs = "&".join(f"{k}={v}" for k, v in self.query)
        return f"{self.method} {self.path}" + (f"?{qs}" if qs else "")


@dataclass
class Route:
    status: int = 200
    json: Any = None
    text: str | None = None
    body: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    barrier: asyncio.Barrier | None = None
    gate: asyncio.Event | None = None
    handler: Handler | None = None


class FakeService:
    """A scripted REST service. Unscripted paths answer 404 with a JSON error."""

    def __init__(self) -> None:
        self.calls: list[Recorded] = []
        self._routes: dict[tuple[str, str], Route] = {}
        self._arrived = asyncio.Condition()

    async def received(self, count: int = 1) -> None:
        """Wait until *count* requests have arrived: an event to wait on, not a timer."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.calls) >= count)

    def route(self, method: str, path: str, **spec: Any) -> FakeService:
        self._routes[(method.upper(), path)] = Route(**spec)
        return self

    @property
    def lines(self) -> list[str]:
        return [c.line for c in self.calls]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.calls.append(
            Recorded(
                request.method,
                request.path,
                request.raw_path.split("?")[0],
                list(request.query.items()),
                CIMultiDict(request.headers),
                body,
            )
        )
        async with self._arrived:
            self._arrived.notify_all()
        route = self._routes.get((request.method, request.path))
        if route is None:
            return web.json_response({"error": f"no route {request.path}"}, status=404)
        if route.barrier is not None:
            # Every request that shares this barrier must be in flight at once. If gqlbatch ran
            # them one after another, this wait would never finish and the test would time out.
            async with asyncio.timeout(5):
                await route.barrier.wait()
        if route.gate is not None:
            await route.gate.wait()
        if route.handler is not None:
            return await route.handler(request)
        return _respond(route)


def _respond(route: Route) -> web.Response:
    if route.body is not None:
        return web.Response(
            status=route.status,
            body=route.body,
            headers=route.headers,
            content_type=route.content_type or "application/octet-stream",
        )
    if route.text is not None:
        return web.Response(
            status=route.status,
            text=route.text,
            headers=route.headers,
            content_type=route.content_type or "text/plain",
        )
    return web.json_response(route.json, status=route.status, headers=route.headers)


class FaultServer:
    """A raw-socket HTTP/1.1 server that misbehaves on purpose, one fault per path.

    /ok answers properly; /reset sends half a body and resets the connection; /drip sends a
    byte every 50 ms; /500 answers 500; /badjson declares JSON and is not; /huge declares and
    sends a body larger than a small cap. Every loop here is bounded.
    """

    def __init__(self) -> None:
        self.paths: list[str] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode().split("?")[0]
                self.paths.append(path)
                await getattr(self, "_" + path.strip("/").replace("-", "_"), self._ok)(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    def _response(
        status: str, body: bytes, content_type: str = "application/json", length: int | None = None
    ) -> bytes:
        size = len(body) if length is None else length
        return (
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {size}\r\n\r\n"
        ).encode() + body

    async def _ok(self, writer: asyncio.StreamWriter) -> None:
        writer.write(self._response("200 OK", b'{"ok": true}'))
        await writer.drain()

    async def _500(self, writer: asyncio.StreamWriter) -> None:
        writer.write(self._response("500 Internal Server Error", b'{"error": "boom"}'))
        await writer.drain()

    async def _badjson(self, writer: asyncio.StreamWriter) -> None:
        writer.write(self._response("200 OK", b"{not json"))
        await writer.drain()

    async def _huge(self, writer: asyncio.StreamWriter) -> None:
        writer.write(self._response("200 OK", b"x" * 50_000, "text/plain"))
        await writer.drain()

    async def _charset(self, writer: asyncio.StreamWriter) -> None:
        writer.write(self._response("200 OK", b"hello", "text/plain; charset=x-no-such"))
        await writer.drain()

    async def _deep(self, writer: asyncio.StreamWriter) -> None:
        writer.write(self._response("200 OK", b"[" * 1000 + b"]" * 1000))
        await writer.drain()

    async def _bigint(self, writer: asyncio.StreamWriter) -> None:
        writer.write(self._response("200 OK", b'{"n": ' + b"9" * 4400 + b"}"))
        await writer.drain()

    async def _nan(self, writer: asyncio.StreamWriter) -> None:
        writer.write(self._response("200 OK", b'{"n": NaN, "m": 1e400}'))
        await writer.drain()

    async def _utf8header(self, writer: asyncio.StreamWriter) -> None:
        body = b'{"ok": true}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Name: "
            + "caf\u00e9 \u2603 \U0001f600".encode()
            + b"\r\nSet-Cookie: session=secret\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        await writer.drain()

    async def _gzipbomb(self, writer: asyncio.StreamWriter) -> None:
        bomb = gzip.compress(b"0" * (64 * 1024 * 1024), compresslevel=9)  # 64 MiB in ~64 KiB
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: %d\r\n\r\n" % len(bomb) + bomb
        )
        await writer.drain()

    async def _reset(self, writer: asyncio.StreamWriter) -> None:
        writer.write(self._response("200 OK", b'{"partial', length=1000))
        await writer.drain()
        writer.transport.abort()  # RST: the body never completes
        raise ConnectionResetError

    async def _drip(self, writer: asyncio.StreamWriter) -> None:
        writer.write(self._response("200 OK", b"", length=100))
        for _ in range(100):  # at most 5 s; the client gives up long before
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.05)


class CountingOffload(OffLoop):
    """The server's own thread for heavy work, counting the work it was given: set it as the
    app's `OFFLOAD` before the app starts."""

    def __init__(self) -> None:
        super().__init__()
        self.given = 0

    def __call__(self, work: Any) -> Any:
        self.given += 1
        return super().__call__(work)
