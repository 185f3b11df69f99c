"""All or nothing, kept: every write of an atomic batch or an atomicity group has a way back
(issue 27). An item's own `compensate`; else its route's, from its upstream's configuration
(`[[upstreams.NAME.compensate]]`), for clients that never write one. A write with neither
refuses the batch before anything runs: its effect could not be undone, and "all or nothing"
would be a promise made and broken.

Pure and synchronous, like the parser it follows.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

from gqlbatch.core.errors import ErrorCode, Problem
from gqlbatch.core.request import Parsed, SubRequest, read_compensate
from gqlbatch.core.request_fields import Rules
from gqlbatch.core.types import JSON
from gqlbatch.core.upstream_settings import RouteCompensation, UpstreamSettings
from gqlbatch.core.wire import SAFE_METHODS

__all__ = ["with_compensations", "written_for"]

_RESULT = re.compile(r"\{result(?=[.\[}])")
_PARAM = re.compile(r"\{param\.([A-Za-z0-9_]+)\}")


def with_compensations(
    parsed: Parsed, upstreams: Mapping[str, UpstreamSettings], rules: Rules
) -> Parsed:
    """*parsed*, each write of an all-or-nothing unit given its route's compensation when it
    declares none, and a problem for each write that has neither."""
    atomic = parsed.batch.options.atomic
    if not atomic and not any(item.atomicity_group for item in parsed.batch.items):
        return parsed
    problems = list(parsed.problems)
    items = [
        _with_route_compensation(item, _routes(upstreams, item.upstream), rules, problems)
        if _cannot_be_undone(item) and (atomic or item.atomicity_group)
        else item
        for item in parsed.batch.items
    ]
    batch = dataclasses.replace(parsed.batch, items=tuple(items))
    return dataclasses.replace(parsed, batch=batch, problems=problems)


def _routes(upstreams: Mapping[str, UpstreamSettings], name: str) -> Sequence[RouteCompensation]:
    upstream = upstreams.get(name)
    return upstream.compensate if upstream is not None else ()


def _cannot_be_undone(item: SubRequest) -> bool:
    """A write without a compensate of its own."""
    return item.compensate is None and item.method not in SAFE_METHODS


def _with_route_compensation(
    item: SubRequest,
    routes: Sequence[RouteCompensation],
    rules: Rules,
    problems: list[Problem],
) -> SubRequest:
    for route in routes:
        params = route.params(item.method.value, item.path)
        if params is not None:
            break
    else:
        unit = f"atomicity group {item.atomicity_group!r}" if item.atomicity_group else "batch"
        message = (
            f"{item.method.value} {item.path} changes the upstream and has no compensate, and "
            f"upstreams.{item.upstream} has none for its route: this all-or-nothing {unit} "
            "could not undo it. Give the item a compensate, configure one for the route "
            "([[upstreams.NAME.compensate]]), or send it outside the atomic unit"
        )
        problems.append(
            Problem(ErrorCode.INVALID_INPUT, message, item.request_id, item.index, "compensate")
        )
        return item

    def add(code: ErrorCode, message: str, field: str) -> None:
        where = f"upstreams.{item.upstream}.compensate {route.match!r}: {message}"
        problems.append(Problem(code, where, item.request_id, item.index, field))

    undo = written_for(route.undo, item.request_id, params)
    compensate = read_compensate(undo, item.request_id, item.upstream, rules, add)
    return dataclasses.replace(item, compensate=compensate)


def written_for(value: JSON, request_id: str, params: Mapping[str, str]) -> JSON:
    """A configured compensation written for one item: `{result...}` reads its result, and
    `{param.name}` is the path segment its route matched (a placeholder there stays one);
    other text is left as it is."""
    if isinstance(value, str):
        text = _RESULT.sub(f"{{resultOf({request_id})", value)
        return _PARAM.sub(lambda m: params.get(m[1], m[0]), text)
    if isinstance(value, Mapping):
        return {k: written_for(v, request_id, params) for k, v in value.items()}
    if isinstance(value, list):
        return [written_for(v, request_id, params) for v in value]
    return value
