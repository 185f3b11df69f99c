"""A Slides-style `batchUpdate` (issue 27): `{"requests": [{"createUser": {...}}, ...]}`, each
request one named operation (`core.operation_settings`), mapped to the engine's items:
run in order, all or nothing, answered as `{"replies": [...]}` by index.

Pure and synchronous. What a request's object holds is the client's data, never a
placeholder: a `{` that would open one in it is written as the grammar's literal `{{`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from gqlbatch.core.compensation import written_for
from gqlbatch.core.errors import ErrorCode, Problem
from gqlbatch.core.operation_settings import NamedOperation
from gqlbatch.core.types import JSON

__all__ = ["Mapped", "map_requests", "replies"]

_ARG = re.compile(r"\{args(?:\.([A-Za-z0-9_]+))?\}")
_PARAM = re.compile(r"\{param\.([A-Za-z0-9_]+)\}")
_OPENS = re.compile(r"\{(?=resultOf\(|statusOf\(|headerOf\(|(?:item|index)(?![A-Za-z0-9_$]))")


class Mapped:
    """The engine's items for a batchUpdate, each request's operation name, and every problem
    found (none: the items may run)."""

    def __init__(self) -> None:
        self.items: list[dict[str, JSON]] = []
        self.names: list[str] = []
        self.problems: list[Problem] = []


def map_requests(
    document: JSON, operations: Mapping[str, NamedOperation], params: Mapping[str, str]
) -> Mapped:
    """*document*'s requests as items, with every problem (unknown names, missing arguments,
    shapes) listed; *params* are the `{name}` segments of the door's path."""
    mapped = Mapped()
    requests = document.get("requests") if isinstance(document, dict) else None
    if not isinstance(requests, list) or not requests:
        message = 'a batchUpdate is {"requests": [{"operationName": {...}}, ...]}, not empty'
        mapped.problems.append(Problem(ErrorCode.INVALID_INPUT, message, field="requests"))
        return mapped
    for index, request in enumerate(requests):
        item = _item(index, request, operations, params, mapped.problems)
        if item is not None:
            mapped.items.append(item[1])
            mapped.names.append(item[0])
    return mapped


def _item(
    index: int,
    request: JSON,
    operations: Mapping[str, NamedOperation],
    params: Mapping[str, str],
    problems: list[Problem],
) -> tuple[str, dict[str, JSON]] | None:
    rid = f"r{index}"

    def problem(message: str, field: str = "") -> None:
        where = f"requests[{index}]" + (f".{field}" if field else "")
        problems.append(Problem(ErrorCode.INVALID_INPUT, message, rid, index, where))

    if not isinstance(request, dict) or len(request) != 1:
        problem("each request is one operation: an object with one key, its name")
        return None
    [(name, args)] = request.items()
    operation = operations.get(name)
    if operation is None:
        known = ", ".join(sorted(operations)) or "none are configured: [operations.NAME]"
        problem(f"unknown operation {name!r} (known: {known})", name)
        return None
    if not isinstance(args, dict):
        problem(f"{name} takes an object of arguments", name)
        return None
    missing: set[str] = set()
    item: dict[str, JSON] = {
        "requestId": rid,
        "method": operation.method,
        "path": _fill(operation.path, args, params, missing, encode=_segment),
    }
    if operation.upstream is not None:
        item["upstream"] = operation.upstream
    if operation.query:
        item["query"] = {k: _fill(v, args, params, missing) for k, v in operation.query.items()}
    if operation.body is not None:
        item["body"] = _fill(operation.body, args, params, missing)
    if operation.compensate is not None:
        undo = written_for(operation.compensate, rid, params)
        item["compensate"] = _fill(undo, args, params, missing)
    for field in sorted(missing):
        problem(f"{name} needs the argument {field!r}", f"{name}.{field}")
    return name, item


def _fill(
    template: Any,
    args: Mapping[str, Any],
    params: Mapping[str, str],
    missing: set[str],
    encode: Callable[[str], str] | None = None,
) -> JSON:
    """*template* with `{param.NAME}`, then `{args}` and `{args.FIELD}`, written in: a whole
    string keeps the argument's JSON type, text within a string takes its text, through
    *encode*. The values are the client's, escaped so that none opens a placeholder."""
    if isinstance(template, dict):
        return {k: _fill(v, args, params, missing) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, args, params, missing) for v in template]
    if not isinstance(template, str):
        return template
    template = _PARAM.sub(lambda m: params.get(m[1], m[0]), template)
    whole = _ARG.fullmatch(template)
    if whole is not None:
        return _literal(_arg(whole[1], args, missing))
    written = encode or _escaped
    return _ARG.sub(lambda m: written(_as_text(_arg(m[1], args, missing))), template)


def _escaped(text: str) -> str:
    return _OPENS.sub("{{", text)


def _segment(text: str) -> str:
    """An argument in a path is one segment: '/', '%' and braces encoded, as a placeholder's
    value is (so it neither adds a segment nor opens a placeholder)."""
    return quote(text, safe="")


def _arg(field: str | None, args: Mapping[str, Any], missing: set[str]) -> JSON:
    if field is None:
        return dict(args)
    if field not in args:
        missing.add(field)
        return None
    value: JSON = args[field]
    return value


def _literal(value: JSON) -> JSON:
    """*value* with every `{` that would open a placeholder doubled (the grammar's literal)."""
    if isinstance(value, str):
        return _escaped(value)
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v) for v in value]
    return value


def _as_text(value: JSON) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def replies(names: Sequence[str], bodies: Sequence[JSON]) -> list[dict[str, JSON]]:
    """Slides' `replies`, by index: each operation's answer under its name, `{}` where the
    upstream answered no body."""
    return [{name: {} if body is None else body} for name, body in zip(names, bodies, strict=True)]
