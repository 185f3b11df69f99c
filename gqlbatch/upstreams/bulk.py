"""Bulk routes: which calls a configured route can merge, the plural call that serves them, and
how its answer is split back into one response per call (DESIGN §7 "Bulk routes").

Pure and synchronous; `loaders.py` does the sending.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from gqlbatch.core.errors import UpstreamBadResponse
from gqlbatch.core.types import JSON, Headers
from gqlbatch.core.upstream_settings import BulkRoute
from gqlbatch.core.wire import BodyEncoding, UpstreamCall, UpstreamResponse

__all__ = ["BulkGroup", "BulkRoutes", "split_response"]

# Headers that describe the plural body and are wrong for a single row.
_BODY_HEADERS = frozenset(
    {"content-length", "content-encoding", "transfer-encoding", "etag", "content-md5", "digest"}
)


@dataclass(frozen=True, slots=True)
class BulkGroup:
    """Calls one plural call can serve: same route, upstream, headers and other parameters."""

    route: BulkRoute
    call: UpstreamCall
    members: tuple[tuple[UpstreamCall, str], ...]

    @property
    def keys(self) -> tuple[str, ...]:
        """The distinct keys, in the order they arrived."""
        return tuple(dict.fromkeys(key for _, key in self.members))


class BulkRoutes:
    """The bulk routes of every upstream, compiled for matching."""

    def __init__(self, routes: Mapping[str, Sequence[BulkRoute]]) -> None:
        self._routes = {
            upstream: [(route, _segment_pattern(route)) for route in rs]
            for upstream, rs in routes.items()
            if rs
        }

    def group(self, calls: Iterable[UpstreamCall]) -> tuple[list[BulkGroup], list[UpstreamCall]]:
        """Split *calls* into plural calls (two keys or more) and calls that go as they are.

        A lone lookup is sent as written, so that it is answered exactly as if alone.
        """
        if not self._routes:
            return [], list(calls)  # no upstream has a bulk route: nothing to match
        pending: dict[tuple[object, ...], list[tuple[UpstreamCall, str]]] = {}
        routes: dict[tuple[object, ...], BulkRoute] = {}
        singles: list[UpstreamCall] = []
        for call in calls:
            found = self._match(call)
            if found is None:
                singles.append(call)
                continue
            route, key, rest = found
            group_key: tuple[object, ...] = (
                call.upstream,
                route.match,
                call.headers,
                rest,
                call.timeout_ms,
            )
            pending.setdefault(group_key, []).append((call, key))
            routes[group_key] = route
        groups: list[BulkGroup] = []
        for key_of_group, members in pending.items():
            if len({key for _, key in members}) < 2:
                singles.extend(call for call, _ in members)
                continue
            groups.extend(_chunks(routes[key_of_group], members))
        return groups, singles

    def can_merge(self, call: UpstreamCall) -> bool:
        """Whether a bulk route could merge *call* with other lookups."""
        return call.upstream in self._routes and self._match(call) is not None

    def _match(
        self, call: UpstreamCall
    ) -> tuple[BulkRoute, str, tuple[tuple[str, str], ...]] | None:
        if call.method != "GET" or call.body is not None:
            return None
        for route, pattern in self._routes.get(call.upstream, ()):
            if pattern is not None:
                found = pattern.match(call.path)
                if found:
                    return route, unquote(found[1]), call.query
            elif call.path == route.match_path:
                values = [v for k, v in call.query if k == route.match_param]
                if len(values) == 1:
                    rest = tuple((k, v) for k, v in call.query if k != route.match_param)
                    return route, values[0], rest
        return None


def split_response(
    group: BulkGroup, response: UpstreamResponse
) -> dict[str, UpstreamResponse | None]:
    """One response per key of *group*, as if each key had been fetched alone; None for a key
    the plural answer has no row for, whose own answer only the upstream knows (a 404 and its
    body, or a row the plural route filters out): the caller fetches it alone.

    A plural call that failed (status 400 or more) gives every key that same response.

    Raises:
        UpstreamBadResponse: the plural call answered with something other than a JSON list.
    """
    if response.status >= 400:
        return dict.fromkeys(group.keys, response)
    rows = response.body
    if not isinstance(rows, list):
        raise UpstreamBadResponse(
            f"bulk route {group.route.match}: GET {group.call.path} answered "
            f"{type(rows).__name__}, expected a JSON list of rows"
        )
    headers = tuple((n, v) for n, v in response.headers if n.lower() not in _BODY_HEADERS)
    field = group.route.key_field
    if group.route.many:
        return {
            key: _ok(response.status, headers, [r for r in rows if _key(r, field) == key])
            for key in group.keys
        }
    by_key: dict[str | None, JSON] = {}
    for row in rows:
        by_key.setdefault(_key(row, field), row)
    return {
        key: _ok(response.status, headers, by_key[key]) if key in by_key else None
        for key in group.keys
    }


def _segment_pattern(route: BulkRoute) -> re.Pattern[str] | None:
    if route.match_param is not None:
        return None
    prefix = route.match_path[: -len("{id}")]
    return re.compile("^" + re.escape(prefix) + "([^/]+)$")


def _chunks(route: BulkRoute, members: list[tuple[UpstreamCall, str]]) -> list[BulkGroup]:
    keys = list(dict.fromkeys(key for _, key in members))
    groups = []
    for start in range(0, len(keys), route.max_keys):
        chunk = set(keys[start : start + route.max_keys])
        chunk_members = tuple((c, k) for c, k in members if k in chunk)
        groups.append(BulkGroup(route, _plural_call(route, chunk_members), chunk_members))
    return groups


def _plural_call(route: BulkRoute, members: tuple[tuple[UpstreamCall, str], ...]) -> UpstreamCall:
    first = members[0][0]
    keys = list(dict.fromkeys(key for _, key in members))
    rest = (
        first.query
        if route.match_param is None
        else tuple((k, v) for k, v in first.query if k != route.match_param)
    )
    params: tuple[tuple[str, str], ...]
    if route.style == "comma":
        params = ((route.param, ",".join(keys)),)
    else:
        params = tuple((route.param, key) for key in keys)
    return UpstreamCall(
        upstream=first.upstream,
        method="GET",
        path=route.path,
        query=tuple(sorted(rest)) + params,
        headers=first.headers,
        timeout_ms=first.timeout_ms,
    )


def _key(row: JSON, field: str) -> str | None:
    if not isinstance(row, dict) or field not in row:
        return None
    value = row[field]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _ok(status: int, headers: Headers, body: JSON) -> UpstreamResponse:
    return UpstreamResponse(status, headers, body, BodyEncoding.JSON)
