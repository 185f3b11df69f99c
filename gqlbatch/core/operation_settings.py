"""Named operations, as the configuration gives them (`[operations.NAME]`): the REST call a
Slides-style `batchUpdate` request's name stands for. Frozen and validated once, like all
settings. Pure and stdlib-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gqlbatch.core.errors import ConfigError
from gqlbatch.core.upstream_settings import undo_problem

__all__ = ["NamedOperation"]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True, kw_only=True)
class NamedOperation:
    """One operation name and its REST call.

    Attributes:
        name: what a request names (`createUser` in `{"createUser": {...}}`).
        method: the call's method.
        path: the call's path, with `{args.FIELD}` (the request's object, a field of it) and
            `{param.NAME}` (a `{NAME}` segment of the door's path) in it.
        upstream: the upstream it goes to; None: the only one, or "default".
        body: the call's body: `"{args}"` (the request's object as sent), or any JSON with
            `{args.FIELD}` in its strings; None sends none.
        query: the call's query parameters, written like the path.
        compensate: how a call that succeeded is undone when a later one fails, as an item's
            `compensate` is written; `{result...}` reads the call's answer. A write without
            one makes every batchUpdate that names it impossible (all or nothing).
    """

    name: str
    method: str
    path: str
    upstream: str | None = None
    body: object = None
    query: Mapping[str, str] = field(default_factory=dict)
    compensate: Mapping[str, object] | None = None

    def __post_init__(self) -> None:
        where = f"operations.{self.name}"
        if self.method.upper() not in _METHODS:
            raise ConfigError(f"{where}.method must be one of {', '.join(sorted(_METHODS))}")
        object.__setattr__(self, "method", self.method.upper())
        if not self.path.startswith("/"):
            raise ConfigError(f"{where}.path must start with '/', such as '/users'")
        problem = undo_problem(self.compensate) if self.compensate is not None else None
        if problem:
            raise ConfigError(f"{where}.compensate {problem}")
