"""`/playground`: our own page, with no CDN and no framework, that runs a batch and draws its
waterfall (DESIGN §10a). The page, its script and its style are files in `static/`, served
with a Content-Security-Policy that lets them load nothing from anywhere else.
"""

from __future__ import annotations

import html
from importlib import resources

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ["add_playground"]

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TYPES = {".css": "text/css", ".js": "text/javascript"}


def add_playground(app: web.Application, example: str = "[]") -> None:
    """Serve the playground on *app*, its editor holding *example* (a batch as JSON) when it
    opens."""
    static = resources.files("gqlbatch.doors").joinpath("static")
    page = static.joinpath("playground.html").read_text(encoding="utf-8")
    page = page.replace("__EXAMPLE__", html.escape(example))
    answers = {
        "/playground": (page.encode(), "text/html"),
        **{
            f"/playground/{name}": (static.joinpath(name).read_bytes(), _TYPES[suffix])
            for name, suffix in (("playground.js", ".js"), ("playground.css", ".css"))
        },
    }
    for path, (body, content_type) in answers.items():
        app.router.add_get(path, _serve(body, content_type))


def _serve(body: bytes, content_type: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=body,
            content_type=content_type,
            charset="utf-8",
            headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"},
        )

    return handler
