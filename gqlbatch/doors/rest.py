"""The REST door's JSON format, and how any item result reads as an HTTP response.

`{"requests": [...]}` or `{"batch": [...]}` in, `{"responses": [...]}` out; a bare array in,
a bare array out; in request order. Or, for `Accept: application/x-ndjson`, one line per item
as it finishes, then the stats; or, for `Prefer: respond-async`, a job (202 and its
`Location`). Items may be written as gqlbatch writes them (`requestId`, `path`) or in the
Microsoft Graph style (`id`, `url`, `dependsOn`). The codec is pure; the handlers at the end
read the request and write the response.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem
from gqlbatch.core.request import OPTION_KEYS, with_defaults
from gqlbatch.core.result import BatchOutcome, ItemResult, State
from gqlbatch.core.types import JSON, Headers
from gqlbatch.core.wire import FRAMING_HEADERS, HOP_BY_HOP_HEADERS, BodyEncoding
from gqlbatch.doors.http import IDENTIFIER, JOBS, NO_STORE, read_json
from gqlbatch.execution.context import BatchContext
from gqlbatch.execution.engine import run_batch, stream_batch
from gqlbatch.execution.job_store import Job

__all__ = [
    "LARGE_ANSWER_BYTES",
    "JsonBatch",
    "answer_headers",
    "cancel_job",
    "error_body",
    "http_status",
    "items_from_json",
    "job_json",
    "json_batch",
    "options_from_prefer",
    "read_job",
    "rejection_json",
    "rejection_status",
    "respond_async",
    "response_headers",
    "responses_json",
    "stream_line",
]


# The status of an item that got no upstream response, by why it did not.
_STATUS = {
    ErrorCode.FAILED_DEPENDENCY: 424,
    ErrorCode.CANCELLED: 424,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.UPSTREAM_TIMEOUT: 504,
    ErrorCode.UPSTREAM_UNREACHABLE: 502,
    ErrorCode.UPSTREAM_BAD_RESPONSE: 502,
    ErrorCode.REFERENCE_NOT_FOUND: 400,
    ErrorCode.FORBIDDEN_TARGET: 400,
    ErrorCode.BATCH_TOO_LARGE: 413,
    ErrorCode.REQUEST_TOO_LARGE: 413,
}
_REJECTION_STATUS = {
    ErrorCode.BATCH_TOO_LARGE: 413,
    ErrorCode.REQUEST_TOO_LARGE: 413,
    ErrorCode.TOO_MANY_REQUESTS: 429,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: 422,
    ErrorCode.JOB_NOT_FOUND: 404,
    ErrorCode.STORE_UNAVAILABLE: 503,
}
# Headers that describe the upstream's connection or encoding, not the item's response.
_DROPPED_HEADERS = FRAMING_HEADERS | HOP_BY_HOP_HEADERS | {"content-encoding"}


@dataclass(frozen=True, slots=True)
class JsonBatch:
    """A JSON batch as the door read it: its items and options in the plain form `run_batch`
    reads, and the shape it came in, which its answer keeps."""

    items: object
    options: JSON
    bare: bool
    """A bare array of requests, answered with a bare array of responses."""


def items_from_json(document: JSON) -> JsonBatch:
    """The items and options of a JSON batch: `{"requests": [...]}`, `{"batch": [...]}` or a
    bare array of requests.

    Raises:
        BatchRejected: the document is none of these.
    """
    if isinstance(document, list):
        return JsonBatch([_item(raw) for raw in document], None, bare=True)
    key = next((k for k in _LIST_KEYS if isinstance(document, dict) and k in document), None)
    if not isinstance(document, dict) or key is None:
        raise BatchRejected(
            [
                Problem(
                    ErrorCode.INVALID_INPUT,
                    'a JSON batch is {"requests": [...]}, {"batch": [...]} or a bare array of '
                    "requests",
                    field="requests",
                )
            ]
        )
    requests = document[key]
    items = [_item(raw) for raw in requests] if isinstance(requests, list) else requests
    options = document.get("options")
    top = {k: document[k] for k in OPTION_KEYS if k in document}
    if isinstance(options, dict):
        options = {**options, **top}
    elif options is None:
        options = top or None
    # Anything else is left as it is, for validation to refuse with a clear problem.
    return JsonBatch(items, options, bare=False)


_LIST_KEYS = ("requests", "batch")
"""The keys a JSON batch object may carry its requests under: ours and Microsoft Graph's, and
the integrators' `batch`."""


def _item(raw: JSON) -> JSON:
    # Microsoft Graph names: id for requestId, url for path (often without its leading '/').
    if not isinstance(raw, dict):
        return raw
    item = dict(raw)
    if "id" in item and "requestId" not in item:
        item["requestId"] = item.pop("id")
    if "url" in item and "path" not in item:
        url = item.pop("url")
        item["path"] = _rooted(url) if isinstance(url, str) else url
    return item


def _rooted(url: str) -> str:
    # "users/1" means "/users/1"; anything that names a host is left for validation to refuse.
    if url.startswith(("/", "\\")) or "://" in url:
        return url
    return "/" + url


def options_from_prefer(
    prefer: str | None, options: dict[str, JSON] | None
) -> dict[str, JSON] | None:
    """Apply `Prefer: continue-on-error` (or OData's `odata.continue-on-error`), `=false` for
    STOP. Options in the body win over the header."""
    if not prefer:
        return options
    for token in prefer.split(","):
        name, _, value = token.strip().partition("=")
        if name.lower() in ("continue-on-error", "odata.continue-on-error"):
            on_error = "STOP" if value.strip().lower() == "false" else "CONTINUE"
            merged = {"onError": on_error}
            merged.update(options or {})
            return merged
    return options


def responses_json(outcome: BatchOutcome, *, bare: bool = False) -> JSON:
    """`{"responses": [...]}`: one per item, in request order; a bare array when *bare*, for a
    batch that came as one (an atomic batch's `rolledBack` is then each response's `state`
    and `rollback`)."""
    responses: list[JSON] = [_response(r) for r in outcome.results]
    if bare:
        return responses
    document: dict[str, JSON] = {"responses": responses}
    if outcome.rolled_back:
        document["rolledBack"] = True
    return document


def respond_async(prefer: str | None) -> bool:
    """Whether `Prefer` asks for the batch to be run as a job (`respond-async`, RFC 7240)."""
    return any(
        token.split("=")[0].strip().lower() == "respond-async"
        for token in (prefer or "").split(",")
    )


def job_json(job: Job) -> dict[str, JSON]:
    """A job as `GET /batch/jobs/{id}` answers it: its state, progress, and the responses so
    far in the client's order; `stats` once it succeeded, `error` if it failed."""
    out: dict[str, JSON] = {
        "id": job.id,
        "state": job.state.value,
        "progress": {"done": job.done, "total": job.total},
        "responses": [_response(r) for r in job.items()],
    }
    if job.outcome is not None:
        out["stats"] = _stats_json(job.outcome)
    if job.error is not None:
        out["error"] = job.error
    return out


def _stats_json(outcome: BatchOutcome) -> dict[str, JSON]:
    return {_camel(k): v for k, v in dataclasses.asdict(outcome.stats).items()}


def stream_line(event: ItemResult | BatchOutcome) -> bytes:
    """One line of an `application/x-ndjson` answer: an item's response (with its `index`,
    as lines come in the order items finish), or, last, `{"done", "rolledBack", "replayed",
    "stats"}`."""
    if isinstance(event, BatchOutcome):
        line: dict[str, JSON] = {
            "done": True,
            "rolledBack": event.rolled_back,
            "replayed": event.replayed,
            "stats": _stats_json(event),
        }
    else:
        line = {"index": event.index, **_response(event)}
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.title() for word in rest)


def _response(result: ItemResult) -> dict[str, JSON]:
    out: dict[str, JSON] = {
        "id": result.request_id,
        "status": http_status(result),
        "headers": response_headers(result.headers),
        "body": result.body if result.status is not None or result.elements else error_body(result),
        "state": result.state.value,
    }
    if result.body_encoding in (BodyEncoding.TEXT, BodyEncoding.BASE64):
        out["bodyEncoding"] = result.body_encoding.value
    if result.error is not None:
        out["error"] = result.error.to_json()
    if result.rollback is not None:
        out["rollback"] = {
            "state": result.rollback.state.value,
            "status": result.rollback.status,
            "message": result.rollback.message,
        }
    if result.elements is not None:
        out["elements"] = [
            {
                "index": e.index,
                "status": e.status,
                "error": None if e.error is None else e.error.to_json(),
            }
            for e in result.elements
        ]
    return out


def error_body(result: ItemResult) -> JSON:
    """The body of an item that got no upstream response: `{"error": {code, message}}`."""
    return None if result.error is None else {"error": result.error.to_json()}


def http_status(result: ItemResult) -> int:
    """The item's status: the upstream's when it answered, else one that says why not."""
    if result.status is not None:
        return result.status
    if result.error is None:
        return 200 if result.state is State.SUCCEEDED else 500
    return _STATUS.get(result.error.code, 500)


def response_headers(headers: Headers) -> dict[str, str]:
    """An item's headers as an object, minus those about the upstream's own connection."""
    out: dict[str, str] = {}
    for name, value in headers:
        if name.lower() not in _DROPPED_HEADERS:
            out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def rejection_status(exc: BatchRejected) -> int:
    """400 for an invalid batch; 413 when too large; 429 when over the outstanding limit; 503
    when the shared store did not answer."""
    for code, status in _REJECTION_STATUS.items():
        if any(p.code is code for p in exc.problems):
            return status
    return 400


def rejection_json(exc: BatchRejected) -> dict[str, Any]:
    """The body of a refused batch: the same problems the GraphQL door lists."""
    error: dict[str, Any] = {
        "code": exc.code.value,
        "message": str(exc),
        "problems": [p.to_json() for p in exc.problems],
    }
    if exc.retry_after_s is not None:
        error["retryAfter"] = exc.retry_after_s
    return {"error": error}


# --------------------------------------------------------------------------------------------
# Handlers: JSON batches, streamed or run as jobs


async def json_batch(request: web.Request, ctx: BatchContext) -> web.StreamResponse:
    document = read_json(await request.read(), ctx.settings.max_json_depth)
    batch = items_from_json(document)
    preferred = options_from_prefer(request.headers.get("Prefer"), batch.options)
    options = with_defaults(ctx.settings.door_options.get("json", {}), preferred)
    if respond_async(request.headers.get("Prefer")):
        job = await request.app[JOBS].submit(batch.items, options, ctx)
        location = f"{request.path}/jobs/{job.id}"
        headers = {"Location": location, "Retry-After": "1", "Cache-Control": NO_STORE}
        return web.json_response(job_json(job), status=202, headers=headers)
    if _accepts(request, NDJSON):
        return await _streamed(request, stream_batch(batch.items, options, ctx))
    outcome = await run_batch(batch.items, options, ctx)
    answer = responses_json(outcome, bare=batch.bare)
    if outcome.stats.response_bytes <= LARGE_ANSWER_BYTES:
        return web.json_response(answer, headers=answer_headers(outcome))
    return await _large_answer(request, answer, answer_headers(outcome))


async def read_job(request: web.Request) -> web.StreamResponse:
    """GET /batch/jobs/{id}: the job's state and the results so far, to its submitter."""
    job = await request.app[JOBS].get(request.match_info["id"], _client(request))
    return await _job_answer(request, job)


async def cancel_job(request: web.Request) -> web.StreamResponse:
    """DELETE /batch/jobs/{id}: stop the job; what finished stays readable."""
    job = await request.app[JOBS].cancel(request.match_info["id"], _client(request))
    return await _job_answer(request, job)


async def _job_answer(request: web.Request, job: Job) -> web.StreamResponse:
    """*job* as JSON: written off the event loop when its results are large (a 56 MiB job
    held the loop 1.1 s on each GET)."""
    answer = job_json(job)
    headers = {"Cache-Control": NO_STORE}
    if job.outcome is None or job.outcome.stats.response_bytes <= LARGE_ANSWER_BYTES:
        return web.json_response(answer, headers=headers)
    return await _large_answer(request, answer, headers)


LARGE_ANSWER_BYTES = 1024 * 1024
"""An answer of more upstream bytes than this is written a response at a time."""


async def _large_answer(
    request: web.Request, answer: JSON, headers: dict[str, str]
) -> web.StreamResponse:
    """*answer* written a response at a time, each written as soon as the client takes the
    one before (issue 24). Written at once, 64 MiB held the event loop half a second, and
    eight clients that never read held every byte of theirs; written off the loop, each piece
    still held the GIL, and the loop with it. A client that takes nothing is cut by the write
    deadline (`doors.slow_readers`), and what was not written was never made; a client that
    goes mid-answer is `front_door`'s."""
    response = web.StreamResponse(headers=headers)
    response.content_type = "application/json"
    response.enable_compression()  # as the client accepts, chunk by chunk
    await response.prepare(request)
    for piece in _in_pieces(answer):
        await response.write(piece.encode())
        await asyncio.sleep(0)  # a turn of the loop for others between pieces
    await response.write_eof()
    return response


def _in_pieces(value: JSON) -> Iterator[str]:
    """*value* as json.dumps writes it (but for the place of `responses` in an object), a
    response at a time."""
    if isinstance(value, list):
        yield "["
        for n, inner in enumerate(value):
            yield (", " if n else "") + json.dumps(inner)
        yield "]"
    elif isinstance(value, dict) and isinstance(value.get("responses"), list):
        rest = {k: v for k, v in value.items() if k != "responses"}
        yield json.dumps(rest)[:-1] + (", " if rest else "") + '"responses": '
        yield from _in_pieces(value["responses"])
        yield "}"
    else:
        yield json.dumps(value)


def _client(request: web.Request) -> str:
    return request.app[IDENTIFIER].identify(request.headers.items(), request.remote).client


NDJSON = "application/x-ndjson"


def _accepts(request: web.Request, media: str) -> bool:
    return any(
        part.split(";")[0].strip().lower() == media
        for part in request.headers.get("Accept", "").split(",")
    )


async def _streamed(
    request: web.Request, events: AsyncIterator[ItemResult | BatchOutcome]
) -> web.StreamResponse:
    """One JSON line per item as it finishes, then the stats. A refused batch is refused as
    usual: nothing is written before the first item is known."""
    first = await anext(events)  # BatchRejected here reaches front_door, nothing sent yet
    response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": NO_STORE})
    await response.prepare(request)
    await response.write(stream_line(first))
    async for event in events:
        await response.write(stream_line(event))
    await response.write_eof()
    return response


def answer_headers(outcome: BatchOutcome) -> dict[str, str]:
    headers = {"Cache-Control": NO_STORE}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return headers
