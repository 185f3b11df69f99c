"""`to_call`, which renders a planned item into an `UpstreamCall` (wire.py).

Pure and synchronous: this is where placeholder values are substituted and encoded, so that a
substituted value can never add a path segment or a header line. `upstream.py` sends the calls.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote

from gqlbatch.core.errors import ForbiddenValue
from gqlbatch.core.placeholders import RefKind, Scope, Template
from gqlbatch.core.plan import PlannedItem
from gqlbatch.core.rendering import Meter, render_json, render_text
from gqlbatch.core.targets import header_value_problem, segment_problem
from gqlbatch.core.types import JSON, Headers
from gqlbatch.core.wire import BodyEncoding, Method, UpstreamCall

__all__ = ["forwarded_headers", "to_call"]

# Characters a path keeps as they are: RFC 3986 pchar plus '/', and '%' so that a client's own
# percent-encoding is not encoded twice.
_PATH_SAFE = "/%:@!$&'()*+,;=~"
# A path made only of those and of characters `quote` never encodes is its own quoting; most
# paths are, and one regular expression costs less than `quote`'s encoding round trip.
_KEPT_AS_IS = re.compile(r"[A-Za-z0-9_.\-" + re.escape(_PATH_SAFE) + "]*")
_CHARSET = re.compile(r"charset=\"?([A-Za-z0-9_.:-]+)", re.I)
_METHOD_TEXT = {method: method.value for method in Method}
"""Each method's name as a plain str: an enum's `.value` is a Python-level property."""


def to_call(
    item: PlannedItem, scope: Scope, forwarded: Mapping[str, Headers], meter: Meter | None
) -> UpstreamCall:
    """Render *item* against the results in *scope*, with the headers forwarded to its upstream;
    what its placeholders write is charged to *meter*, when there is one.

    Raises:
        ReferenceNotFound: a placeholder's selector matched nothing.
        ForbiddenValue: a substituted value would change the target or split a header.
        Exception: what *meter* raises when the rendering passes it.
    """
    request = item.request
    path = render_text(item.path, scope, _path_segment, meter)
    if not _KEPT_AS_IS.fullmatch(path):
        path = quote(path, safe=_PATH_SAFE)
    query = _query(item.query, scope, meter) if item.query else ()
    own: Headers = ()
    if item.headers:
        own = tuple(
            (n, _header_value(n, render_text(t, scope, meter=meter))) for n, t in item.headers
        )
    if request.idempotency_key is not None:
        own += (("Idempotency-Key", request.idempotency_key),)
    headers = _merge_headers(forwarded.get(request.upstream, ()), own)
    body = None
    if request.has_body:
        raw = _whole_answer(item.body, scope, meter)
        if raw is not None:
            body, headers = raw[0], _with_type(headers, raw[1])
        else:
            body, headers = _encode_body(render_json(item.body, scope, meter), headers)
    return UpstreamCall(
        upstream=request.upstream,
        method=_METHOD_TEXT[request.method],
        path=path,
        query=query,
        headers=headers,
        body=body,
        timeout_ms=request.timeout_ms,
    )


def _query(
    query: tuple[tuple[str, Template], ...], scope: Scope, meter: Meter | None
) -> tuple[tuple[str, str], ...]:
    # In order, so that the same query in any order is the same call (one read, not two).
    if len(query) == 1:
        ((name, template),) = query
        return ((name, render_text(template, scope, meter=meter)),)
    return tuple(sorted((n, render_text(t, scope, meter=meter)) for n, t in query))


def forwarded_headers(incoming: Iterable[tuple[str, str]], allow: Iterable[str]) -> Headers:
    """The incoming headers on the allow-list, which every sub-request carries."""
    wanted = {name.lower() for name in allow}
    return tuple((n, v) for n, v in incoming if n.lower() in wanted)


def _path_segment(value: str) -> str:
    # A substituted value is one segment: '/' and '%' are encoded, so it cannot add segments
    # for a server that decodes once. A value that reads as a dot segment in some decoded
    # form (for a server that decodes more, or reads '..;x' as '..') is refused outright.
    if value.isalnum() and value.isascii():
        return value  # an id: nothing to refuse, nothing to encode
    problem = segment_problem(value)
    if problem:
        raise ForbiddenValue(f"substituted path value {value[:80]!r}: {problem}")
    return quote(value, safe="")


def _header_value(name: str, value: str) -> str:
    problem = header_value_problem(value)
    if problem:
        raise ForbiddenValue(f"substituted value for header {name}: {problem}")
    return value


def _merge_headers(forwarded: Headers, own: Headers) -> Headers:
    # A sub-request's own header overrides a forwarded one of the same name.
    if not own and not forwarded:
        return ()
    mine = {name.lower() for name, _ in own}
    merged = [(n, v) for n, v in forwarded if n.lower() not in mine] + list(own)
    return tuple(sorted(merged, key=lambda h: h[0].lower()))


def _whole_answer(body: JSON, scope: Scope, meter: Meter | None) -> tuple[bytes, str | None] | None:
    """A body that is exactly one placeholder naming a whole answer that is not JSON (a
    download, a document): its bytes as they came, and its Content-Type. None for any other
    body, which is rendered as JSON."""
    ref = body.whole if isinstance(body, Template) else None
    if ref is None or ref.kind is not RefKind.RESULT or ref.selectors or ref.target is None:
        return None
    answer = scope.results[ref.target]
    kind = next((v for n, v in answer.headers if n.lower() == "content-type"), None)
    if answer.body_encoding is BodyEncoding.BASE64:
        data = base64.b64decode(str(answer.body))
    elif answer.body_encoding is BodyEncoding.TEXT:
        data = _in_charset(str(answer.body), kind)
    else:
        return None
    if meter is not None:
        meter.charge(len(data))
    return data, kind


def _in_charset(text: str, kind: str | None) -> bytes:
    """*text* in the charset its Content-Type declared, as the upstream sent it."""
    found = _CHARSET.search(kind or "")
    try:
        return text.encode(found[1] if found else "utf-8")
    except (LookupError, UnicodeEncodeError):
        return text.encode()


def _with_type(headers: Headers, kind: str | None) -> Headers:
    # The bytes are the answer's, and so is the type that says what they are: the item's own
    # Content-Type (the Aspose SDK writes application/octet-stream) gives way to it.
    if kind is None:
        return headers
    kept = [(n, v) for n, v in headers if n.lower() != "content-type"]
    return tuple(sorted((*kept, ("Content-Type", kind)), key=lambda h: h[0].lower()))


def _encode_body(body: JSON, headers: Headers) -> tuple[bytes, Headers]:
    has_type = any(n.lower() == "content-type" for n, _ in headers)
    if isinstance(body, str) and has_type:
        return body.encode(), headers
    encoded = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    if has_type:
        return encoded, headers
    return encoded, tuple(
        sorted((*headers, ("Content-Type", "application/json")), key=lambda h: h[0].lower())
    )
