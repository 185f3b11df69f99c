"""A batch as the client sent it: value objects, and `parse_batch`, which checks its shape.

Pure and synchronous. Both doors (GraphQL and REST) hand `parse_batch` the same plain mapping
form, so a batch is validated by one set of rules whichever way it arrived. Graph checks
(dependencies, cycles, placeholders) live in `plan.py`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol, TypeGuard

from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem
from gqlbatch.core.request_fields import (
    REQUEST_ID,
    Add,
    Rules,
    choice,
    positive_int,
    read_atomicity_group,
    read_depends_on,
    read_for_each,
    read_headers,
    read_idempotency_key,
    read_method,
    read_path,
    read_query,
    read_upstream,
)
from gqlbatch.core.types import JSON, Headers, RequestId, frozen_for_type_checkers
from gqlbatch.core.wire import Method

__all__ = [
    "COMPENSATE_KEYS",
    "ITEM_KEYS",
    "OPTION_KEYS",
    "PRIVATE_FIELDS",
    "BatchOptions",
    "BatchRequest",
    "KnownItems",
    "Mode",
    "OnError",
    "Parsed",
    "SubRequest",
    "holds_private",
    "parse_batch",
    "read_compensate",
    "with_defaults",
]


class Mode(StrEnum):
    """How the items of a batch are scheduled."""

    PARALLEL = "PARALLEL"
    SEQUENTIAL = "SEQUENTIAL"


class OnError(StrEnum):
    """What a failed item does to the items that have not started yet."""

    CONTINUE = "CONTINUE"
    STOP = "STOP"


@frozen_for_type_checkers(kw_only=True)
class SubRequest:
    """One REST call of a batch, validated, with its placeholders still unparsed."""

    request_id: RequestId
    index: int
    method: Method
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: Headers = ()
    body: JSON = None
    has_body: bool = False
    depends_on: tuple[RequestId, ...] = ()
    upstream: str
    timeout_ms: int | None = None
    for_each: str | list[JSON] | None = None
    idempotency_key: str | None = None
    compensate: SubRequest | None = None
    """For atomic batches: the request that undoes this one (DESIGN §5)."""
    atomicity_group: str | None = None
    """OData's atomicity group: the items of a group are all or nothing, the others not."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchOptions:
    """How to run a batch (DESIGN §3 `BatchOptions`)."""

    mode: Mode = Mode.PARALLEL
    on_error: OnError = OnError.CONTINUE
    max_concurrency: int | None = None
    timeout_ms: int | None = None
    atomic: bool = False
    """All or nothing: one at a time, stop at the first failure, then compensate."""


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """A batch that passed the shape checks, in the client's order."""

    items: tuple[SubRequest, ...]
    options: BatchOptions


@dataclass(frozen=True, slots=True)
class Parsed:
    """What `parse_batch` found: the valid items, every problem, and every item's requestId."""

    batch: BatchRequest
    problems: list[Problem]
    request_ids: tuple[RequestId, ...]


_USUAL_KEYS = frozenset({"requestId", "method", "path", "upstream", "body"})
"""The fields of most items: the others are looked for only in an item that has more."""
ITEM_KEYS = frozenset(
    {
        "requestId",
        "method",
        "path",
        "query",
        "headers",
        "body",
        "dependsOn",
        "upstream",
        "timeoutMs",
        "forEach",
        "idempotencyKey",
        "compensate",
        "atomicityGroup",
    }
)
OPTION_KEYS = ("mode", "onError", "maxConcurrency", "timeoutMs", "atomic")
"""A batch's options, as both doors name them."""
COMPENSATE_KEYS = frozenset({"method", "path", "query", "headers", "body"})


def with_defaults(defaults: Mapping[str, object], options: object) -> object:
    """A batch's options with a door's *defaults* for the ones it does not set; options that
    are not an object are returned as they are, for validation to refuse."""
    if not defaults:
        return options
    if options is None:
        return dict(defaults)
    if _is_mapping(options):
        return {**defaults, **{k: v for k, v in options.items() if v is not None}}
    return options


def _is_mapping(value: object) -> TypeGuard[Mapping[str, JSON]]:
    # Items are dicts from JSON or GraphQL: checked first, before the slow ABC check.
    return isinstance(value, (dict, Mapping))


class KnownItems(Protocol):
    """Items parsed before, by a key `parse_batch` makes of each: a server keeps them
    (`execution.plans`), bounded, so that a batch costs what is new in it."""

    def get(self, key: Hashable) -> SubRequest | None: ...

    def __setitem__(self, key: Hashable, item: SubRequest) -> None: ...


def parse_batch(
    items: object, options: object, rules: Rules, known: KnownItems | None = None
) -> Parsed:
    """Check the shape of a batch, collecting every problem rather than stopping at the first.

    Items with problems are left out of the batch; the planner adds its own problems before
    anything is decided, and knows every requestId so that it reports no knock-on problems.
    Raises BatchRejected at once only when there is nothing item-by-item to check: the items
    are not a list, or there are more than the limit. An item found in *known* is not parsed
    again; one parsed without problems is added to it.
    """
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise BatchRejected([Problem(ErrorCode.INVALID_INPUT, "requests must be a list")])
    if len(items) > rules.max_items:
        raise BatchRejected(
            [
                Problem(
                    ErrorCode.BATCH_TOO_LARGE,
                    f"a batch holds at most {rules.max_items} requests, this one has {len(items)}",
                    field="requests",
                )
            ]
        )
    if not items:
        raise BatchRejected([Problem(ErrorCode.INVALID_INPUT, "requests must not be empty")])
    problems = _Problems()
    ids = [_request_id(raw, i, problems) for i, raw in enumerate(items)]
    _check_unique_ids(ids, problems)
    parsed = (
        [_parse_item(raw, i, ids[i], rules, problems) for i, raw in enumerate(items)]
        if known is None
        else [_recalled(raw, i, ids[i], rules, problems, known) for i, raw in enumerate(items)]
    )
    batch_options = _parse_options(options, problems)
    if not batch_options.atomic:
        for item in parsed:
            if item is not None and item.compensate is not None and not item.atomicity_group:
                problems.add(
                    ErrorCode.INVALID_INPUT,
                    "compensate is only used by atomic batches and atomicity groups: set "
                    "atomic: true, or put the item in an atomicityGroup",
                    "compensate",
                    item.index,
                    item.request_id,
                )
    _check_group_names(parsed, frozenset(ids), problems)
    batch = BatchRequest(tuple(p for p in parsed if p is not None), batch_options)
    return Parsed(batch, problems.found, tuple(ids))


def _check_group_names(
    items: Sequence[SubRequest | None], ids: frozenset[RequestId], problems: _Problems
) -> None:
    # dependsOn may name a group as well as an item (OData), so the two share one namespace.
    for item in items:
        if item is not None and item.atomicity_group in ids:
            problems.add(
                ErrorCode.INVALID_INPUT,
                f"atomicityGroup {item.atomicity_group!r} is also a requestId; dependsOn names "
                "either, so they must differ",
                "atomicityGroup",
                item.index,
                item.request_id,
            )


class _Problems:
    """Collects problems with the item they belong to."""

    def __init__(self) -> None:
        self.found: list[Problem] = []

    def add(
        self,
        code: ErrorCode,
        message: str,
        field: str | None = None,
        index: int | None = None,
        request_id: RequestId | None = None,
    ) -> None:
        self.found.append(Problem(code, message, request_id, index, field))


_RECALLED_CHARS = 512
"""The longest item (as its repr) that is kept parsed: a screen's reads are far shorter."""
PRIVATE_FIELDS = frozenset({"body", "headers", "compensate"})
"""An item holding one of these is never kept: no client's data or credentials stay in
memory after its request (nor does `execution.plans` keep a batch that has them)."""


def holds_private(item: dict[str, object]) -> bool:
    """Whether *item* holds a value in one of the `PRIVATE_FIELDS`."""
    # Most items have none of the fields: one set operation says so.
    return not PRIVATE_FIELDS.isdisjoint(item) and any(
        item.get(name) is not None for name in PRIVATE_FIELDS
    )


def _recalled(
    raw: object,
    index: int,
    request_id: RequestId,
    rules: Rules,
    problems: _Problems,
    known: KnownItems,
) -> SubRequest | None:
    """The item parsed, or as it was parsed before at the same place of another batch."""
    key = _known_as(raw, index, rules)
    if key is not None:
        found = known.get(key)
        if found is not None:
            return found
    before = len(problems.found)
    item = _parse_item(raw, index, request_id, rules, problems)
    if key is not None and item is not None and len(problems.found) == before:
        known[key] = item
    return item


def _known_as(raw: object, index: int, rules: Rules) -> Hashable | None:
    # The repr of a value read from JSON or GraphQL is that value written out whole (strings
    # quoted and escaped, numbers as they read): two items with one repr are the same item.
    # The index is part of it, because the parsed item holds it; the methods allowed are
    # too, as a read-only batch (Query.batch) refuses what a mutation's accepts.
    if type(raw) is not dict or holds_private(raw):
        return None
    text = repr(raw)
    return (index, rules.methods, text) if len(text) <= _RECALLED_CHARS else None


def _parse_item(
    raw: object, index: int, request_id: RequestId, rules: Rules, problems: _Problems
) -> SubRequest | None:
    if not _is_mapping(raw):
        problems.add(ErrorCode.INVALID_INPUT, "a request must be an object", index=index)
        return None
    before = len(problems.found)

    def add(code: ErrorCode, message: str, field: str) -> None:
        problems.add(code, message, field, index, request_id)

    if not ITEM_KEYS.issuperset(raw):
        for key in sorted(set(raw) - ITEM_KEYS):
            known = ", ".join(sorted(ITEM_KEYS))
            add(ErrorCode.INVALID_INPUT, f"unknown field (known: {known})", key)
    # Most fields are absent from most items (None, or missing): each reader is called only
    # for a field that is there, as each would only say "absent" at the cost of a call. An
    # absent method or upstream is its default, when there is one. An item of only the usual
    # fields (most reads) skips the looks for the others; the fields are still read in the
    # order of their problems.
    get = raw.get
    rare = not _USUAL_KEYS.issuperset(raw)
    method: Method | None = Method.GET
    if (value := get("method")) is not None or Method.GET not in rules.methods:
        method = read_method(value, rules, add)
    path, query = read_path(get("path"), add, rules.door_paths)
    headers: Headers = ()
    depends_on: tuple[RequestId, ...] = ()
    if rare:
        if (value := get("query")) is not None:
            query += read_query(value, add)
        if (value := get("headers")) is not None:
            headers = read_headers(value, add)
        if (value := get("dependsOn")) is not None:
            depends_on = read_depends_on(value, add)
    upstream = rules.default_upstream
    if (value := get("upstream")) is not None or upstream is None:
        upstream = read_upstream(value, rules, add)
    timeout_ms = for_each = idempotency_key = atomicity_group = compensate = None
    if rare:
        if (value := get("timeoutMs")) is not None:
            timeout_ms = positive_int(value, "timeoutMs", add)
        if (value := get("forEach")) is not None:
            for_each = read_for_each(value, add)
        if (value := get("idempotencyKey")) is not None:
            idempotency_key = read_idempotency_key(value, add)
        if (value := get("atomicityGroup")) is not None:
            atomicity_group = read_atomicity_group(value, add)
        if (value := get("compensate")) is not None:
            compensate = read_compensate(value, request_id, upstream, rules, add)
    if len(problems.found) > before or method is None or path is None or upstream is None:
        return None
    body = get("body")
    return SubRequest(
        request_id=request_id,
        index=index,
        method=method,
        path=path,
        query=query,
        headers=headers,
        body=body,
        has_body=body is not None,
        depends_on=depends_on,
        upstream=upstream,
        timeout_ms=timeout_ms,
        for_each=for_each,
        idempotency_key=idempotency_key,
        compensate=compensate,
        atomicity_group=atomicity_group,
    )


def read_compensate(
    raw: JSON, request_id: RequestId, upstream: str | None, rules: Rules, add: Add
) -> SubRequest | None:
    """The compensating request: a sub-request of its own, on the item's upstream, that may
    read every result of the batch, its own item's included."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        add(
            ErrorCode.INVALID_INPUT,
            "compensate must be an object {method, path, body}",
            "compensate",
        )
        return None

    def add_here(code: ErrorCode, message: str, field: str) -> None:
        add(code, message, f"compensate.{field}")

    for key in sorted(set(raw) - COMPENSATE_KEYS):
        add_here(
            ErrorCode.INVALID_INPUT,
            f"unknown field (known: {', '.join(sorted(COMPENSATE_KEYS))})",
            key,
        )
    everything = replace(rules, methods=frozenset(Method))
    method = read_method(raw.get("method"), everything, add_here)
    path, path_query = read_path(raw.get("path"), add_here, rules.door_paths)
    query = path_query + read_query(raw.get("query"), add_here)
    headers = read_headers(raw.get("headers"), add_here)
    if method is None or path is None or upstream is None:
        return None
    body = raw.get("body")
    return SubRequest(
        request_id=f"{request_id}.compensate",
        index=-1,
        method=method,
        path=path,
        query=query,
        headers=headers,
        body=body,
        has_body=body is not None,
        upstream=upstream,
    )


def _request_id(raw: object, index: int, problems: _Problems) -> RequestId:
    value = raw.get("requestId") if isinstance(raw, dict | Mapping) else None
    if value is None:
        return str(index)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not REQUEST_ID.fullmatch(value):
        problems.add(
            ErrorCode.INVALID_INPUT,
            "requestId must be 1 to 128 characters without spaces, quotes, commas or brackets, "
            f"got {value!r}",
            "requestId",
            index,
        )
        return str(index)
    return value


def _parse_options(raw: object, problems: _Problems) -> BatchOptions:
    if raw is None:
        return BatchOptions()
    if not isinstance(raw, Mapping):
        problems.add(ErrorCode.INVALID_INPUT, "options must be an object", "options")
        return BatchOptions()

    def add(code: ErrorCode, message: str, field: str) -> None:
        problems.add(code, message, f"options.{field}")

    for key in sorted(set(raw) - set(OPTION_KEYS)):
        add(
            ErrorCode.INVALID_INPUT,
            f"unknown option (known: {', '.join(sorted(OPTION_KEYS))})",
            key,
        )
    atomic = raw.get("atomic")
    if atomic not in (None, True, False):
        add(ErrorCode.INVALID_INPUT, f"atomic must be true or false, got {atomic!r}", "atomic")
    on_error = choice(raw.get("onError"), OnError, OnError.CONTINUE, "onError", add)
    if atomic is True and raw.get("onError") is not None and on_error is OnError.CONTINUE:
        add(
            ErrorCode.INVALID_INPUT,
            "an atomic batch stops at its first failure; onError CONTINUE contradicts it",
            "onError",
        )
    mode = choice(raw.get("mode"), Mode, Mode.PARALLEL, "mode", add)
    if atomic is True and raw.get("mode") is not None and mode is Mode.PARALLEL:
        add(
            ErrorCode.INVALID_INPUT,
            "an atomic batch runs one item at a time; mode PARALLEL contradicts it",
            "mode",
        )
    return BatchOptions(
        mode=Mode.SEQUENTIAL if atomic is True else mode,
        on_error=OnError.STOP if atomic is True else on_error,
        max_concurrency=positive_int(raw.get("maxConcurrency"), "maxConcurrency", add),
        timeout_ms=positive_int(raw.get("timeoutMs"), "timeoutMs", add),
        atomic=atomic is True,
    )


def _check_unique_ids(ids: list[RequestId], problems: _Problems) -> None:
    first: dict[RequestId, int] = {}
    for index, request_id in enumerate(ids):
        if request_id in first:
            problems.add(
                ErrorCode.DUPLICATE_REQUEST_ID,
                f"requestId '{request_id}' is already used by item {first[request_id]}",
                "requestId",
                index,
                request_id,
            )
        else:
            first[request_id] = index
