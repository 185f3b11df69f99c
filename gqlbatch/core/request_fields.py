"""The fields of a sub-request, and a batch's options, each read and checked: a value the
engine can use, or a problem recorded (`Add`) and None. Pure and synchronous; `request.parse_batch`
calls them, and `Rules` says what the server allows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar
from urllib.parse import parse_qsl

from gqlbatch.core.errors import ErrorCode
from gqlbatch.core.targets import batch_path, header_problem, path_problem
from gqlbatch.core.types import JSON, REQUEST_ID_CHARS, Headers, RequestId
from gqlbatch.core.wire import IDEMPOTENCY_KEY, Method

__all__ = [
    "REQUEST_ID",
    "Add",
    "Rules",
    "choice",
    "positive_int",
    "read_atomicity_group",
    "read_depends_on",
    "read_for_each",
    "read_headers",
    "read_idempotency_key",
    "read_method",
    "read_path",
    "read_query",
    "read_upstream",
]

Add = Callable[[ErrorCode, str, str], None]
"""Records one problem of the item being parsed: (code, message, field)."""
_E = TypeVar("_E", bound=StrEnum)
REQUEST_ID = re.compile(REQUEST_ID_CHARS + "{1,128}")
"""A requestId, and an atomicity group's name, written alike."""
_METHODS = {m.value: m for m in Method}  # Enum.__members__ builds a new mapping on each read


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    """What `parse_batch` checks a batch against; derived from Settings by the engine."""

    upstreams: Collection[str]
    default_upstream: str | None
    max_items: int
    max_fanout: int = 1000
    methods: frozenset[Method] = frozenset(Method)
    door_paths: tuple[str, ...] = ()
    """The configured paths that answer like /batch: a sub-request may not name them."""


def read_method(value: JSON, rules: Rules, add: Add) -> Method | None:
    text = "GET" if value is None else value
    method = _METHODS.get(text.upper()) if isinstance(text, str) else None
    if method is None:
        add(
            ErrorCode.INVALID_INPUT,
            f"method must be one of {', '.join(Method)}, got {value!r}",
            "method",
        )
        return None
    if method not in rules.methods:
        allowed = ", ".join(m for m in Method if m in rules.methods)
        add(
            ErrorCode.METHOD_NOT_ALLOWED,
            f"{method} is not allowed here (allowed: {allowed})",
            "method",
        )
        return None
    return method


def read_path(
    value: JSON, add: Add, door_paths: tuple[str, ...] = ()
) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    if not isinstance(value, str) or not value:
        add(
            ErrorCode.INVALID_INPUT,
            "path is required and must be a string such as '/users/1'",
            "path",
        )
        return None, ()
    path, _, query_text = value.partition("?")
    problem = path_problem(path)
    if problem:
        add(ErrorCode.FORBIDDEN_TARGET, f"{problem}: {value!r}", "path")
        return None, ()
    if batch_path(path, door_paths):
        add(ErrorCode.NESTED_BATCH, f"a sub-request may not be a batch itself: {value!r}", "path")
        return None, ()
    return path, tuple(parse_qsl(query_text, keep_blank_values=True)) if query_text else ()


def read_query(value: JSON, add: Add) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        add(
            ErrorCode.INVALID_INPUT, "query must be an object of parameter names to values", "query"
        )
        return ()
    pairs: list[tuple[str, str]] = []
    for name, raw in value.items():
        for v in raw if isinstance(raw, list) else [raw]:
            if v is None:
                continue
            if isinstance(v, dict | list):
                add(
                    ErrorCode.INVALID_INPUT,
                    "a query value must be a string, number, boolean or a list of them",
                    f"query.{name}",
                )
                continue
            pairs.append((name, _scalar_text(v)))
    return tuple(pairs)


def _scalar_text(value: JSON) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_headers(value: JSON, add: Add) -> Headers:
    pairs = _header_pairs(value, add)
    for name, text in pairs:
        problem = header_problem(name, text)
        if problem:
            add(ErrorCode.FORBIDDEN_TARGET, problem, f"headers.{name}")
    return pairs


def _header_pairs(value: JSON, add: Add) -> Headers:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        value = [{"name": k, "value": v} for k, v in value.items()]
    ok = isinstance(value, list) and all(
        isinstance(h, Mapping)
        and isinstance(h.get("name"), str)
        and isinstance(h.get("value"), str)
        for h in value
    )
    if not ok:
        add(
            ErrorCode.INVALID_INPUT,
            "headers must be a list of {name, value} strings, or an object of strings",
            "headers",
        )
        return ()
    return tuple((h["name"], h["value"]) for h in value)


def read_depends_on(value: JSON, add: Add) -> tuple[RequestId, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        add(ErrorCode.INVALID_INPUT, "dependsOn must be a list of requestIds", "dependsOn")
        return ()
    return tuple(dict.fromkeys(str(v) for v in value))


def read_for_each(value: JSON, add: Add) -> str | list[JSON] | None:
    if value is None or isinstance(value, str | list):
        return value
    add(
        ErrorCode.INVALID_INPUT,
        "forEach must be a placeholder such as '{resultOf(posts)[*].userId}' or a JSON list",
        "forEach",
    )
    return None


def read_atomicity_group(value: JSON, add: Add) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not REQUEST_ID.fullmatch(value):
        add(
            ErrorCode.INVALID_INPUT,
            "atomicityGroup must be a name written as a requestId is: 1 to 128 characters "
            "without spaces, quotes, commas or brackets",
            "atomicityGroup",
        )
        return None
    return value


def read_idempotency_key(value: JSON, add: Add) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not IDEMPOTENCY_KEY.fullmatch(value):
        add(
            ErrorCode.INVALID_INPUT,
            "idempotencyKey must be 1 to 255 printable ASCII characters",
            "idempotencyKey",
        )
        return None
    return value


def read_upstream(value: JSON, rules: Rules, add: Add) -> str | None:
    # Not called for an absent upstream when there is a default (_parse_item).
    if isinstance(value, str) and value in rules.upstreams:
        return value
    known = ", ".join(sorted(rules.upstreams))  # only for the messages below
    if value is None:
        add(
            ErrorCode.UNKNOWN_UPSTREAM,
            f"name an upstream: several are configured (known: {known})",
            "upstream",
        )
        return None
    if not isinstance(value, str):
        add(ErrorCode.INVALID_INPUT, f"upstream must be a name (known: {known})", "upstream")
        return None
    if value not in rules.upstreams:
        add(
            ErrorCode.UNKNOWN_UPSTREAM,
            f"{value[:80]!r} is not a configured upstream (known: {known})",
            "upstream",
        )
        return None
    return str(value)


_MAX_INT = 2**31 - 1
"""The largest integer an option takes: GraphQL's Int, on the REST door too (a timeoutMs of
10**400 failed its item with INTERNAL_ERROR once it became seconds)."""


def positive_int(value: JSON, field: str, add: Add) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_INT:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        message = f"{field} must be an integer from 1 to {_MAX_INT}, got {shown}"
        add(ErrorCode.INVALID_INPUT, message, field)
        return None
    return value


def choice(value: JSON, enum: type[_E], default: _E, field: str, add: Add) -> _E:
    if value is None:
        return default
    if isinstance(value, str) and value.upper() in enum.__members__:
        return enum(value.upper())
    add(ErrorCode.INVALID_INPUT, f"must be one of {', '.join(enum)}, got {value!r}", field)
    return default
