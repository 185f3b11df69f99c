"""Fake upstream REST services: real aiohttp applications that record every request.

Tests start them on 127.0.0.1 with pytest-aiohttp's `aiohttp_server` and assert on what they
recorded. Nothing here patches aiohttp.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

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
