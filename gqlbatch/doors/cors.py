"""Cross-origin calls from browsers (CORS), and the `Origin` check of websockets.

A page on another origin may call the gateway only when `[cors] origins` lists its origin.
Its preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here, before any
door: no context is made and nothing is admitted for it. Its real request gets the
`Access-Control-*` headers on its answer, refusals, errors and streams included, or the page
could not read why it was refused.

A websocket is not covered by CORS: a browser opens one to any origin, with the user's
cookies. Strawberry's view refuses one whose `Origin` is neither the gateway's own nor a
listed one (`allowed_origins`, given the same list in `schema.BatchView`), with
FORBIDDEN_ORIGIN. Clients that are not browsers send no `Origin`.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from gqlbatch.core.config import CorsSettings, Settings
from gqlbatch.core.http_cache import add_vary

__all__ = ["install_cors"]

_METHODS = ("GET", "POST", "PUT", "DELETE")
_REQUEST_HEADERS = (
    "Content-Type",
    "Accept",
    "Idempotency-Key",
    "Prefer",
    # Apollo Client's own: its client awareness and its CSRF-prevention header.
    "apollographql-client-name",
    "apollographql-client-version",
    "apollo-require-preflight",
    "x-apollo-operation-name",
)
_EXPOSED = ("ETag", "Location", "Retry-After", "Idempotent-Replayed", "X-Request-Id")
_PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def install_cors(app: web.Application, settings: Settings) -> None:
    """Answer preflights, and give every answer to a listed origin its `Access-Control-*`
    headers: on `on_response_prepare`, so that refusals, errors and streams get them too."""
    cors = settings.cors
    if not cors.origins:
        return
    allowed_headers = ", ".join(_allowed_request_headers(settings))

    @web.middleware
    async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or not _is_preflight(request):
            return await handler(request)
        if isinstance(request.match_info.http_exception, web.HTTPNotFound):
            return await handler(request)
        return _preflight(cors, origin, allowed_headers)

    varies = not ("*" in cors.origins and not cors.allow_credentials)

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if _is_preflight(request):
            return
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None:
            _allow(response.headers, cors, origin)
        if varies:  # on every answer: a cache must not give one origin's answer to another
            add_vary(response.headers, "Origin")

    app.middlewares.insert(0, preflight)  # outermost: before any context is made
    app.on_response_prepare.append(on_prepare)


def _is_preflight(request: web.Request) -> bool:
    return request.method == hdrs.METH_OPTIONS and hdrs.ACCESS_CONTROL_REQUEST_METHOD in (
        request.headers
    )


def _preflight(cors: CorsSettings, origin: str, allowed_headers: str) -> web.Response:
    if not cors.allows(origin):
        # No Access-Control-Allow-Origin: the browser refuses the call, and says so.
        return web.Response(status=403, headers={hdrs.VARY: _PREFLIGHT_VARY})
    headers: dict[str, str] = {
        hdrs.ACCESS_CONTROL_ALLOW_METHODS: ", ".join(_METHODS),
        hdrs.ACCESS_CONTROL_ALLOW_HEADERS: allowed_headers,
        hdrs.ACCESS_CONTROL_MAX_AGE: str(cors.max_age_s),
        hdrs.VARY: _PREFLIGHT_VARY,
    }
    _allow(headers, cors, origin)
    return web.Response(status=204, headers=headers)


def _allow(headers: MutableMapping[str, str], cors: CorsSettings, origin: str) -> None:
    if not cors.allows(origin):
        return
    any_origin = "*" in cors.origins and not cors.allow_credentials
    headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = "*" if any_origin else origin
    headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(_EXPOSED)
    if cors.allow_credentials:
        headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"


def _allowed_request_headers(settings: Settings) -> Iterable[str]:
    """The headers a page may send: gqlbatch's own, Apollo's, and every header forwarded to
    an upstream (Authorization by default), so that a page can send what the upstreams need."""
    return dict.fromkeys(h.lower() for h in (*_REQUEST_HEADERS, *settings.forwarded_header_names()))
