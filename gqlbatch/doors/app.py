"""The aiohttp application's assembly: its routes (each door's handlers live with its codec:
`rest.py`, `multipart.py`, `schema.py`), the front-door middleware every request passes, the
state the requests share, the upstream client's lifecycle, and the operations routes
(`/healthz`, `/readyz`, `/metrics`). `listener.py` serves it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from gqlbatch.core.config import Settings
from gqlbatch.core.errors import (
    BatchRejected,
    ConfigError,
    ErrorCode,
    Problem,
    mask_internal,
)
from gqlbatch.core.identity import Identifier
from gqlbatch.core.request_scope import current_request_id
from gqlbatch.doors.caching import install_compression
from gqlbatch.doors.cors import Standing, install_cors, standing
from gqlbatch.doors.documents import load_contracts
from gqlbatch.doors.graphiql import add_graphiql_assets
from gqlbatch.doors.http import (
    CLIENT,
    CONTEXT,
    CONTRACTS,
    IDEMPOTENCY,
    IDENTIFIER,
    INFLIGHT,
    JOBS,
    OFFLOAD,
    OUTSTANDING,
    PLANS,
    SETTINGS,
    batch_context,
    door_answer,
    in_door_shape,
    invalid,
    job_context,
)
from gqlbatch.doors.multipart import MULTIPART_TYPES, multipart_batch
from gqlbatch.doors.playground import add_playground
from gqlbatch.doors.readiness import READINESS, Readiness, draining, readyz
from gqlbatch.doors.rest import (
    cancel_job,
    json_batch,
    read_job,
    rejection_json,
    rejection_status,
)
from gqlbatch.doors.schema import GraphQLDoor, rejection
from gqlbatch.doors.slow_readers import SLOW_READERS, SlowReaders, cutting_slow_readers
from gqlbatch.doors.websockets import SOCKETS, Sockets, closing_idle
from gqlbatch.execution import metrics
from gqlbatch.execution.engine import (
    admit_early,
)
from gqlbatch.execution.idempotency import IdempotencyStore, MemoryIdempotencyStore
from gqlbatch.execution.job_store import JobStore, MemoryJobStore
from gqlbatch.execution.jobs import Jobs
from gqlbatch.execution.limits import MemoryPlaces, OutstandingCalls, Places
from gqlbatch.execution.offload import OffLoop
from gqlbatch.execution.persisted import (
    MemoryPersistedQueries,
    PersistedQueries,
    PersistedQueryStore,
    trusted_documents,
)
from gqlbatch.execution.plans import PlanCache
from gqlbatch.upstreams.client import UpstreamClient
from gqlbatch.upstreams.inflight import SharedInflight

if TYPE_CHECKING:  # saq is imported only when the shared store is configured
    from gqlbatch.execution.job_queue import SaqQueue

__all__ = ["CLIENT", "SETTINGS", "create_app"]


REST_DOORS = ("/batch", "/$batch")
"""The REST door's paths: ours, and OData's and Microsoft Graph's."""
_BATCH_DOORS = frozenset({*REST_DOORS, "/graphql"})
GRAPHQL: Final = web.AppKey("graphql", GraphQLDoor)


def create_app(
    settings: Settings,
    *,
    landing_query: str | None = None,
    playground_example: str = "[]",
    processes: int = 1,
) -> web.Application:
    """The gqlbatch server for *settings*, one of *processes* that serve them alike (`serve
    --workers`). `/playground` opens with *playground_example* (a batch as JSON) in its
    editor.

    With *landing_query*, `GET /` opens the playground, and `GET /graphiql` opens GraphiQL
    with that query filled in (the demo).
    """
    app = web.Application(client_max_size=settings.max_request_bytes, middlewares=[_front_door])
    app[SETTINGS] = settings
    install_compression(app)
    install_cors(app, settings)  # outermost: a preflight is answered before anything else
    app[READINESS] = Readiness()
    app[CONTRACTS] = {}
    if any(u.openapi for u in settings.upstreams.values()):
        app.on_startup.append(_load_contracts)
    app.on_shutdown.append(draining)
    shared = _shared_state(app, settings)
    app[IDEMPOTENCY] = shared.idempotency
    queue = shared.queue
    app[OFFLOAD] = offload = OffLoop()
    app[JOBS] = jobs = Jobs(
        shared.jobs,
        ttl_s=settings.jobs_ttl_s,
        max_jobs=settings.jobs_max,
        attempts=settings.jobs_attempts,
        lease_s=settings.jobs_heartbeat_s,
        queue=queue,
        offload=offload,
        max_per_client=settings.jobs_max_per_client,
        max_bytes_per_client=settings.jobs_max_bytes_per_client,
        max_followers=settings.jobs_max_followers,
        max_followers_per_client=settings.jobs_max_followers_per_client,
        retry_after_s=settings.retry_after_s,
        refusal=_no_shared_jobs(processes) if shared.queue is None else None,
        max_running=settings.jobs_max_running,
        max_running_per_client=settings.jobs_max_running_per_client,
    )
    app.on_cleanup.append(lambda _app: jobs.close())
    app.on_cleanup.append(lambda _app: _closed(offload))
    app[PLANS] = PlanCache()
    app[OUTSTANDING] = OutstandingCalls(
        per_client=settings.max_outstanding_per_client,
        per_address=settings.max_outstanding_per_address,
        total=settings.max_outstanding_total,
        retry_after_s=settings.retry_after_s,
        places=shared.places,
    )
    app[IDENTIFIER] = Identifier(settings.forwarded_header_names(), settings.trusted_proxies)
    app[SOCKETS] = Sockets(
        per_client=settings.ws_max_per_client,
        per_address=settings.ws_max_per_address,
        idle_s=settings.ws_idle_timeout_s,
        retry_after_s=settings.retry_after_s,
    )
    app.cleanup_ctx.append(closing_idle)
    app[SLOW_READERS] = SlowReaders(settings.write_timeout_s)
    app.cleanup_ctx.append(cutting_slow_readers)
    app.cleanup_ctx.append(_client_ctx)
    if queue is not None and settings.jobs_in_process:
        app.cleanup_ctx.append(_job_worker(queue))  # stopped first: cleanups run in reverse
    persisted = PersistedQueries(
        shared.persisted if settings.persisted_queries else None, _trusted(settings)
    )
    app[GRAPHQL] = door = GraphQLDoor(settings, persisted)
    app.router.add_route("*", "/graphql", door.handle, expect_handler=_expect)
    for path in REST_DOORS:
        app.router.add_post(path, _rest_batch, expect_handler=_expect)
        # The Aspose SDK PUTs its multipart batches.
        app.router.add_put(path, _rest_batch, expect_handler=_expect)
        app.router.add_get(path + "/jobs/{id}", read_job)
        app.router.add_delete(path + "/jobs/{id}", cancel_job)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/readyz", readyz)
    add_playground(app, playground_example)
    if settings.graphiql and settings.graphiql_assets_dir:
        add_graphiql_assets(app, settings.graphiql_assets_dir)
    if landing_query is not None:
        app.router.add_get("/", _redirect_to("/playground"))
        app.router.add_get("/graphiql", _redirect_to("/graphql?q=" + quote(landing_query, safe="")))
    return app


@dataclasses.dataclass(frozen=True, slots=True)
class SharedState:
    """What the requests of every process configured with the same store share."""

    places: Places
    idempotency: IdempotencyStore
    jobs: JobStore
    persisted: PersistedQueryStore
    queue: SaqQueue | None
    """Where jobs wait for any worker; None runs each job where it was accepted."""


def _shared_state(app: web.Application, settings: Settings) -> SharedState:
    """Where outstanding calls, idempotency records, jobs and persisted queries live, and where
    jobs wait: this process's memory (jobs run where they were accepted), or the Redis store
    at `store_url`, which every process configured with it shares (jobs wait on a queue for
    any worker)."""
    if settings.store_url is None:
        return SharedState(
            MemoryPlaces(),
            MemoryIdempotencyStore(
                settings.idempotency_ttl_s,
                settings.idempotency_max_records,
                max_bytes=settings.idempotency_max_bytes,
                max_record_bytes=settings.idempotency_max_record_bytes,
            ),
            MemoryJobStore(
                ttl_s=settings.jobs_ttl_s,
                max_jobs=settings.jobs_max,
                max_per_client=settings.jobs_max_per_client,
                max_bytes_per_client=settings.jobs_max_bytes_per_client,
            ),
            MemoryPersistedQueries(
                settings.persisted_queries_max_bytes,
                settings.persisted_queries_max_bytes_per_client,
            ),
            None,
        )
    try:  # redis-py and saq are the [redis] extra
        from gqlbatch.execution import job_queue, redis_jobs, redis_store
    except ImportError as exc:
        raise ConfigError(
            f"store.url needs redis-py ({exc.name} is not installed): pip install 'gqlbatch[redis]'"
        ) from None
    redis = redis_store.connect(settings.store_url)
    # A lease outlives any call of a batch (its deadline, then a compensation's timeout).
    lease_ms = settings.batch_timeout_ms + _LEASE_MARGIN_MS
    queue = job_queue.SaqQueue(
        redis_store.connect_blocking(settings.store_url),
        heartbeat_s=settings.jobs_heartbeat_s,
        timeout_s=lease_ms // 1000,
        at_once=settings.jobs_max_running,
    )

    async def close(_app: web.Application) -> AsyncIterator[None]:
        yield
        await queue.close()
        await redis.aclose()

    app.cleanup_ctx.append(close)
    app[READINESS].store = redis.ping
    return SharedState(
        redis_store.RedisPlaces(redis, lease_ms=lease_ms),
        redis_store.RedisIdempotencyStore(
            redis,
            ttl_s=settings.idempotency_ttl_s,
            running_lease_ms=lease_ms,
            max_record_bytes=settings.idempotency_max_record_bytes,
        ),
        redis_jobs.RedisJobStore(redis, ttl_s=settings.jobs_ttl_s, max_jobs=settings.jobs_max),
        redis_store.RedisPersistedQueries(
            redis,
            ttl_s=settings.persisted_queries_ttl_s,
            max_bytes=settings.persisted_queries_max_bytes,
            max_bytes_per_client=settings.persisted_queries_max_bytes_per_client,
        ),
        queue,
    )


def _trusted(settings: Settings) -> dict[str, str] | None:
    """The trusted documents' manifest, read once at start-up.

    Raises:
        ConfigError: the file cannot be read, or is not a manifest.
    """
    if settings.trusted_documents is None:
        return None
    path = settings.trusted_documents
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"persisted_queries.trusted_documents: {exc}") from None
    return trusted_documents(text, f"persisted_queries.trusted_documents {path}")


def _job_worker(queue: SaqQueue) -> Callable[[web.Application], AsyncIterator[None]]:
    """Run queued jobs in this process while it serves (`gqlbatch worker`: only that)."""

    async def worker(app: web.Application) -> AsyncIterator[None]:
        jobs = app[JOBS]

        async def run(job_id: str) -> None:
            await jobs.run(job_id, lambda job: job_context(app, job))

        task = asyncio.create_task(queue.work(run), name="gqlbatch:job-worker")
        yield
        task.cancel()
        await asyncio.wait([task])

    return worker


_LEASE_MARGIN_MS = 60_000


def _no_shared_jobs(processes: int) -> str | None:
    """Why several processes without a shared store take no jobs: a job is kept by the
    process that took it, and a read that reaches another answers 404 (issue 24: 17 of 30)."""
    if processes == 1:
        return None
    return (
        f"async batches need a shared store when {processes} processes serve: a job would be "
        "readable only through the one that took it. Set [store] url (docs/deploying.md), "
        "or send the batch without Prefer: respond-async"
    )


async def _closed(offload: OffLoop) -> None:
    offload.close()


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
        return await multipart_batch(request, ctx)
    if request.method == "PUT":
        return in_door_shape(
            request,
            405,
            ErrorCode.METHOD_NOT_ALLOWED,
            f"PUT {request.path} takes a multipart batch (as the Aspose SDK sends it); "
            "POST a JSON batch",
        )
    if request.content_type == "application/json":
        return await json_batch(request, ctx)
    message = (
        f"POST {request.path} takes application/json, multipart/mixed, multipart/batching or "
        f"multipart/form-data, not {request.content_type!r}"
    )
    problem = Problem(ErrorCode.INVALID_INPUT, message, field="Content-Type")
    return _rejected(request, BatchRejected([problem]), status=415)


def _rejected(request: web.Request, exc: BatchRejected, status: int | None = None) -> web.Response:
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


@web.middleware
async def _front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
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
    except Exception as exc:
        masked = mask_internal(exc, f"on {request.method} {request.path}")
        return in_door_shape(
            request, 500, ErrorCode.INTERNAL_ERROR, masked.message, errorId=masked.error_id
        )


_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


async def _expect(request: web.Request) -> web.StreamResponse | None:
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


async def _load_contracts(app: web.Application) -> None:
    """Read each upstream's OpenAPI document once, before the server takes requests.

    Raises:
        ConfigError: a document cannot be read, or is not valid OpenAPI: start-up stops.
    """
    contracts = app[CONTRACTS]
    contracts.update(await load_contracts(app[SETTINGS]))
    app[GRAPHQL].type_answers(contracts)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _metrics(request: web.Request) -> web.Response:
    """Prometheus's text format; every worker's values under `serve --workers`."""
    response = web.Response(body=metrics.exposition())
    response.headers["Content-Type"] = metrics.CONTENT_TYPE
    return response


def _redirect_to(target: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound(target)

    return handler
