"""What the HTTP doors share: the application's keys, each request's `BatchContext`, strict
JSON bodies, and error answers in the shape of the door a request came through.
"""

from __future__ import annotations

import os
from typing import Any, Final, TypeVar

from aiohttp import web

from gqlbatch.core import strict_json
from gqlbatch.core.call import forwarded_headers
from gqlbatch.core.config import Settings
from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem
from gqlbatch.core.openapi import Contract
from gqlbatch.core.types import Headers
from gqlbatch.doors.cors import Standing, standing, without_ambient_credentials
from gqlbatch.doors.http_cache import NO_STORE
from gqlbatch.doors.identity import Identifier
from gqlbatch.execution.context import BatchContext
from gqlbatch.execution.idempotency import IdempotencyStore
from gqlbatch.execution.job_store import Job
from gqlbatch.execution.jobs import Jobs
from gqlbatch.execution.limits import OutstandingCalls
from gqlbatch.execution.offload import OffLoop
from gqlbatch.execution.planning import request_budget
from gqlbatch.execution.plans import PlanCache
from gqlbatch.upstreams.client import UpstreamClient
from gqlbatch.upstreams.inflight import SharedInflight

__all__ = [
    "CLIENT",
    "CONTEXT",
    "CONTRACTS",
    "IDEMPOTENCY",
    "IDENTIFIER",
    "INFLIGHT",
    "JOBS",
    "NO_STORE",
    "OFFLOAD",
    "OUTSTANDING",
    "PLANS",
    "SETTINGS",
    "batch_context",
    "door_answer",
    "in_door_shape",
    "invalid",
    "job_context",
    "read_json",
]

"""Every answer's Cache-Control until HTTP caching is designed: results carry user data."""


SETTINGS: Final = web.AppKey("settings", Settings)


CLIENT: Final = web.AppKey("client", UpstreamClient)


INFLIGHT: Final = web.AppKey("inflight", SharedInflight)


OUTSTANDING: Final = web.AppKey("outstanding", OutstandingCalls)


IDENTIFIER: Final = web.AppKey("identifier", Identifier)


_Context = TypeVar("_Context", bound=BatchContext)

CONTEXT: Final = web.RequestKey("context", BatchContext)
"""The request's BatchContext, made once by the `front_door` middleware for both doors."""


IDEMPOTENCY: Final = web.AppKey("idempotency", IdempotencyStore)


JOBS: Final = web.AppKey("jobs", Jobs)
PLANS: Final = web.AppKey("plans", PlanCache)
CONTRACTS: Final = web.AppKey("contracts", dict[str, Contract])
"""The upstreams' OpenAPI documents, read at start-up."""
OFFLOAD: Final = web.AppKey("offload", OffLoop)
"""Where checks too large for the event loop run."""


def _contracts(app: web.Application) -> dict[str, Contract]:
    return app[CONTRACTS]


def batch_context(request: web.Request, kind: type[_Context], **door: Any) -> _Context:
    """The engine's context for one incoming request, whichever door it came through: a
    *kind* of it that keeps a door's own state (*door*), for a door that needs one.

    Raises:
        BatchRejected: a credential header was sent twice.
    """
    settings = request.app[SETTINGS]
    incoming = list(request.headers.items())
    if standing(request, settings.cors) is Standing.ANONYMOUS:  # a page allowed by "*"
        incoming = without_ambient_credentials(incoming, websocket="Upgrade" in request.headers)
    identity = request.app[IDENTIFIER].identify(incoming, request.remote)
    return kind(
        settings=settings,
        send=request.app[INFLIGHT].sender,
        forwarded=_forwarded(incoming, settings),
        client=identity.client,
        address=identity.address,
        budget=request_budget(settings),
        outstanding=request.app[OUTSTANDING],
        idempotency=request.app[IDEMPOTENCY],
        idempotency_key=request.headers.get("Idempotency-Key"),
        # 32 random hex digits, as uuid4().hex writes them, at a seventh of its cost.
        request_id=request.headers.get("X-Request-Id") or os.urandom(16).hex(),
        contracts=_contracts(request.app),
        plans=request.app[PLANS],
        offload=request.app[OFFLOAD],
        **door,
    )


def job_context(app: web.Application, job: Job) -> BatchContext:
    """The engine's context for a queued job this process runs: the one its request had,
    from what the job kept of it, with a budget of its own: the calls it reserved."""
    assert job.spec is not None, "a job is run only while it keeps its spec"
    settings = app[SETTINGS]
    return BatchContext(
        settings=settings,
        send=app[INFLIGHT].sender,
        forwarded=job.spec.forwarded,
        client=job.client,
        address=job.spec.address,
        budget=request_budget(settings, job.spec.calls),
        outstanding=app[OUTSTANDING],
        idempotency=app[IDEMPOTENCY],
        idempotency_key=job.spec.idempotency_key,
        request_id=job.spec.request_id,
        contracts=_contracts(app),
        plans=app[PLANS],
        offload=app[OFFLOAD],
    )


def _forwarded(incoming: list[tuple[str, str]], settings: Settings) -> dict[str, Headers]:
    # Upstreams mostly share the server's allow-list: each distinct list is read once.
    by_list: dict[tuple[str, ...], Headers] = {}
    forwarded: dict[str, Headers] = {}
    for name, upstream in settings.upstreams.items():
        allow = upstream.forward_headers or settings.forward_headers
        headers = by_list.get(allow)
        if headers is None:
            headers = by_list[allow] = forwarded_headers(incoming, allow)
        forwarded[name] = headers
    return forwarded


def read_json(data: str | bytes, max_depth: int) -> object:
    try:
        return strict_json.loads(data, max_depth=max_depth)
    except strict_json.JSONRefused as exc:
        raise invalid(f"the body is not JSON gqlbatch accepts: {exc}") from None


def invalid(message: str) -> BatchRejected:
    return BatchRejected([Problem(ErrorCode.INVALID_INPUT, message)])


def in_door_shape(
    request: web.Request, status: int, code: ErrorCode, message: str, **extra: Any
) -> web.Response:
    graphql = {"message": message, "extensions": {"code": code.value, **extra}}
    rest = {"error": {"code": code.value, "message": message, **extra}}
    return door_answer(request, status, graphql, rest)


def door_answer(
    request: web.Request, status: int, graphql_error: Any, rest_body: dict[str, Any]
) -> web.Response:
    """An error answer in the shape of the door the request came through, never cached."""
    body = {"errors": [graphql_error]} if request.path == "/graphql" else rest_body
    return web.json_response(body, status=status, headers={"Cache-Control": NO_STORE})
