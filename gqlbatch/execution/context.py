"""What running one batch needs to know about its caller and its server: each door builds a
`BatchContext` per request, and the engine, the planner and jobs read it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import field
from typing import TYPE_CHECKING

from gqlbatch.core.budget import RequestBudget
from gqlbatch.core.config import Settings
from gqlbatch.core.openapi import Contract
from gqlbatch.core.result import BatchOutcome, ItemResult
from gqlbatch.core.types import Headers, frozen_for_type_checkers
from gqlbatch.core.wire import Send
from gqlbatch.execution.idempotency import IdempotencyStore
from gqlbatch.execution.limits import OutstandingCalls
from gqlbatch.execution.offload import Offload
from gqlbatch.execution.plans import PlanCache

if TYPE_CHECKING:  # jobs run batches through the engine: for the annotation only
    from gqlbatch.execution.jobs import Jobs

__all__ = ["BatchContext", "OnResult"]

OnResult = Callable[[ItemResult], None]
"""Told an item's result the moment it is final."""


@frozen_for_type_checkers()
class BatchContext:
    """Everything about the caller and the server that running a batch needs; each door
    builds one per request."""

    settings: Settings
    send: Send
    forwarded: Mapping[str, Headers] = field(default_factory=dict)
    """The allow-listed incoming headers, per upstream."""
    client: str = "anonymous"
    """Who the batch counts against for the outstanding-call limits and idempotency keys:
    a digest of the forwarded credentials, or the address without any."""
    address: str = "addr:unknown"
    """The client's address, which has an outstanding-call limit of its own."""
    budget: RequestBudget | None = None
    """What the whole HTTP request may spend, shared by its batches; None gives each batch
    a budget of its own (for callers outside an HTTP request)."""
    outstanding: OutstandingCalls | None = None
    idempotency: IdempotencyStore | None = None
    idempotency_key: str | None = None
    """The request's Idempotency-Key header, if it sent one."""
    jobs: Jobs | None = None
    """Where this server's async batches are submitted, read and cancelled."""
    request_id: str = ""
    """The request's X-Request-Id, or one made up for it; it names the batch's log line."""
    contracts: Mapping[str, Contract] = field(default_factory=dict)
    """The upstreams' OpenAPI documents, by upstream, that batches are checked against."""
    seen: Callable[[BatchOutcome], None] | None = None
    """Told each of the request's batches once it has run, for a door that derives its
    answer's HTTP caching headers from them (`Query.batch` over GET)."""
    plans: PlanCache | None = None
    """The server's plans of batches sent again and again; None plans every batch anew."""
    finished: Mapping[str, BatchOutcome] | None = None
    """Batches of this GraphQL operation that have already run, by response key: the
    compiled path hands them over when graphql-core is to write their answers instead, so
    that no batch runs twice."""
    offload: Offload | None = None
    """Where checks too large for the event loop run (`execution.offload`); None runs them
    where they are asked for."""
