"""What running one batch needs to know about its caller and its server: each door builds a
`BatchContext` per request, and the engine, the planner and jobs read it. A door's own
state is the door's: the GraphQL door's context extends this one (`doors.graphql.context`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import field

from gqlbatch.core.budget import RequestBudget
from gqlbatch.core.config import Settings
from gqlbatch.core.openapi import Contract
from gqlbatch.core.result import ItemResult
from gqlbatch.core.types import Headers, frozen_for_type_checkers
from gqlbatch.core.wire import Send
from gqlbatch.execution.idempotency import IdempotencyStore
from gqlbatch.execution.limits import OutstandingCalls
from gqlbatch.execution.offload import Offload
from gqlbatch.execution.plans import PlanCache

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
    request_id: str = ""
    """The request's X-Request-Id, or one made up for it; it names the batch's log line."""
    contracts: Mapping[str, Contract] = field(default_factory=dict)
    """The upstreams' OpenAPI documents, by upstream, that batches are checked against."""
    plans: PlanCache | None = None
    """The server's plans of batches sent again and again; None plans every batch anew."""
    offload: Offload | None = None
    """Where checks too large for the event loop run (`execution.offload`); None runs them
    where they are asked for."""
