"""An item's result made from what happened to it: an upstream's answer (failed from 400 on),
a forEach item's elements (200, or 207 when one failed), a failure, a skip, an item never run.
Pure; the executor calls these as its items settle.
"""

from __future__ import annotations

from gqlbatch.core.errors import ErrorCode, ItemError, UpstreamError, mask_internal
from gqlbatch.core.plan import PlannedItem
from gqlbatch.core.result import ElementResult, ErrorInfo, ItemResult, Route, State
from gqlbatch.core.types import JSON
from gqlbatch.core.wire import BodyEncoding, Fetched, UpstreamCall

__all__ = [
    "ElementOutcome",
    "element_error",
    "failed",
    "fanned_out",
    "from_response",
    "internal_error",
    "not_run",
    "skipped",
    "status_error",
]


ElementOutcome = tuple[ElementResult, JSON, Route | None]
"""An element's result, its body, and the route its call took (None when it was not sent)."""


def element_error(index: int, exc: ItemError) -> ElementOutcome:
    return ElementResult(index=index, error=ErrorInfo(exc.code, exc.message)), None, None


def fanned_out(
    item: PlannedItem,
    outcomes: list[ElementOutcome],
    duration_ms: float,
    started_ms: float,
) -> ItemResult:
    # The item succeeds with 200 when every element did, and with 207 Multi-Status otherwise;
    # `elements` says which, and the bodies stay in order in `body`. Its route is its first
    # call's: the elements differ only in the values put in the same path template.
    elements: list[ElementResult] = []
    bodies: list[JSON] = []
    first_route: Route | None = None
    for element, body, route in outcomes:  # one pass: this runs once per forEach item
        elements.append(element)
        bodies.append(body)
        first_route = first_route or route
    all_ok = all([e.error is None for e in elements])
    return ItemResult(
        request_id=item.request_id,
        index=item.index,
        state=State.SUCCEEDED,
        status=200 if all_ok else 207,
        body=bodies,
        body_encoding=BodyEncoding.JSON,
        duration_ms=duration_ms,
        started_ms=started_ms,
        attempts=len(elements),
        elements=tuple(elements),
        route=first_route,
    )


def status_error(call: UpstreamCall, fetched: Fetched) -> ErrorInfo:
    message = f"{call.method} {call.path} answered {fetched.response.status}"
    if fetched.bulk_call:
        message += f" (merged into {fetched.bulk_call})"
    return ErrorInfo(ErrorCode.UPSTREAM_STATUS, message)


def from_response(
    item: PlannedItem, call: UpstreamCall, fetched: Fetched, duration_ms: float, started_ms: float
) -> ItemResult:
    response = fetched.response
    failed = response.status >= 400
    return ItemResult(
        request_id=item.request_id,
        index=item.index,
        state=State.FAILED if failed else State.SUCCEEDED,
        status=response.status,
        headers=response.headers,
        body=response.body,
        body_encoding=response.body_encoding,
        error=status_error(call, fetched) if failed else None,
        duration_ms=duration_ms,
        started_ms=started_ms,
        attempts=fetched.response.attempts,
        coalesced=fetched.coalesced,
        bulk_call=fetched.bulk_call,
        route=Route(call.upstream, call.method, call.path),
    )


def failed(item: PlannedItem, exc: ItemError, duration_ms: float, started_ms: float) -> ItemResult:
    return ItemResult(
        request_id=item.request_id,
        index=item.index,
        state=State.FAILED,
        error=ErrorInfo(exc.code, exc.message),
        duration_ms=duration_ms,
        started_ms=started_ms,
        attempts=exc.attempts if isinstance(exc, UpstreamError) else 0,
    )


def internal_error(item: PlannedItem, exc: Exception) -> ItemResult:
    masked = mask_internal(exc, f"in item {item.request_id!r}")
    return not_run(item, State.FAILED, ErrorCode.INTERNAL_ERROR, masked.message)


def skipped(item: PlannedItem, dep: ItemResult) -> ItemResult:
    cause = f"dependency '{dep.request_id}' {dep.state.value.lower()}"
    if dep.error is not None:
        cause += f" ({dep.error.code}: {dep.error.message})"
    return ItemResult(
        request_id=item.request_id,
        index=item.index,
        state=State.SKIPPED,
        error=ErrorInfo(ErrorCode.FAILED_DEPENDENCY, f"not run: {cause}"),
        failed_dependency=dep.request_id,
    )


def not_run(item: PlannedItem, state: State, code: ErrorCode, message: str) -> ItemResult:
    return ItemResult(
        request_id=item.request_id, index=item.index, state=state, error=ErrorInfo(code, message)
    )
