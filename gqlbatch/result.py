"""Per-item outcomes and batch statistics: the values both doors render.

Pure. An item's failure is data here, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gqlbatch.call import BodyEncoding
from gqlbatch.errors import ErrorCode
from gqlbatch.types import JSON, Headers, RequestId

__all__ = ["BatchOutcome", "BatchStats", "ErrorInfo", "ItemResult", "State"]


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


@dataclass(frozen=True, slots=True, kw_only=True)
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
    failed_dependency: RequestId | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchStats:
    """What a batch cost, next to its lower bound.

    Attributes:
        sub_requests: items in the batch.
        upstream_calls: calls actually sent upstream.
        calls_saved: calls that coalescing made unnecessary (sub-requests that ran, minus calls).
        wall_ms: time from the first item starting to the last finishing.
        critical_path_ms: the longest chain of dependent items, by their own durations; the
            wall time a perfect scheduler would need.
    """

    sub_requests: int
    upstream_calls: int
    calls_saved: int
    wall_ms: float
    critical_path_ms: float


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """Every item's result in the client's order, and the batch's statistics."""

    results: tuple[ItemResult, ...]
    stats: BatchStats

    def by_id(self, request_id: RequestId) -> ItemResult | None:
        """The result of the item with this requestId, if there is one."""
        return next((r for r in self.results if r.request_id == request_id), None)
