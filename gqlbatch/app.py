"""The aiohttp application: the GraphQL view, the upstream client's lifecycle, health routes,
and `running`, which serves an app on loopback or a chosen address until the block ends.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import quote

from aiohttp import web
from strawberry.aiohttp.views import GraphQLView

from gqlbatch.call import forwarded_headers
from gqlbatch.config import Settings
from gqlbatch.loaders import SharedInflight
from gqlbatch.schema import Context, build_schema
from gqlbatch.types import Headers
from gqlbatch.upstream import UpstreamClient

__all__ = ["CLIENT", "SETTINGS", "create_app", "running"]

GRAPHQL_RESPONSE = "application/graphql-response+json"
SETTINGS: Final = web.AppKey("settings", Settings)
CLIENT: Final = web.AppKey("client", UpstreamClient)
INFLIGHT: Final = web.AppKey("inflight", SharedInflight)


class BatchView(GraphQLView[Context, None]):
    """Strawberry's aiohttp view with a fresh gqlbatch `Context` per request."""

    def __init__(self, *, settings: Settings) -> None:
        super().__init__(
            schema=build_schema(), graphql_ide="graphiql" if settings.graphiql else None
        )
        self._settings = settings

    async def get_sub_response(self, request: web.Request) -> web.Response:
        # GraphQL over HTTP: a client that prefers application/graphql-response+json gets it,
        # with 400 for request errors (no data at all); application/json stays 200 throughout.
        response = web.Response()
        if _prefers_graphql_response(request.headers.get("Accept", "")):
            response.content_type = GRAPHQL_RESPONSE
        return response

    def create_response(self, response_data: Any, sub_response: web.Response) -> web.Response:
        media = sub_response.content_type
        response = super().create_response(response_data, sub_response)
        if media == GRAPHQL_RESPONSE:
            response.content_type = GRAPHQL_RESPONSE
            if _is_request_error(response_data):
                response.set_status(400)
        return response

    async def get_context(self, request: web.Request, response: object) -> Context:
        return Context(
            settings=self._settings,
            send=request.app[INFLIGHT].send,
            forwarded=_forwarded(request, self._settings),
        )


def _forwarded(request: web.Request, settings: Settings) -> dict[str, Headers]:
    incoming = list(request.headers.items())
    return {
        name: forwarded_headers(incoming, upstream.forward_headers or settings.forward_headers)
        for name, upstream in settings.upstreams.items()
    }


def _prefers_graphql_response(accept: str) -> bool:
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in (GRAPHQL_RESPONSE, "application/json"):
            return media == GRAPHQL_RESPONSE
    return False


def _is_request_error(data: Any) -> bool:
    # Parse and validation errors carry no path; a field error (a rejected batch) has one.
    if not isinstance(data, dict) or data.get("data") is not None:
        return False
    return all(not e.get("path") for e in data.get("errors") or [])


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
    settings = app[SETTINGS]
    client = UpstreamClient(settings)
    app[CLIENT] = client
    app[INFLIGHT] = SharedInflight(
        client.send, [u.name for u in settings.upstreams.values() if u.share_inflight]
    )
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
