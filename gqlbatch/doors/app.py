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

from aiohttp import web
from aiohttp.typedefs import Handler

from gqlbatch.core.config import Settings
from gqlbatch.core.errors import (
    BatchRejected,
    ConfigError,
    ErrorCode,
    Problem,
)
from gqlbatch.doors.batch_update import OPERATIONS_DOOR, batch_update
from gqlbatch.doors.caching import install_compression
from gqlbatch.doors.cors import install_cors
from gqlbatch.doors.documents import load_contracts
from gqlbatch.doors.front_door import REST_DOORS, expect, front_door, rejected
from gqlbatch.doors.graphql.graphiql import add_graphiql_assets
from gqlbatch.doors.graphql.persisted import (
    MemoryPersistedQueries,
    PersistedQueries,
    PersistedQueryStore,
    trusted_documents,
)
from gqlbatch.doors.graphql.view import GraphQLDoor
from gqlbatch.doors.graphql.websockets import SOCKETS, Sockets, closing_idle
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
    in_door_shape,
    job_context,
)
from gqlbatch.doors.identity import Identifier
from gqlbatch.doors.multipart import MULTIPART_TYPES, multipart_batch
from gqlbatch.doors.playground import add_playground
from gqlbatch.doors.readiness import READINESS, Readiness, readyz, watch_answers
from gqlbatch.doors.rest import (
    cancel_job,
    json_batch,
    read_job,
)
from gqlbatch.doors.slow_readers import SLOW_READERS, SlowReaders, cutting_slow_readers
from gqlbatch.execution import metrics
from gqlbatch.execution.idempotency import IdempotencyStore, MemoryIdempotencyStore
from gqlbatch.execution.job_store import JobStore, MemoryJobStore
from gqlbatch.execution.jobs import Jobs
from gqlbatch.execution.limits import MemoryPlaces, OutstandingCalls, Places
from gqlbatch.execution.offload import OffLoop
from gqlbatch.execution.plans import PlanCache
from gqlbatch.execution.store_faults import Later
from gqlbatch.upstreams.client import UpstreamClient
from gqlbatch.upstreams.inflight import SharedInflight

if TYPE_CHECKING:  # saq is imported only when the shared store is configured
    from gqlbatch.execution.job_queue import SaqQueue

__all__ = ["CLIENT", "SETTINGS", "create_app"]


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
    app = web.Application(
        client_max_size=settings.max_request_bytes, middlewares=[watch_answers, front_door]
    )
    app[SETTINGS] = settings
    install_compression(app)
    install_cors(app, settings)  # outermost: a preflight is answered before anything else
    app[READINESS] = Readiness()
    app[CONTRACTS] = {}
    if any(u.openapi for u in settings.upstreams.values()):
        app.on_startup.append(_load_contracts)
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
        later=shared.later,
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
    app.cleanup_ctx.append(_watching_the_loop)
    if queue is not None and settings.jobs_in_process:
        app.cleanup_ctx.append(_job_worker(queue))  # stopped first: cleanups run in reverse
    persisted = PersistedQueries(
        shared.persisted if settings.persisted_queries else None, _trusted(settings)
    )
    app[GRAPHQL] = door = GraphQLDoor(settings, persisted)
    app.router.add_route("*", "/graphql", door.handle, expect_handler=expect)
    app.router.add_get("/possible-types.json", door.possible_types)
    app.router.add_get("/graphcache-keys.json", door.cache_keys)
    for path in (*REST_DOORS, *settings.batch_paths):
        app.router.add_post(path, _rest_batch, expect_handler=expect)
        # The Aspose SDK PUTs its multipart batches.
        app.router.add_put(path, _rest_batch, expect_handler=expect)
        app.router.add_get(path + "/jobs/{id}", read_job)
        app.router.add_delete(path + "/jobs/{id}", cancel_job)
    for path in (OPERATIONS_DOOR, *settings.operations_paths):
        app.router.add_post(path, batch_update, expect_handler=expect)
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
    later: Later
    """The writes the store did not take when they were made, until it does."""


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
            Later(),
        )
    try:  # redis-py and saq are the [redis] extra
        from gqlbatch.execution import (
            job_queue,
            redis_idempotency,
            redis_jobs,
            redis_places,
            redis_store,
        )
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

    # Writes Redis could not take when they were made, made again until it does; and the
    # leases of the places this process's batches hold.
    later = Later()
    places = redis_places.RedisPlaces(redis, later=later)

    async def close(_app: web.Application) -> AsyncIterator[None]:
        yield
        await places.close()
        await later.close()
        await queue.close()
        await redis.aclose()

    app.cleanup_ctx.append(close)
    app[READINESS].store = redis.ping
    return SharedState(
        places,
        redis_idempotency.RedisIdempotencyStore(
            redis,
            ttl_s=settings.idempotency_ttl_s,
            running_lease_ms=lease_ms,
            max_record_bytes=settings.idempotency_max_record_bytes,
            later=later,
            max_records=settings.idempotency_max_records,
            max_bytes=settings.idempotency_max_bytes,
            wait_s=settings.batch_timeout_ms / 1000,
            retry_after_s=settings.retry_after_s,
        ),
        redis_jobs.RedisJobStore(
            redis,
            ttl_s=settings.jobs_ttl_s,
            max_jobs=settings.jobs_max,
            max_per_client=settings.jobs_max_per_client,
            max_bytes_per_client=settings.jobs_max_bytes_per_client,
        ),
        redis_store.RedisPersistedQueries(
            redis,
            ttl_s=settings.persisted_queries_ttl_s,
            max_bytes=settings.persisted_queries_max_bytes,
            max_bytes_per_client=settings.persisted_queries_max_bytes_per_client,
        ),
        queue,
        later,
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
        await jobs.hand_back(_HAND_BACK_S)  # the writes in flight finish first
        task.cancel()
        await asyncio.wait([task])

    return worker


_LEASE_MARGIN_MS = 60_000
_HAND_BACK_S = 10.0
"""How long a stopping process lets its jobs' calls in flight finish before it cuts them."""


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


async def _watching_the_loop(_app: web.Application) -> AsyncIterator[None]:
    """Sample the event loop's lag while the application runs (`metrics.watch_loop_lag`)."""
    watching = asyncio.create_task(metrics.watch_loop_lag(), name="gqlbatch:loop-lag")
    yield
    watching.cancel()
    await asyncio.wait([watching])


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
    return rejected(request, BatchRejected([problem]), status=415)


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
