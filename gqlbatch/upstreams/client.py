"""Sends `UpstreamCall`s over one pooled aiohttp `ClientSession` per upstream.

The only module that names aiohttp's client or its exceptions: they are translated here, once,
into gqlbatch's `UpstreamError`s (DESIGN §7; STYLE R4).
"""

from __future__ import annotations

import base64
import codecs
import functools
import traceback

import aiohttp
from aiohttp import hdrs
from yarl import URL

from gqlbatch.core.budget import current_budget
from gqlbatch.core.config import Settings
from gqlbatch.core.errors import (
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gqlbatch.core.strict_json import JSONRefused, loads
from gqlbatch.core.upstream_settings import UpstreamSettings
from gqlbatch.core.wire import BodyEncoding, UpstreamCall, UpstreamResponse

__all__ = ["UpstreamClient"]

_TEXT_TYPES = frozenset(
    {"application/xml", "application/javascript", "application/x-www-form-urlencoded"}
)
_CHUNK = 64 * 1024
_COOKIES = frozenset({"set-cookie", "set-cookie2"})


class UpstreamClient:
    """Sends calls to the configured upstreams; one connection pool per upstream."""

    def __init__(self, settings: Settings) -> None:
        self._upstreams = settings.upstreams
        self._max_body = settings.max_response_bytes
        self._sessions: dict[str, aiohttp.ClientSession] = {
            name: _session(upstream) for name, upstream in settings.upstreams.items()
        }

    async def close(self) -> None:
        """Close every pool. Call once, when the application stops."""
        for session in self._sessions.values():
            await session.close()

    async def send(self, call: UpstreamCall) -> UpstreamResponse:
        """Send *call* and decode its answer. Any status is a response; 4xx/5xx included.

        Raises:
            UpstreamTimeout: no complete answer within the call's timeout.
            UpstreamUnreachable: the connection failed or broke.
            UpstreamBadResponse: the body is over the size cap, or declared JSON but is not.
        """
        upstream = self._upstreams[call.upstream]
        timeout_ms = call.timeout_ms or upstream.timeout_ms
        try:
            async with self._sessions[call.upstream].request(
                call.method,
                _url(upstream.base_url, call),
                headers=call.headers or None,
                data=call.body,
                allow_redirects=False,  # a redirect could point anywhere; the client decides
                timeout=_timeout(timeout_ms, upstream.connect_timeout_ms),
            ) as resp:
                raw = await _read_capped(resp, self._max_body, call)
                return _decode(resp, raw, call)
        except TimeoutError as exc:
            # aiohttp's total timeout raises a bare TimeoutError, which is not a ClientError.
            error: UpstreamError = UpstreamTimeout(
                f"{_where(call)} did not answer within {timeout_ms} ms"
            )
            _forget(exc)
        except aiohttp.ClientPayloadError as exc:
            error = UpstreamUnreachable(f"{_where(call)}: the connection broke mid-body ({exc})")
            _forget(exc)
        except aiohttp.ClientError as exc:
            error = UpstreamUnreachable(f"{_where(call)}: {type(exc).__name__}: {exc}")
            _forget(exc)
        # Raised outside the handlers, so that ours does not chain aiohttp's (see _forget);
        # and let go of here, so that its traceback's hold on this frame is not a cycle.
        try:
            raise error
        finally:
            del error


def _where(call: UpstreamCall) -> str:
    return f"{call.method} {call.upstream}{call.path}"


def _forget(exc: BaseException) -> None:
    """Clear the frames of *exc* and of the exceptions it chains. aiohttp's connection errors
    are reference cycles (a frame that holds the error its traceback holds), and their frames
    hold the call, its body included: left to the cyclic collector, a failed call's body
    outlived its batch. Translated into our error, what they knew is in its message."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__


def _session(upstream: UpstreamSettings) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=upstream.max_connections, limit_per_host=upstream.max_connections
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=upstream.timeout_ms / 1000),
        auto_decompress=True,
        cookie_jar=aiohttp.DummyCookieJar(),
        raise_for_status=False,
    )


def _url(base_url: str, call: UpstreamCall) -> URL:
    # The URL aiohttp would build from `params=`, which it does with yarl's extend_query: 5 us
    # a call, for the same few URLs (a screen's calls repeat from visit to visit). Short ones
    # are kept; a long query (a client's own values) is built each time, and never kept.
    if call.size <= _KEPT_URL_CHARS:
        return _kept_url(base_url, call.path, call.query)
    return _built_url(base_url, call.path, call.query)


def _built_url(base_url: str, path: str, query: tuple[tuple[str, str], ...]) -> URL:
    url = URL(base_url + path, encoded=True)
    return url.extend_query(query) if query else url


_KEPT_URL_CHARS = 512
_kept_url = functools.lru_cache(maxsize=1024)(_built_url)


@functools.lru_cache(maxsize=64)
def _timeout(total_ms: int, connect_ms: int) -> aiohttp.ClientTimeout:
    # ClientTimeout is an attrs class that costs a few µs to build, once per call; the values
    # are few (per upstream, and an item's own timeoutMs), and bounded here in any case.
    return aiohttp.ClientTimeout(total=total_ms / 1000, connect=connect_ms / 1000)


async def _read_capped(resp: aiohttp.ClientResponse, cap: int, call: UpstreamCall) -> bytes:
    # Counted as the (decompressed) chunks arrive, so neither a large body nor a gzip bomb
    # is held past the cap; the batch's budget is charged as it goes, for the same reason.
    length = resp.content_length
    if length is not None and length > cap:
        raise _too_large(call, cap)
    budget = current_budget.get()
    if length is not None and length <= _CHUNK and hdrs.CONTENT_ENCODING not in resp.headers:
        # A short body of declared length, as sent: no more than one chunk is held before it
        # is charged, as below, for one read instead of an iterator that ends by raising.
        raw = await resp.read()
        if budget is not None:
            budget.charge_response(len(raw))
        return raw
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > cap:
            raise _too_large(call, cap)
        if budget is not None:
            budget.charge_response(len(chunk))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(call: UpstreamCall, cap: int) -> UpstreamBadResponse:
    return UpstreamBadResponse(
        f"{_where(call)}: the response body is over the {cap}-byte limit (max_response_bytes)"
    )


def _decode(resp: aiohttp.ClientResponse, raw: bytes, call: UpstreamCall) -> UpstreamResponse:
    headers = _headers(resp)
    if not raw:
        return UpstreamResponse(resp.status, headers, None, BodyEncoding.EMPTY)
    mime = resp.content_type
    is_json = mime == "application/json" or mime.endswith("+json")
    is_text = mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith("+xml")
    if not (is_json or is_text):
        encoded = base64.b64encode(raw).decode("ascii")
        return UpstreamResponse(resp.status, headers, encoded, BodyEncoding.BASE64)
    charset = _charset(resp, call)
    if is_json:
        return UpstreamResponse(resp.status, headers, _json(raw, charset, call), BodyEncoding.JSON)
    text = raw.decode(charset, errors="replace")
    return UpstreamResponse(resp.status, headers, text, BodyEncoding.TEXT)


def _charset(resp: aiohttp.ClientResponse, call: UpstreamCall) -> str:
    charset = resp.charset or "utf-8"
    try:
        return _codec_name(charset)
    except LookupError:
        raise UpstreamBadResponse(
            f"{_where(call)}: the body declares charset "
            f"{charset[:40]!r}, which gqlbatch cannot decode"
        ) from None


@functools.lru_cache(maxsize=64)
def _codec_name(charset: str) -> str:
    # A charset Python does not know, or one that is not a text encoding at all ('base64'),
    # fails this one-byte decode (an empty one skips the codec's text check). Known once per
    # charset; an unknown one raises, and lru_cache keeps no exception, so the cache holds
    # only real codecs, of which there are a few hundred at most.
    b"a".decode(charset, errors="replace")
    return codecs.lookup(charset).name


def _headers(resp: aiohttp.ClientResponse) -> tuple[tuple[str, str], ...]:
    # Cookies are the upstream's state for its own client, which is gqlbatch: they are never
    # passed on to the many clients a gateway serves (sessions do not keep them either).
    # Most answers set none, and the multidict's own case-insensitive lookup says so without
    # lower-casing every header's name.
    if "set-cookie" not in resp.headers and "set-cookie2" not in resp.headers:
        return tuple(resp.headers.items())
    return tuple((n, v) for n, v in resp.headers.items() if n.lower() not in _COOKIES)


def _json(raw: bytes, charset: str, call: UpstreamCall) -> object:
    try:
        return loads(raw if charset == "utf-8" else raw.decode(charset))
    except (UnicodeDecodeError, JSONRefused) as exc:
        raise UpstreamBadResponse(
            f"{_where(call)}: the body is declared JSON but is not JSON gqlbatch can carry ({exc})"
        ) from None
