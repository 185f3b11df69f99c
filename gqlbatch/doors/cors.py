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

Every door holds a request to the same rules (`standing`, issue 24):
- a state-changing request (anything but GET, HEAD and OPTIONS) from a page whose origin is
  neither the gateway's own nor allowed is refused with FORBIDDEN_ORIGIN before its body is
  read: a `multipart/form-data` POST needs no preflight, and the REST door ran one with the
  user's cookie;
- a page allowed only by `"*"` ("any page, without credentials") never has the user's
  ambient credentials forwarded or counted: its `Cookie`, and on a websocket (whose
  handshake the page cannot give headers to) its `Authorization` too.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from enum import Enum
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from gqlbatch.core.config import CorsSettings, Settings
from gqlbatch.doors.http_cache import add_vary

__all__ = ["Standing", "install_cors", "standing", "without_ambient_credentials"]


class Standing(Enum):
    """What a request's page may do here, by its `Origin`."""

    TRUSTED = "trusted"
    """No page (a client that is not a browser), the gateway's own, or a listed origin."""
    ANONYMOUS = "anonymous"
    """A page allowed only by `"*"`: it may call, without the user's ambient credentials."""
    REFUSED = "refused"
    """A page on another origin that is not allowed."""


def standing(request: web.Request, cors: CorsSettings) -> Standing:
    """The standing of *request*'s page (see `Standing`)."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None or _is_own(request, origin) or origin in cors.origins:
        return Standing.TRUSTED
    return Standing.ANONYMOUS if "*" in cors.origins else Standing.REFUSED


def without_ambient_credentials(
    headers: Iterable[tuple[str, str]], *, websocket: bool
) -> list[tuple[str, str]]:
    """*headers* less those a browser adds on its own: `Cookie`, and on a websocket's
    handshake `Authorization` (a page cannot set headers there, so one is the browser's)."""
    ambient = _AMBIENT_ON_WEBSOCKETS if websocket else _AMBIENT
    return [(name, value) for name, value in headers if name.lower() not in ambient]


_AMBIENT = frozenset({"cookie"})
_AMBIENT_ON_WEBSOCKETS = frozenset({"cookie", "authorization"})


def _is_own(request: web.Request, origin: str) -> bool:
    # The page is the gateway's own when its origin names the host the request was sent to
    # (behind a proxy that keeps Host, its scheme may differ: the host is what is compared);
    # browsers also say so in Sec-Fetch-Site.
    if request.headers.get("Sec-Fetch-Site") == "same-origin":
        return True
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == request.host.lower()


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
