"""Per-item outcomes and batch statistics: the values both doors render.

Pure. An item's failure is data here, never an exception.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

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
    "Route",
    "State",
    "item_from_json",
    "item_to_json",
    "outcome_from_json",
    "outcome_to_json",
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
    started_ms: float = 0.0
    """When its call began, from the batch's start: with `duration_ms`, its bar on a waterfall.
    An item that never started has the moment it was settled, and no duration."""
    attempts: int = 0
    coalesced: bool = False
    bulk_call: str | None = None
    failed_dependency: RequestId | None = None
    elements: tuple[ElementResult, ...] | None = None
    rollback: Rollback | None = None
    route: Route | None = None
    """The call that answered: its upstream, method and path (a forEach item's first call's).
    An answer's type in its upstream's OpenAPI document depends on it."""


class Route(NamedTuple):
    """Where a call went: an upstream, a method and a path below its base URL."""

    upstream: str
    method: str
    path: str


@frozen_for_type_checkers(kw_only=True)
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


@frozen_for_type_checkers()
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


# ---------------------------------------------------------------------------------------------
# A stored outcome: what a shared store keeps of an idempotent batch, as JSON.


def outcome_to_json(outcome: BatchOutcome) -> dict[str, JSON]:
    """*outcome* as a JSON value that `outcome_from_json` reads back equal."""
    return {
        "results": [item_to_json(r) for r in outcome.results],
        "stats": dataclasses.asdict(outcome.stats),
    }


def outcome_from_json(data: dict[str, Any]) -> BatchOutcome:
    """The outcome `outcome_to_json` wrote."""
    return BatchOutcome(
        tuple(item_from_json(r) for r in data["results"]), BatchStats(**data["stats"])
    )


def item_to_json(result: ItemResult) -> dict[str, JSON]:
    """One item's result as a JSON value that `item_from_json` reads back equal."""
    out: dict[str, JSON] = {f.name: getattr(result, f.name) for f in dataclasses.fields(ItemResult)}
    out["headers"] = [list(pair) for pair in result.headers]
    out["error"] = None if result.error is None else result.error.to_json()
    out["elements"] = (
        None
        if result.elements is None
        else [
            {**_fields(e), "error": None if e.error is None else e.error.to_json()}
            for e in result.elements
        ]
    )
    out["rollback"] = None if result.rollback is None else _fields(result.rollback)
    out["route"] = None if result.route is None else list(result.route)
    return out


def item_from_json(data: dict[str, Any]) -> ItemResult:
    """The result `item_to_json` wrote."""
    elements = data["elements"]
    rollback = data["rollback"]
    route = data.get("route")  # absent from a result stored before routes were kept
    return ItemResult(
        **{
            **data,
            "state": State(data["state"]),
            "headers": tuple((name, value) for name, value in data["headers"]),
            "body_encoding": BodyEncoding(data["body_encoding"]),
            "error": _error(data["error"]),
            "elements": None
            if elements is None
            else tuple(ElementResult(**{**e, "error": _error(e["error"])}) for e in elements),
            "rollback": None
            if rollback is None
            else Rollback(**{**rollback, "state": RollbackState(rollback["state"])}),
            "route": None if route is None else Route(*route),
        }
    )


def _fields(value: Any) -> dict[str, JSON]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def _error(data: dict[str, str] | None) -> ErrorInfo | None:
    return None if data is None else ErrorInfo(ErrorCode(data["code"]), data["message"])
