"""The REST door's multipart format: `multipart/mixed`, `multipart/batching` or
`multipart/form-data` bodies whose parts are `application/http` requests, answered in kind,
part for part, in order.

MIME is read and written by aiohttp's multipart reader and writer, and each part's HTTP/1.1
message by h11. Parts name themselves by `RequestId` or `Content-ID` and may list `DependsOn`,
on the MIME part or inside its HTTP message (as the Aspose SDK writes them, which are then not
forwarded); the response echoes each part's `Content-ID` and `RequestId`.

`multipart/form-data` is the Aspose SDK's dialect: request lines without an HTTP version and
with a target relative to the API's base (`GET posts/7`), references written without braces
(`resultOf(create).id`), and an answer whose parts the SDK reads as `200 OK` status lines
(no HTTP version) with the `RequestId` header inside the message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

import aiohttp
import h11
from aiohttp import web

from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem
from gqlbatch.core.placeholders import (
    TemplateSyntaxError,
    brace_bare_references,
    parse_template,
)
from gqlbatch.core.request import with_defaults
from gqlbatch.core.result import BatchOutcome, ItemResult
from gqlbatch.core.strict_json import DEFAULT_MAX_DEPTH, JSONRefused, loads
from gqlbatch.core.types import JSON, REQUEST_ID_CHARS
from gqlbatch.core.wire import FRAMING_HEADERS, BodyEncoding
from gqlbatch.doors.http import invalid
from gqlbatch.doors.rest import (
    answer_headers,
    error_body,
    http_status,
    options_from_prefer,
    response_headers,
)
from gqlbatch.execution.context import BatchContext
from gqlbatch.execution.engine import run_batch

# The Aspose SDK's parts name no field ("Content-Disposition: form-data;"), which aiohttp reads
# as it should (no name: gqlbatch names parts by RequestId) and warns about, once per part:
# every Aspose batch would have warned. Filtered through the warnings module's own API.
warnings.filterwarnings("ignore", category=aiohttp.BadContentDispositionHeader)

__all__ = [
    "FORM_DATA",
    "MULTIPART_TYPES",
    "Part",
    "multipart_batch",
    "parse_part",
    "parse_parts",
    "read_parts",
    "write_responses",
]

FORM_DATA = "multipart/form-data"
MULTIPART_TYPES = frozenset({"multipart/mixed", "multipart/batching", FORM_DATA})
_ID_HEADERS = frozenset({"requestid", "dependson"})
"""Headers that name a part and its dependencies; read by the door, never sent upstream."""
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_FRAMING = frozenset(name.encode() for name in FRAMING_HEADERS)


@dataclass(frozen=True, slots=True)
class Part:
    """One part as received: its MIME headers and its payload."""

    headers: Mapping[str, str]
    payload: bytes


async def read_parts(reader: aiohttp.MultipartReader, max_bytes: int, max_parts: int) -> list[Part]:
    """Every part of a multipart batch, in order, up to *max_bytes* of payload in all and
    *max_parts* parts, counted as they arrive (nothing past either limit is read).

    Raises:
        BatchRejected: REQUEST_TOO_LARGE past *max_bytes*; BATCH_TOO_LARGE past *max_parts*;
            NESTED_BATCH for a nested multipart.
    """
    parts: list[Part] = []
    size = 0
    while (part := await _next(reader, len(parts))) is not None:
        if isinstance(part, aiohttp.MultipartReader):
            raise _nested(len(parts))
        if len(parts) == max_parts:
            raise BatchRejected(
                [
                    Problem(
                        ErrorCode.BATCH_TOO_LARGE,
                        f"a batch holds at most {max_parts} requests; this one has more",
                        field="requests",
                    )
                ]
            )
        payload = await _payload(part, len(parts))
        size += len(payload)
        if size > max_bytes:
            raise BatchRejected(
                [
                    Problem(
                        ErrorCode.REQUEST_TOO_LARGE,
                        f"the batch body is over the {max_bytes}-byte limit (max_request_bytes)",
                    )
                ]
            )
        parts.append(Part(dict(part.headers), payload))
    return parts


async def _next(
    reader: aiohttp.MultipartReader, index: int
) -> aiohttp.MultipartReader | aiohttp.BodyPartReader | None:
    try:
        return await reader.next()
    except (ValueError, AssertionError) as exc:  # aiohttp's words for malformed MIME framing
        raise _malformed(index, exc) from exc


async def _payload(part: aiohttp.BodyPartReader, index: int) -> bytes:
    try:
        return bytes(await part.read())
    except (ValueError, AssertionError) as exc:
        raise _malformed(index, exc) from exc


def _malformed(index: int, exc: Exception) -> BatchRejected:
    return BatchRejected(
        [
            Problem(
                ErrorCode.INVALID_INPUT,
                f"the multipart body is malformed at part {index} ({exc}); parts are separated by "
                "CRLF, '--boundary' lines, and a closing '--boundary--'",
                index=index,
                field="part",
            )
        ]
    )


def parse_parts(
    parts: Sequence[Part], host: str | None, max_json_depth: int = DEFAULT_MAX_DEPTH
) -> list[dict[str, JSON]]:
    """The plain items the parts describe, or one rejection that lists every bad part."""
    items: list[dict[str, JSON]] = []
    problems: list[Problem] = []
    for index, part in enumerate(parts):
        try:
            items.append(parse_part(part, index, host, max_json_depth))
        except BatchRejected as exc:
            problems.extend(exc.problems)
    if problems:
        raise BatchRejected(problems)
    return items


def parse_part(
    part: Part, index: int, host: str | None, max_json_depth: int = DEFAULT_MAX_DEPTH
) -> dict[str, JSON]:
    """The plain item a part describes; *host* is the batch request's own Host.

    Raises:
        BatchRejected: the part is not one HTTP request; it names the part and why.
    """
    content_type = part.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type.startswith("multipart/"):
        raise _nested(index)
    if content_type != "application/http":
        raise _bad_part(index, f"Content-Type must be application/http, got {content_type!r}")
    method, target, message_headers, body = _http_request(part.payload, index)
    inner = {n.lower(): v for n, v in message_headers if n.lower() in _ID_HEADERS}
    headers = [(n, v) for n, v in message_headers if n.lower() not in _ID_HEADERS]
    item: dict[str, JSON] = {"method": method, "path": brace_bare_references(_path(target, host))}
    item["requestId"] = _part_id(part.headers) or inner.get("requestid") or str(index)
    depends = part.headers.get("DependsOn") or inner.get("dependson")
    if depends:
        item["dependsOn"] = [d.strip() for d in depends.split(",") if d.strip()]
    if headers:
        item["headers"] = [{"name": n, "value": v} for n, v in headers]
    if body:
        item["body"] = _body(body, headers, index, max_json_depth)
    return item


def _part_id(headers: Mapping[str, str]) -> str | None:
    value = headers.get("RequestId") or headers.get("Content-ID")
    return value.strip().strip("<>") if value else None


def _http_request(payload: bytes, index: int) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """Parse one HTTP/1.1 request with h11, after fitting the dialects batch formats use.

    Google's batch parts omit the HTTP version, most parts omit Host, and bodies usually come
    without Content-Length. So the head gets `HTTP/1.1` and a placeholder Host when they are
    missing, and the body (everything after the blank line) its exact Content-Length.
    """
    found = _HEAD_END.search(payload)
    head, body = (payload[: found.start()], payload[found.end() :]) if found else (payload, b"")
    lines = head.strip(b"\r\n").splitlines()
    if not lines:
        raise _bad_part(index, "the part holds no HTTP request line")
    request_line = lines[0].split()
    if len(request_line) == 2:
        request_line.append(b"HTTP/1.1")
    fields = [line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() not in _FRAMING]
    if not any(line.lower().startswith(b"host:") for line in fields):
        fields.append(b"Host: gqlbatch.invalid")
    fields.append(b"Content-Length: %d" % len(body))
    message = b"\r\n".join([b" ".join(request_line), *fields]) + b"\r\n\r\n" + body
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(message)
    try:
        event = connection.next_event()
    except h11.RemoteProtocolError as exc:
        raise _bad_part(index, f"not an HTTP/1.1 request: {exc}") from exc
    if not isinstance(event, h11.Request):
        raise _bad_part(index, "not a complete HTTP/1.1 request")
    headers = [
        (n.decode("latin-1"), v.decode("latin-1"))
        for n, v in event.headers.raw_items()
        if n.lower() not in (b"host", b"content-length")
    ]
    return event.method.decode(), event.target.decode("latin-1"), headers, body


def _path(target: str, host: str | None) -> str:
    # An absolute target is accepted only when it names this gateway itself (as OData clients
    # write them); any other host stays absolute, and validation refuses it. A relative one
    # (`posts/7`, as the Aspose SDK writes them) is below the upstream's base: rooted here, it
    # meets the same checks as any path, so `../x` still cannot leave the upstream.
    if "://" not in target:
        return target if target.startswith(("/", "\\")) else "/" + target
    parts = urlsplit(target)
    if host and parts.netloc.lower() == host.lower():
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return target


def _body(body: bytes, headers: Sequence[tuple[str, str]], index: int, max_json_depth: int) -> JSON:
    content_type = next((v for n, v in headers if n.lower() == "content-type"), "")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad_part(index, f"the body is not UTF-8 text ({exc.reason})") from None
    if "json" in content_type.lower():
        try:
            return loads(text, max_depth=max_json_depth)
        except JSONRefused as exc:
            raise _bad_part(index, f"the body is declared JSON but is not ({exc})") from None
    # The Aspose SDK writes a reference to an earlier result as the whole body, bare and
    # sometimes after a stray quote (`"resultOf(create)`): the whole value of that result.
    bare = text.strip().strip('"')
    return bare if _is_bare_reference(bare) else text


def _is_bare_reference(text: str) -> bool:
    try:
        return text.startswith("resultOf(") and bool(parse_template(text).refs)
    except TemplateSyntaxError:
        return False


def write_responses(
    outcome: BatchOutcome, parts: Sequence[Part], subtype: str, only: int | None = None
) -> aiohttp.MultipartWriter:
    """The multipart response: one `application/http` part per item, in order, with its
    request part's Content-ID and RequestId echoed; in the form-data dialect, each part named
    by its item and its message in the shape the Aspose SDK reads. With *only*, the part of
    that item alone."""
    writer = aiohttp.MultipartWriter(subtype)
    form_data = subtype == FORM_DATA.split("/")[1]
    for index, (result, part) in enumerate(zip(outcome.results, parts, strict=True)):
        if only is not None and index != only:
            continue
        headers = {"Content-Type": "application/http; msgtype=response"}
        for name in ("Content-ID", "RequestId"):
            if name in part.headers:
                headers[name] = part.headers[name]
        if form_data:
            headers["Content-Disposition"] = f'form-data; name="{result.request_id}"'
        writer.append(_http_response(result, aspose=form_data), headers)
    return writer


def _http_response(result: ItemResult, *, aspose: bool = False) -> bytes:
    status = http_status(result)
    body, content_type = _response_body(result)
    headers = response_headers(result.headers)
    headers = {n: v for n, v in headers.items() if n.lower() not in ("content-type", "requestid")}
    if content_type:
        headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(body))
    reason = _reason(status)
    # The Aspose SDK reads the status as the first word of the message's first line, and the
    # request it answers by the RequestId header inside the message.
    status_line = f"{status} {reason}" if aspose else f"HTTP/1.1 {status} {reason}"
    if aspose:
        headers = {"RequestId": result.request_id, **headers}
    head = [status_line.rstrip()] + [f"{n}: {v}" for n, v in headers.items()]
    # Upstream header values arrive decoded as UTF-8 with surrogateescape (aiohttp's way with
    # bytes that are not UTF-8); encoding them back the same way sends the upstream's own
    # bytes, where latin-1 would fail on any character past U+00FF.
    return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _response_body(result: ItemResult) -> tuple[bytes, str | None]:
    declared = next((v for n, v in result.headers if n.lower() == "content-type"), None)
    if result.status is None and result.error is not None:
        return json.dumps(error_body(result)).encode(), "application/json"
    if result.body_encoding is BodyEncoding.EMPTY:
        return b"", declared
    if result.body_encoding is BodyEncoding.BASE64:
        return base64.b64decode(result.body), declared
    if result.body_encoding is BodyEncoding.TEXT:
        return str(result.body).encode(), declared or "text/plain; charset=utf-8"
    return json.dumps(result.body, separators=(",", ":")).encode(), declared or "application/json"


def _nested(index: int) -> BatchRejected:
    return BatchRejected(
        [
            Problem(
                ErrorCode.NESTED_BATCH,
                "a part may not be a batch itself (nested multipart, such as an OData "
                "changeset, is not supported)",
                index=index,
                field="Content-Type",
            )
        ]
    )


def _bad_part(index: int, message: str) -> BatchRejected:
    return BatchRejected([Problem(ErrorCode.INVALID_INPUT, message, index=index, field="part")])


async def multipart_batch(request: web.Request, ctx: BatchContext) -> web.Response:
    if "boundary=" not in request.headers.get("Content-Type", "").lower():
        raise BatchRejected(
            [Problem(ErrorCode.INVALID_INPUT, "a multipart batch needs a boundary parameter")]
        )
    settings = ctx.settings
    try:
        reader = await request.multipart()
    except ValueError as exc:  # aiohttp's word for a boundary RFC 2046 does not allow
        raise invalid(f"the multipart boundary is not valid: {exc}") from None
    async with asyncio.timeout(settings.body_timeout_s):
        parts = await read_parts(reader, settings.max_request_bytes, settings.max_items)
    items = parse_parts(parts, request.host, settings.max_json_depth)
    preferred = options_from_prefer(request.headers.get("Prefer"), None)
    options = with_defaults(settings.door_options.get("multipart", {}), preferred)
    outcome = await run_batch(items, options, ctx)
    subtype = request.content_type.split("/")[1]
    shown = None
    if request.query.get("displayIntermediateResults", "").lower() == "false":
        shown = _final_item(items)
    return web.Response(
        body=write_responses(outcome, parts, subtype, only=shown),
        headers=answer_headers(outcome),
    )


_NAMED = re.compile(r"(?:resultOf|statusOf|headerOf)\(\s*(" + REQUEST_ID_CHARS + r"+)")


def _final_item(items: Sequence[Mapping[str, JSON]]) -> int:
    """The index of the batch's final result, which Aspose's `displayIntermediateResults=false`
    answers alone: the last item, in the batch's order, that no other item depends on (by
    `DependsOn` or by a reference to its result). An Aspose chain has one; with several, the
    last is answered, as Aspose answers the last request's result."""
    named: set[object] = set()
    for item in items:
        named.update(item.get("dependsOn") or ())
        named.update(_NAMED.findall(json.dumps([item.get("path"), item.get("body")])))
    leaves = [i for i, item in enumerate(items) if item.get("requestId") not in named]
    return leaves[-1] if leaves else len(items) - 1
