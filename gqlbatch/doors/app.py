"""The aiohttp application: both doors (the GraphQL view and `POST /batch`), the upstream
client's lifecycle, and health routes. `listener.py` serves it.

Both doors build the same `BatchContext` and call the same `run_batch`; the REST door only
translates its wire formats (`rest.py`, `multipart.py`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, TypeGuard
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler
from cross_web import HTTPException
from strawberry.aiohttp.views import GraphQLView

from gqlbatch.core import strict_json
from gqlbatch.core.call import forwarded_headers
from gqlbatch.core.config import Settings
from gqlbatch.core.errors import (
    BatchRejected,
    ConfigError,
    ErrorCode,
    Problem,
    UpstreamError,
    mask_internal,
)
from gqlbatch.core.identity import Identifier
from gqlbatch.core.request import with_defaults
from gqlbatch.core.request_scope import current_request_id
from gqlbatch.core.result import BatchOutcome, ItemResult
from gqlbatch.core.types import Headers
from gqlbatch.core.wire import UpstreamCall
from gqlbatch.doors.extensions import QueryLimits
from gqlbatch.doors.multipart import MULTIPART_TYPES, parse_parts, read_parts, write_responses
from gqlbatch.doors.rest import (
    items_from_json,
    job_json,
    options_from_prefer,
    rejection_json,
    rejection_status,
    respond_async,
    responses_json,
    stream_line,
)
from gqlbatch.doors.schema import Context, build_schema, rejection_error
from gqlbatch.execution import metrics
from gqlbatch.execution.engine import (
    BatchContext,
    admit_early,
    request_budget,
    run_batch,
    stream_batch,
)
from gqlbatch.execution.idempotency import IdempotencyStore, MemoryIdempotencyStore
from gqlbatch.execution.jobs import Jobs, JobStore, MemoryJobStore
from gqlbatch.execution.limits import MemoryPlaces, OutstandingCalls, Places
from gqlbatch.upstreams.client import UpstreamClient
from gqlbatch.upstreams.inflight import SharedInflight

__all__ = ["CLIENT", "SETTINGS", "create_app"]


@dataclasses.dataclass
class Readiness:
    """What `/readyz` reports besides the upstreams."""

    draining: bool = False
    """Set when the server begins to stop: a load balancer should send it nothing new."""
    store: Callable[[], Awaitable[object]] | None = None
    """Pings the shared store, when there is one."""


GRAPHQL_RESPONSE = "application/graphql-response+json"
_HTTP_CODES = {405: ErrorCode.METHOD_NOT_ALLOWED, 413: ErrorCode.REQUEST_TOO_LARGE}
NO_STORE = "private, no-store"
"""Every answer's Cache-Control until HTTP caching is designed: results carry user data."""
SETTINGS: Final = web.AppKey("settings", Settings)
CLIENT: Final = web.AppKey("client", UpstreamClient)
INFLIGHT: Final = web.AppKey("inflight", SharedInflight)
OUTSTANDING: Final = web.AppKey("outstanding", OutstandingCalls)
IDENTIFIER: Final = web.AppKey("identifier", Identifier)
CONTEXT: Final = web.RequestKey("context", BatchContext)
"""The request's BatchContext, made once by the `_front_door` middleware for both doors."""
REST_DOORS = ("/batch", "/$batch")
"""The REST door's paths: ours, and OData's and Microsoft Graph's."""
_BATCH_DOORS = frozenset({*REST_DOORS, "/graphql"})
IDEMPOTENCY: Final = web.AppKey("idempotency", IdempotencyStore)
JOBS: Final = web.AppKey("jobs", Jobs)
READINESS: Final = web.AppKey("readiness", Readiness)


class BatchView(GraphQLView[Context, None]):
    """Strawberry's aiohttp view with a fresh gqlbatch `Context` per request."""

    def __init__(self, *, settings: Settings) -> None:
        limits = QueryLimits(
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_query_aliases,
            max_tokens=settings.max_query_tokens,
            introspection=settings.introspection,
        )
        super().__init__(
            schema=build_schema(limits), graphql_ide="graphiql" if settings.graphiql else None
        )
        self._settings = settings

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        # Strawberry answers a request it cannot take (no query, a bad `variables`, PUT) with
        # its reason as plain text; here it is a GraphQL error with a code, as every other
        # refusal is.
        try:
            return await self.run(request=request)
        except HTTPException as exc:
            code = _HTTP_CODES.get(exc.status_code, ErrorCode.INVALID_INPUT)
            return _in_door_shape(request, exc.status_code, code, exc.reason)

    def is_websocket_request(self, request: web.Request) -> TypeGuard[web.Request]:
        # Strawberry builds a WebSocketResponse for every request to find out, a measurable
        # share of a small batch's CPU (BENCHMARKS.md); only a request that asks to upgrade
        # can be one.
        return "Upgrade" in request.headers and super().is_websocket_request(request)

    async def get_sub_response(self, request: web.Request) -> web.Response:
        # GraphQL over HTTP: a client that prefers application/graphql-response+json gets it,
        # with 400 for request errors (no data at all); application/json stays 200 throughout.
        response = web.Response(headers={"Cache-Control": NO_STORE})
        if _prefers_graphql_response(request.headers.get("Accept", "")):
            response.content_type = GRAPHQL_RESPONSE
        return response

    def decode_json(self, data: str | bytes) -> object:
        """A request body, or GET's `variables`, read strictly: a JSON object, no deeper than
        max_json_depth, no NaN, no document over max_query_bytes (refused before parsing it).

        Raises:
            BatchRejected: which the `_front_door` middleware answers in GraphQL's shape.
        """
        settings = self._settings
        document = _strict_json(data, settings.max_json_depth)
        if not isinstance(document, dict):
            kind = "null" if document is None else type(document).__name__
            raise _invalid(
                f'a GraphQL request is a JSON object such as {{"query": "..."}}, not {kind}'
            )
        query = document.get("query")
        if (
            isinstance(query, str)
            and len(query.encode(errors="replace")) > settings.max_query_bytes
        ):
            raise BatchRejected(
                [
                    Problem(
                        ErrorCode.REQUEST_TOO_LARGE,
                        f"the GraphQL document is over the {settings.max_query_bytes}-byte "
                        "limit (max_query_bytes); pass large values as variables",
                        field="query",
                    )
                ]
            )
        return document

    def create_response(self, response_data: Any, sub_response: web.Response) -> web.Response:
        media = sub_response.content_type
        request_error = _is_request_error(response_data)
        if request_error:
            # A request that never reached execution (it did not parse or validate) has no
            # `data` entry at all (GraphQL spec, "Response Format"; graphql-http's audits D586
            # and 5E5B); Strawberry writes `"data": null`. A field error keeps its data.
            response_data = {k: v for k, v in response_data.items() if k != "data"}
        response = super().create_response(response_data, sub_response)
        if media == GRAPHQL_RESPONSE:
            response.content_type = GRAPHQL_RESPONSE
            if request_error:
                response.set_status(400)
        return response

    async def get_context(self, request: web.Request, response: object) -> Context:
        context = request[CONTEXT]
        if isinstance(response, web.WebSocketResponse):
            # One context serves every operation of the connection: each operation gets a
            # budget of its own from OperationBudget, as each HTTP request does.
            return dataclasses.replace(context, budget=None)
        return context


def batch_context(request: web.Request) -> BatchContext:
    """The engine's context for one incoming request, whichever door it came through.

    Raises:
        BatchRejected: a credential header was sent twice.
    """
    settings = request.app[SETTINGS]
    identity = request.app[IDENTIFIER].identify(request.headers.items(), request.remote)
    return BatchContext(
        settings=settings,
        send=request.app[INFLIGHT].sender,
        forwarded=_forwarded(request, settings),
        client=identity.client,
        address=identity.address,
        budget=request_budget(settings),
        outstanding=request.app[OUTSTANDING],
        idempotency=request.app[IDEMPOTENCY],
        idempotency_key=request.headers.get("Idempotency-Key"),
        request_id=request.headers.get("X-Request-Id") or uuid.uuid4().hex,
        jobs=request.app[JOBS],
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


def _strict_json(data: str | bytes, max_depth: int) -> object:
    try:
        return strict_json.loads(data, max_depth=max_depth)
    except strict_json.JSONRefused as exc:
        raise _invalid(f"the body is not JSON gqlbatch accepts: {exc}") from None


def _invalid(message: str) -> BatchRejected:
    return BatchRejected([Problem(ErrorCode.INVALID_INPUT, message)])


def create_app(settings: Settings, *, landing_query: str | None = None) -> web.Application:
    """The gqlbatch server for *settings*.

    With *landing_query*, `GET /` opens GraphiQL with that query filled in.
    """
    app = web.Application(client_max_size=settings.max_request_bytes, middlewares=[_front_door])
    app[SETTINGS] = settings
    app[READINESS] = Readiness()
    app.on_shutdown.append(_draining)
    places, app[IDEMPOTENCY], job_store = _shared_state(app, settings)
    app[JOBS] = jobs = Jobs(job_store, ttl_s=settings.jobs_ttl_s, max_jobs=settings.jobs_max)
    app.on_cleanup.append(lambda _app: jobs.close())
    app[OUTSTANDING] = OutstandingCalls(
        per_client=settings.max_outstanding_per_client,
        per_address=settings.max_outstanding_per_address,
        total=settings.max_outstanding_total,
        retry_after_s=settings.retry_after_s,
        places=places,
    )
    forwarded = {*settings.forward_headers}
    for upstream in settings.upstreams.values():
        forwarded.update(upstream.forward_headers or ())
    app[IDENTIFIER] = Identifier(forwarded, settings.trusted_proxies)
    app.cleanup_ctx.append(_client_ctx)
    app.router.add_route("*", "/graphql", BatchView(settings=settings))
    for path in REST_DOORS:
        app.router.add_post(path, _rest_batch)
        app.router.add_put(path, _rest_batch)  # the Aspose SDK PUTs its multipart batches
        app.router.add_get(path + "/jobs/{id}", _read_job)
        app.router.add_delete(path + "/jobs/{id}", _cancel_job)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/readyz", _readyz)
    if landing_query is not None:
        target = "/graphql?q=" + quote(landing_query, safe="")
        app.router.add_get("/", _redirect_to(target))
    return app


def _shared_state(
    app: web.Application, settings: Settings
) -> tuple[Places, IdempotencyStore, JobStore]:
    """Where outstanding calls, idempotency records and jobs live: this process's memory, or
    the Redis store at `store_url`, which every process configured with it shares."""
    if settings.store_url is None:
        return (
            MemoryPlaces(),
            MemoryIdempotencyStore(
                settings.idempotency_ttl_s,
                settings.idempotency_max_records,
                max_bytes=settings.idempotency_max_bytes,
                max_record_bytes=settings.idempotency_max_record_bytes,
            ),
            MemoryJobStore(ttl_s=settings.jobs_ttl_s, max_jobs=settings.jobs_max),
        )
    try:
        from gqlbatch.execution import redis_store  # redis-py is the [redis] extra
    except ImportError as exc:
        raise ConfigError(
            f"store.url needs redis-py ({exc.name} is not installed): pip install 'gqlbatch[redis]'"
        ) from None
    redis = redis_store.connect(settings.store_url)
    # A lease outlives any call of a batch (its deadline, then a compensation's timeout).
    lease_ms = settings.batch_timeout_ms + _LEASE_MARGIN_MS

    async def close(_app: web.Application) -> AsyncIterator[None]:
        yield
        await redis.aclose()

    app.cleanup_ctx.append(close)
    app[READINESS].store = redis.ping
    return (
        redis_store.RedisPlaces(redis, lease_ms=lease_ms),
        redis_store.RedisIdempotencyStore(
            redis,
            ttl_s=settings.idempotency_ttl_s,
            running_lease_ms=lease_ms,
            max_record_bytes=settings.idempotency_max_record_bytes,
        ),
        redis_store.RedisJobStore(redis, ttl_s=settings.jobs_ttl_s, max_jobs=settings.jobs_max),
    )


_LEASE_MARGIN_MS = 60_000


async def _client_ctx(app: web.Application) -> AsyncIterator[None]:
    # One pooled client per application, closed when the application stops (aiohttp's
    # "Persistent session" advice): never one per request, never one at import time.
    settings = app[SETTINGS]
    client = UpstreamClient(settings)
    app[CLIENT] = client
    app[INFLIGHT] = SharedInflight(
        metrics.observed(client.send),
        [u.name for u in settings.upstreams.values() if u.share_inflight],
    )
    yield
    await client.close()


async def _rest_batch(request: web.Request) -> web.StreamResponse:
    """POST /batch (or /$batch): a JSON or multipart batch in, the same format out; PUT for a
    multipart batch, as the Aspose SDK sends it (DESIGN §2)."""
    ctx = request[CONTEXT]
    if request.content_type in MULTIPART_TYPES:
        return await _multipart_batch(request, ctx)
    if request.method == "PUT":
        return _in_door_shape(
            request,
            405,
            ErrorCode.METHOD_NOT_ALLOWED,
            f"PUT {request.path} takes a multipart batch (as the Aspose SDK sends it); "
            "POST a JSON batch",
        )
    if request.content_type == "application/json":
        return await _json_batch(request, ctx)
    message = (
        f"POST {request.path} takes application/json, multipart/mixed, multipart/batching or "
        f"multipart/form-data, not {request.content_type!r}"
    )
    problem = Problem(ErrorCode.INVALID_INPUT, message, field="Content-Type")
    return _rejected(request, BatchRejected([problem]), status=415)


async def _json_batch(request: web.Request, ctx: BatchContext) -> web.StreamResponse:
    document = _strict_json(await request.read(), ctx.settings.max_json_depth)
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
    return web.json_response(
        responses_json(outcome, bare=batch.bare), headers=_answer_headers(outcome)
    )


async def _multipart_batch(request: web.Request, ctx: BatchContext) -> web.Response:
    if "boundary=" not in request.headers.get("Content-Type", "").lower():
        raise BatchRejected(
            [Problem(ErrorCode.INVALID_INPUT, "a multipart batch needs a boundary parameter")]
        )
    settings = ctx.settings
    try:
        reader = await request.multipart()
    except ValueError as exc:  # aiohttp's word for a boundary RFC 2046 does not allow
        raise _invalid(f"the multipart boundary is not valid: {exc}") from None
    async with asyncio.timeout(settings.body_timeout_s):
        parts = await read_parts(reader, settings.max_request_bytes, settings.max_items)
    items = parse_parts(parts, request.host, settings.max_json_depth)
    preferred = options_from_prefer(request.headers.get("Prefer"), None)
    options = with_defaults(settings.door_options.get("multipart", {}), preferred)
    outcome = await run_batch(items, options, ctx)
    subtype = request.content_type.split("/")[1]
    return web.Response(
        body=write_responses(outcome, parts, subtype), headers=_answer_headers(outcome)
    )


async def _read_job(request: web.Request) -> web.Response:
    """GET /batch/jobs/{id}: the job's state and the results so far, to its submitter."""
    job = await request.app[JOBS].get(request.match_info["id"], _client(request))
    return web.json_response(job_json(job), headers={"Cache-Control": NO_STORE})


async def _cancel_job(request: web.Request) -> web.Response:
    """DELETE /batch/jobs/{id}: stop the job; what finished stays readable."""
    job = await request.app[JOBS].cancel(request.match_info["id"], _client(request))
    return web.json_response(job_json(job), headers={"Cache-Control": NO_STORE})


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
    first = await anext(events)  # BatchRejected here reaches _front_door, nothing sent yet
    response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": NO_STORE})
    await response.prepare(request)
    await response.write(stream_line(first))
    async for event in events:
        await response.write(stream_line(event))
    await response.write_eof()
    return response


def _answer_headers(outcome: BatchOutcome) -> dict[str, str]:
    headers = {"Cache-Control": NO_STORE}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return headers


def _rejected(request: web.Request, exc: BatchRejected, status: int | None = None) -> web.Response:
    """A refused request, in the shape of the door it came through; nothing ran."""
    response = _door_answer(
        request,
        status or rejection_status(exc),
        rejection_error(exc).formatted,
        rejection_json(exc),
    )
    if exc.retry_after_s is not None:
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


@web.middleware
async def _front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What every request passes, before and after its door: its Content-Type checked, its
    context made and its client admitted (before the body is read), its body read within the
    deadline; and the last word on errors the doors did not answer themselves: a refused
    request in its door's shape, a body over the size limit or too slow to arrive, and a bug,
    which gets INTERNAL_ERROR with an id that finds its traceback in the log, never the
    traceback."""
    settings = request.app[SETTINGS]
    try:
        _check_content_type(request)
        if request.path in _BATCH_DOORS:
            # One context per request, for either door; a client already at its limit is
            # refused here, before its body is read: refusing must cost less than admitting.
            request[CONTEXT] = ctx = batch_context(request)
            current_request_id.set(ctx.request_id)  # for every log line of this request
            await admit_early(ctx)
        if request.can_read_body and request.content_type not in MULTIPART_TYPES:
            # Read here, within the body deadline; the doors then read it from aiohttp's cache.
            # A multipart door reads its parts as they come, under the same deadline.
            async with asyncio.timeout(settings.body_timeout_s):
                await request.read()
        return await handler(request)
    except BatchRejected as exc:
        return _rejected(request, exc)
    except web.HTTPRequestEntityTooLarge:
        return _in_door_shape(
            request,
            413,
            ErrorCode.REQUEST_TOO_LARGE,
            f"the request body is over the {settings.max_request_bytes}-byte limit "
            "(max_request_bytes)",
        )
    except TimeoutError:
        response = _in_door_shape(
            request,
            408,
            ErrorCode.REQUEST_TIMEOUT,
            f"the request body did not arrive within {settings.body_timeout_s} s (body_timeout_s)",
        )
        response.force_close()
        return response
    except web.HTTPException:
        raise
    except Exception as exc:
        masked = mask_internal(exc, f"on {request.method} {request.path}")
        return _in_door_shape(
            request, 500, ErrorCode.INTERNAL_ERROR, masked.message, errorId=masked.error_id
        )


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
        raise _invalid("the Content-Type header is malformed") from None


def _in_door_shape(
    request: web.Request, status: int, code: ErrorCode, message: str, **extra: Any
) -> web.Response:
    graphql = {"message": message, "extensions": {"code": code.value, **extra}}
    rest = {"error": {"code": code.value, "message": message, **extra}}
    return _door_answer(request, status, graphql, rest)


def _door_answer(
    request: web.Request, status: int, graphql_error: Any, rest_body: dict[str, Any]
) -> web.Response:
    """An error answer in the shape of the door the request came through, never cached."""
    body = {"errors": [graphql_error]} if request.path == "/graphql" else rest_body
    return web.json_response(body, status=status, headers={"Cache-Control": NO_STORE})


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _draining(app: web.Application) -> None:
    app[READINESS].draining = True


_PROBE_TIMEOUT_MS = 2_000


async def _readyz(request: web.Request) -> web.Response:
    """200 when this process should get traffic: not draining, its store answers, and each
    upstream with a `probe_path` answers it below 500; else 503, saying which failed."""
    readiness, settings = request.app[READINESS], request.app[SETTINGS]
    probed = [u for u in settings.upstreams.values() if u.probe_path]
    checks = await asyncio.gather(
        _check_store(readiness),
        *(_probe(request.app[CLIENT], u.name, u.probe_path) for u in probed),
    )
    upstreams: dict[str, str] = dict.fromkeys(settings.upstreams, "not probed")
    upstreams.update(zip((u.name for u in probed), checks[1:], strict=True))
    ready = not readiness.draining and all(c == "ok" for c in checks)
    body = {
        "status": "ready" if ready else "not ready",
        "draining": readiness.draining,
        "store": checks[0],
        "upstreams": upstreams,
    }
    return web.json_response(body, status=200 if ready else 503)


async def _check_store(readiness: Readiness) -> str:
    if readiness.store is None:
        return "ok"  # in memory
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_MS / 1000):
            await readiness.store()
    except Exception as exc:  # any failure to answer is "not ready", said in its own words
        return f"failing: {type(exc).__name__}: {exc}"
    return "ok"


async def _probe(client: UpstreamClient, upstream: str, path: str | None) -> str:
    call = UpstreamCall(upstream, "GET", path or "/", timeout_ms=_PROBE_TIMEOUT_MS)
    try:
        response = await client.send(call)
    except UpstreamError as exc:
        return f"failing: {exc.code.value}: {exc.message}"
    return "ok" if response.status < 500 else f"failing: GET {path} answered {response.status}"


async def _metrics(request: web.Request) -> web.Response:
    """Prometheus's text format; every worker's values under `serve --workers`."""
    response = web.Response(body=metrics.exposition())
    response.headers["Content-Type"] = metrics.CONTENT_TYPE
    return response


def _redirect_to(target: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound(target)

    return handler
