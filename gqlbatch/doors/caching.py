"""HTTP caching and compression of the gateway's answers (DESIGN §10a).

- A GraphQL `GET` (a read-only screen: `Query.batch`, by document or persisted hash) that ran
  without errors gets a strong `ETag`, the `Cache-Control` its items' upstream answers allow
  (`doors.http_cache`), and `Vary`; `If-None-Match` with its tag gets `304` and no body.
  Everything else keeps `private, no-store`.
- Answers of 1 KiB or more are compressed for a client that accepts it: brotli when the
  `brotli` package is installed and the client prefers it, else gzip. A stream is not: its
  compressor would hold back the items it exists to send at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import zlib
from collections.abc import Callable
from typing import Final

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from gqlbatch.core.result import BatchOutcome
from gqlbatch.doors.http_cache import NO_STORE, add_vary, cache_control, etag, if_none_match

try:  # optional: `pip install brotli`
    import brotli
except ImportError:  # pragma: no cover - exercised where brotli is absent
    brotli = None

__all__ = ["GetAnswer", "cached", "install_compression"]

_MIN_COMPRESSED = 1024
_EXECUTOR_BYTES = 256 * 1024
"""Bodies this large are compressed off the event loop, which must keep serving."""
_SMALL_ANSWER = 64 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS
"""zlib's window bits for a gzip wrapper rather than a zlib one."""


@dataclasses.dataclass(slots=True)
class GetAnswer:
    """What one GraphQL GET learns while it runs: its batches, and whether any operation
    answered with errors."""

    outcomes: list[BatchOutcome] = dataclasses.field(default_factory=list)
    errors: bool = False


GET_ANSWER: Final = web.RequestKey("get_answer", GetAnswer)


def cached(
    request: web.Request,
    response: web.StreamResponse,
    answer: GetAnswer,
    *,
    credentials: bool,
    vary: str,
) -> web.StreamResponse:
    """*response* to a GraphQL GET with its caching headers, or a 304 when the client's copy
    is current. A failed or erroneous answer is left `no-store`."""
    if not isinstance(response, web.Response) or response.status != 200 or answer.errors:
        return response
    body = response.body
    if not isinstance(body, bytes):
        return response
    items = [item for outcome in answer.outcomes for item in outcome.results]
    policy = cache_control(items, credentials=credentials)
    if policy == NO_STORE:
        return response
    headers = {hdrs.ETAG: etag(body), hdrs.CACHE_CONTROL: policy, hdrs.VARY: vary}
    if if_none_match(request.headers.get(hdrs.IF_NONE_MATCH), headers[hdrs.ETAG]):
        return web.Response(status=304, headers=headers)
    response.headers.update(headers)
    return response


def install_compression(app: web.Application) -> None:
    """Compress answers, as a middleware: aiohttp reads `enable_compression` before its
    `on_response_prepare` hooks run, so they are too late for it."""
    app.middlewares.insert(0, _compressing)


@web.middleware
async def _compressing(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if (
        type(response) is not web.Response  # a stream, or a websocket
        or response.prepared
        or hdrs.CONTENT_ENCODING in response.headers
        or not isinstance(response.body, bytes)
        or len(response.body) < _MIN_COMPRESSED
    ):
        return response
    coding = _coding(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
    if coding is None:
        return response
    add_vary(response.headers, "Accept-Encoding")
    compress = _gzip if coding == "gzip" else _brotli
    response.body = await _off_loop_if_large(response.body, compress)
    response.headers[hdrs.CONTENT_ENCODING] = coding
    return response


def _coding(accept_encoding: str) -> str | None:
    """The coding to use: the client's preferred among br (when available) and gzip, with
    `q=0` meaning refused (RFC 9110 §12.5.3)."""
    offered = {"br": brotli is not None, "gzip": True}
    best, best_q = None, 0.0
    for part in accept_encoding.lower().split(","):
        name, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if offered.get(name.strip()) and q > best_q:
            best, best_q = name.strip(), q
    return best


def _gzip(body: bytes) -> bytes:
    # A screen's answer is a few KiB, and zlib's set-up of its hash table was most of its
    # cost at the default level (6) and table size (8): level 1 and a quarter-size table
    # (nginx's own default level for answers made on the fly) spend half the instructions,
    # for an answer 10% larger. A large answer (a bulk import's) keeps level 6, which made
    # it a third smaller than level 1 did.
    if len(body) < _SMALL_ANSWER:
        gzip = zlib.compressobj(1, zlib.DEFLATED, _GZIP_WBITS, 4)
    else:
        gzip = zlib.compressobj(6, zlib.DEFLATED, _GZIP_WBITS)
    return gzip.compress(body) + gzip.flush()


def _brotli(body: bytes) -> bytes:
    assert brotli is not None
    compressed: bytes = brotli.compress(body, quality=5)  # fast, still smaller than gzip
    return compressed


async def _off_loop_if_large(body: bytes, compress: Callable[[bytes], bytes]) -> bytes:
    if len(body) < _EXECUTOR_BYTES:
        return compress(body)
    return await asyncio.get_running_loop().run_in_executor(None, compress, body)
