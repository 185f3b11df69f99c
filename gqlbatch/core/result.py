"""Per-item outcomes and batch statistics: the values both doors render.

Pure. An item's failure is data here, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gqlbatch.core.errors import ErrorCode
from gqlbatch.core.types import JSON, Headers, RequestId, frozen_for_type_checkers
from gqlbatch.core.wire import BodyEncoding

__all__ = [
    "BatchOutcome",
    "BatchStats",
    "ElementResult",
    "ErrorInfo",
    "ItemResult",
    "Rollback",
    "RollbackState",
    "State",
]


class State(StrEnum):
    """Where an item ended."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why an item did not succeed: a machine-readable code and a sentence for people."""

    code: ErrorCode
    message: str

    def to_json(self) -> dict[str, str]:
        """`{"code", "message"}`, as the REST door writes it."""
        return {"code": self.code.value, "message": self.message}


class RollbackState(StrEnum):
    """What became of a succeeded item when its atomic batch failed."""

    ROLLED_BACK = "ROLLED_BACK"
    NOT_ROLLED_BACK = "NOT_ROLLED_BACK"
    ROLLBACK_FAILED = "ROLLBACK_FAILED"
    NOT_NEEDED = "NOT_NEEDED"


@dataclass(frozen=True, slots=True)
class Rollback:
    """The compensation of one item: its state, the compensating call's status, and why."""

    state: RollbackState
    message: str
    status: int | None = None


@frozen_for_type_checkers(kw_only=True)
class ElementResult:
    """One call of a forEach item; its body is in the item's body list at the same index."""

    index: int
    status: int | None = None
    error: ErrorInfo | None = None
    coalesced: bool = False
    bulk_call: str | None = None


@frozen_for_type_checkers(kw_only=True)
class ItemResult:
    """The outcome of one item, in its slot of the client's order.

    A FAILED item keeps the upstream's status, headers and body when there was a response.
    """

    request_id: RequestId
    index: int
    state: State
    status: int | None = None
    headers: Headers = ()
    body: JSON = None
    body_encoding: BodyEncoding = BodyEncoding.EMPTY
    error: ErrorInfo | None = None
    duration_ms: float = 0.0
    attempts: int = 0
    coalesced: bool = False
    bulk_call: str | None = None
    failed_dependency: RequestId | None = None
    elements: tuple[ElementResult, ...] | None = None
    rollback: Rollback | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchStats:
    """What a batch cost, next to its lower bound.

    Attributes:
        sub_requests: items in the batch.
        calls_requested: upstream calls the items asked for (a forEach item asks one per
            element; skipped and cancelled items ask none).
        upstream_calls: calls actually sent upstream, each counted once.
        calls_saved: calls_requested minus upstream_calls; never negative.
        retries: attempts beyond each call's first; upstream saw upstream_calls + retries
            requests.
        saved_by_dedupe: reads answered by an identical read of the same batch.
        saved_by_bulk: lookups answered by a plural call, minus the plural calls made.
        wall_ms: time from the first item starting to the last finishing.
        critical_path_ms: the longest chain of dependent items, by their own durations; the
            wall time a perfect scheduler would need.
        response_bytes: upstream body bytes the batch read (max_batch_response_bytes).
    """

    sub_requests: int
    calls_requested: int
    upstream_calls: int
    calls_saved: int
    saved_by_dedupe: int
    saved_by_bulk: int
    wall_ms: float
    critical_path_ms: float
    response_bytes: int = 0
    retries: int = 0


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """Every item's result in the client's order, and the batch's statistics."""

    results: tuple[ItemResult, ...]
    stats: BatchStats
    replayed: bool = False
    """True when this is the stored outcome of an earlier batch with the same Idempotency-Key."""

    @property
    def rolled_back(self) -> bool:
        """True when an atomic batch or atomicity group failed and its succeeded items were
        compensated."""
        return any(r.rollback is not None for r in self.results)

    def by_id(self, request_id: RequestId) -> ItemResult | None:
        """The result of the item with this requestId, if there is one."""
        return next((r for r in self.results if r.request_id == request_id), None)
