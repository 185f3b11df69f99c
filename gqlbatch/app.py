"""The aiohttp application: the GraphQL view, the upstream client's lifecycle, health routes,
and `running`, which serves an app on loopback or a chosen address until the block ends.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final
from urllib.parse import quote

from aiohttp import web
from strawberry.aiohttp.views import GraphQLView

from gqlbatch.call import forwarded_headers
from gqlbatch.config import Settings
from gqlbatch.schema import Context, build_schema
from gqlbatch.upstream import UpstreamClient

__all__ = ["CLIENT", "SETTINGS", "create_app", "running"]

SETTINGS: Final = web.AppKey("settings", Settings)
CLIENT: Final = web.AppKey("client", UpstreamClient)


class BatchView(GraphQLView[Context, None]):
    """Strawberry's aiohttp view with a fresh gqlbatch `Context` per request."""

    def __init__(self, *, settings: Settings) -> None:
        super().__init__(
            schema=build_schema(), graphql_ide="graphiql" if settings.graphiql else None
        )
        self._settings = settings

    async def get_context(self, request: web.Request, response: object) -> Context:  # type: ignore[override]
        return Context(
            settings=self._settings,
            send=request.app[CLIENT].send,
            forwarded=forwarded_headers(request.headers.items(), self._settings.forward_headers),
        )


def create_app(settings: Settings, *, landing_query: str | None = None) -> web.Application:
    """The gqlbatch server for *settings*.

    With *landing_query*, `GET /` opens GraphiQL with that query filled in.
    """
    app = web.Application(client_max_size=settings.max_request_bytes)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_client_ctx)
    app.router.add_route("*", "/graphql", BatchView(settings=settings))
    app.router.add_get("/healthz", _healthz)
    if landing_query is not None:
        target = "/graphql?q=" + quote(landing_query, safe="")
        app.router.add_get("/", _redirect_to(target))
    return app


async def _client_ctx(app: web.Application) -> AsyncIterator[None]:
    # One pooled client per application, closed when the application stops (aiohttp's
    # "Persistent session" advice): never one per request, never one at import time.
    client = UpstreamClient(app[SETTINGS])
    app[CLIENT] = client
    yield
    await client.close()


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _redirect_to(target: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound(target)

    return handler


@asynccontextmanager
async def running(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve *app* on host:port (0 picks a free port); yield its base URL until the block ends."""
    # Bind first: a busy port then fails before the application (and its pools) starts.
    sock = socket.create_server((host, port))
    runner = web.AppRunner(app, access_log=None)
    try:
        await runner.setup()
        await web.SockSite(runner, sock).start()
        bound_host, bound_port = sock.getsockname()[:2]
        yield f"http://{_url_host(bound_host)}:{bound_port}"
    finally:
        await runner.cleanup()
        sock.close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
