"""What every request passes, before and after its door (`front_door`, the application's
middleware), and what answers `Expect: 100-continue` (`expect`): its origin and its
`Content-Type` checked, its context made and its client admitted before its body is read,
its body read within the deadline; and the last word on errors the doors did not answer
themselves.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from gqlbatch.core.config import Settings
from gqlbatch.core.errors import BatchRejected, ErrorCode, mask_internal
from gqlbatch.core.request_scope import current_request_id
from gqlbatch.doors.cors import Standing, standing
from gqlbatch.doors.graphql.compiled import rejection
from gqlbatch.doors.graphql.context import Context
from gqlbatch.doors.http import (
    CONTEXT,
    JOBS,
    SETTINGS,
    batch_context,
    door_answer,
    in_door_shape,
    invalid,
)
from gqlbatch.doors.multipart import MULTIPART_TYPES
from gqlbatch.doors.rest import rejection_json, rejection_status
from gqlbatch.doors.slow_readers import SLOW_READERS
from gqlbatch.execution.context import BatchContext
from gqlbatch.execution.engine import admit_early

__all__ = ["BATCH_DOORS", "REST_DOORS", "expect", "front_door", "rejected"]

log = logging.getLogger("gqlbatch.doors")

REST_DOORS = ("/batch", "/$batch")
"""The REST door's paths: ours, and OData's and Microsoft Graph's."""
BATCH_DOORS = frozenset({*REST_DOORS, "/graphql", "/batchUpdate"})


def rejected(request: web.Request, exc: BatchRejected, status: int | None = None) -> web.Response:
    """A refused request, in the shape of the door it came through; nothing ran."""
    response = door_answer(
        request,
        status or rejection_status(exc),
        rejection(exc).formatted,
        rejection_json(exc),
    )
    if exc.retry_after_s is not None:
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


def _configured_door(request: web.Request, settings: Settings) -> bool:
    """Whether *request* came to one of the paths `[doors] batch_paths` and `operations_paths`
    add (aiohttp matched its route to the pattern, `{name}` segments and all)."""
    if not settings.batch_paths and not settings.operations_paths:
        return False
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else None
    return canonical in settings.batch_paths or canonical in settings.operations_paths


@web.middleware
async def front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What every request passes, before and after its door: its Content-Type checked, its
    context made and its client admitted (before the body is read), its body read within the
    deadline; and the last word on errors the doors did not answer themselves: a refused
    request in its door's shape, a body over the size limit or too slow to arrive, and a bug,
    which gets INTERNAL_ERROR with an id that finds its traceback in the log, never the
    traceback."""
    settings = request.app[SETTINGS]
    request.app[SLOW_READERS].watch(request.transport)
    try:
        if request.method not in _SAFE and standing(request, settings.cors) is Standing.REFUSED:
            return _cross_site(request)
        _check_content_type(request)
        if request.path in BATCH_DOORS or _configured_door(request, settings):
            # One context per request, for either door; a client already at its limit is
            # refused here, before its body is read: refusing must cost less than admitting.
            request[CONTEXT] = ctx = (
                batch_context(request, Context, jobs=request.app[JOBS])
                if request.path == "/graphql"
                else batch_context(request, BatchContext)
            )
            current_request_id.set(ctx.request_id)  # for every log line of this request
            await admit_early(ctx)
        if request.can_read_body and request.content_type not in MULTIPART_TYPES:
            # Read here, within the body deadline; the doors then read it from aiohttp's cache.
            # A multipart door reads its parts as they come, under the same deadline.
            async with asyncio.timeout(settings.body_timeout_s):
                await request.read()
        return await handler(request)
    except BatchRejected as exc:
        return rejected(request, exc)
    except web.HTTPRequestEntityTooLarge:
        return in_door_shape(
            request,
            413,
            ErrorCode.REQUEST_TOO_LARGE,
            f"the request body is over the {settings.max_request_bytes}-byte limit "
            "(max_request_bytes)",
        )
    except TimeoutError:
        response = in_door_shape(
            request,
            408,
            ErrorCode.REQUEST_TIMEOUT,
            f"the request body did not arrive within {settings.body_timeout_s} s (body_timeout_s)",
        )
        response.force_close()
        return response
    except web.HTTPException:
        raise
    except ConnectionError as exc:
        return _gone(request, exc)
    except Exception as exc:
        masked = mask_internal(exc, f"on {request.method} {request.path}")
        return in_door_shape(
            request, 500, ErrorCode.INTERNAL_ERROR, masked.message, errorId=masked.error_id
        )


def _gone(request: web.Request, exc: ConnectionError) -> web.StreamResponse:
    """The client went, or was cut for not reading, while its answer was written: nobody is
    left to answer, and nothing is wrong here. aiohttp then writes this answer to nobody.

    The error loses its traceback. aiohttp's drain leaves a cycle (its waiter holds the error,
    whose traceback holds the frame that holds the waiter), and the traceback holds every
    frame the error went through: the answer being written stayed until a full collection,
    which a server tuned for throughput runs rarely (issue 24: 8 clients that left mid-answer
    held 280 MiB).
    """
    exc.__traceback__ = None
    log.info("%s %s: the client went before its answer was written", request.method, request.path)
    return web.Response(status=499)  # nginx's "client closed request", for the access log


_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


async def expect(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue` (aiohttp's expect handler, as its docs write one): a body
    declared over max_request_bytes gets its 413 now, and the client never sends it; any
    other gets `100 Continue`. aiohttp's own answered 100 to a declared 50 MB."""
    settings = request.app[SETTINGS]
    if request.headers.get("Expect", "").lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Expect: {request.headers['Expect'][:100]!r}")
    length = request.content_length
    if length is not None and length > settings.max_request_bytes:
        response = in_door_shape(
            request,
            413,
            ErrorCode.REQUEST_TOO_LARGE,
            f"the request body is over the {settings.max_request_bytes}-byte limit "
            "(max_request_bytes)",
        )
        response.force_close()
        return response
    if request.version == aiohttp.HttpVersion11:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer's own bytes start after it, as aiohttp's
    return None


def _cross_site(request: web.Request) -> web.Response:
    """A state-changing request from a page on an origin that is not allowed: refused before
    its body is read (a form's POST needs no preflight, so CORS alone does not stop it)."""
    response = in_door_shape(
        request,
        403,
        ErrorCode.FORBIDDEN_ORIGIN,
        f"a {request.method} from a page on {request.headers.get('Origin')!r} is refused: only "
        "the gateway's own origin and those of [cors] origins may change anything here",
    )
    response.force_close()  # its body, unread, is not read either
    return response


def _check_content_type(request: web.Request) -> None:
    """Refuse a Content-Type that aiohttp cannot parse, before anything asks for it.

    Raises:
        BatchRejected: INVALID_INPUT.
    """
    try:
        request.content_type  # noqa: B018 - parsed, and cached, on first access
    except Exception:  # the stdlib's email parser, on hostile text: any of its errors
        # `multipart/mixed; boundary=a;b*` (an RFC 2231 parameter with no value) raises
        # IndexError deep in email._header_value_parser; found by tests/test_properties.py.
        raise invalid("the Content-Type header is malformed") from None
