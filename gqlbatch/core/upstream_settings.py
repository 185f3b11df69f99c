"""The upstreams' settings: where each REST service is, how it is called and retried, and
which of its lookups merge into bulk calls. Frozen and validated once, like all settings.

Pure and stdlib-only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gqlbatch.core.errors import ConfigError

__all__ = [
    "DEFAULT_UPSTREAM",
    "BulkRoute",
    "RetrySettings",
    "RouteCompensation",
    "UpstreamSettings",
    "check_positive",
    "undo_problem",
    "upstream_flags",
]

DEFAULT_UPSTREAM = "default"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_PARAM = re.compile(r"^[A-Za-z0-9_.\[\]-]+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrySettings:
    """When and how upstream calls are retried (DESIGN §7 "Retries").

    Idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS), and others that carry an
    Idempotency-Key, are retried on connection errors and on 429, 502, 503 and 504, with
    exponential backoff and full jitter, honouring Retry-After, and never past the item's
    timeout or the batch's deadline.

    Attributes:
        max_attempts: attempts per call, the first included; 1 turns retries off.
        backoff_ms: the first backoff; each retry doubles it.
        max_backoff_ms: the largest backoff.
        max_retry_after_ms: the longest Retry-After honoured; a longer one is not waited for.
    """

    max_attempts: int = 3
    backoff_ms: int = 100
    max_backoff_ms: int = 2_000
    max_retry_after_ms: int = 10_000

    def __post_init__(self) -> None:
        check_positive(
            "retries", self, ("max_attempts", "backoff_ms", "max_backoff_ms", "max_retry_after_ms")
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkRoute:
    """Merges single lookups that become ready together into one plural call (DESIGN §7).

    Attributes:
        match: the single lookup, with `{id}` as its last path segment (`/users/{id}`) or as one
            query value (`/comments?postId={id}`).
        path: the plural route; defaults to the match's path without the `{id}` segment.
        param: the query parameter that carries the keys; defaults to `id` for a path match and
            to the matched parameter for a query match.
        key_field: the field of each returned row that holds its key; defaults to `param`.
        many: false for one-to-one (each key gets its row, or a 404); true for one-to-many
            (each key gets the list of rows whose `key_field` equals it).
        style: `repeat` sends `?id=1&id=2`, `comma` sends `?id=1,2`.
        max_keys: keys per plural call; more keys make more calls.
    """

    match: str
    path: str = ""
    param: str = ""
    key_field: str = ""
    many: bool = False
    style: str = "repeat"
    max_keys: int = 100
    match_path: str = field(init=False, default="")
    match_param: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        where = f"bulk route {self.match!r}"
        path, _, query = self.match.partition("?")
        if query:
            name, sep, value = query.partition("=")
            if not sep or value != "{id}" or "&" in query or "{id}" in path:
                raise ConfigError(f"{where}: a query match is /path?param={{id}}, one parameter")
            match_param: str | None = name
            default_path, default_param = path, name
        else:
            if not path.endswith("/{id}") or path.count("{id}") != 1:
                raise ConfigError(f"{where}: match must end with /{{id}} or be /path?param={{id}}")
            match_param = None
            default_path, default_param = path[: -len("/{id}")] or "/", "id"
        if not path.startswith("/") or "{" in path.replace("{id}", ""):
            raise ConfigError(f"{where}: match must be a path starting with '/'")
        object.__setattr__(self, "match_path", path)
        object.__setattr__(self, "match_param", match_param)
        object.__setattr__(self, "path", self.path or default_path)
        object.__setattr__(self, "param", self.param or default_param)
        object.__setattr__(self, "key_field", self.key_field or self.param)
        if self.style not in ("repeat", "comma"):
            raise ConfigError(f"{where}: style must be 'repeat' or 'comma', got {self.style!r}")
        if not self.path.startswith("/") or not _PARAM.match(self.param):
            raise ConfigError(f"{where}: path must start with '/' and param be a plain name")
        check_positive(where, self, ("max_keys",))


_PARAM_USE = re.compile(r"\{param\.([A-Za-z0-9_]+)\}")
_METHOD_NAMES = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UNDO_KEYS = frozenset({"method", "path", "query", "headers", "body"})


def undo_problem(undo: Mapping[str, object]) -> str | None:
    """Why *undo* cannot be a compensating request, written as an item's `compensate` is
    (`{method, path, query, headers, body}`, method and path required), or None."""
    unknown = sorted(set(undo) - _UNDO_KEYS)
    if unknown:
        return f"is {{method, path, query, headers, body}} (unknown: {', '.join(unknown)})"
    if not isinstance(undo.get("method"), str):
        return "needs a method, such as 'DELETE'"
    if not isinstance(undo.get("path"), str):
        return "needs a path, such as '/users/{result.id}'"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteCompensation:
    """How a write on one route is undone when its item declares no `compensate`: what makes
    an atomic batch (or an atomicity group) possible for clients that never write one.

    Attributes:
        match: the write, `METHOD /path`, where a `{name}` segment matches one segment.
        undo: the compensating request, as an item's `compensate` is written (`method`,
            `path`, `query`, `headers`, `body`). `{result...}` reads the item's own result
            (`{result.id}`); `{param.name}` is the segment `{name}` matched.
    """

    match: str
    undo: Mapping[str, object]
    method: str = field(init=False, default="")
    segments: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        where = f"compensate route {self.match!r}"
        method, _, path = self.match.partition(" ")
        if method.upper() not in _METHOD_NAMES or not path.startswith("/") or "?" in path:
            raise ConfigError(f"{where}: match is 'METHOD /path', such as 'POST /users'")
        problem = undo_problem(self.undo)
        if problem:
            raise ConfigError(f"{where}: with {problem}")
        object.__setattr__(self, "method", method.upper())
        object.__setattr__(self, "segments", tuple(path.strip("/").split("/")))
        named = {s[1:-1] for s in self.segments if s.startswith("{") and s.endswith("}")}
        unknown_params = sorted(set(_PARAM_USE.findall(repr(self.undo))) - named)
        if unknown_params:
            raise ConfigError(
                f"{where}: with reads {{param.{unknown_params[0]}}}, which match does not name "
                "as a segment"
            )

    def params(self, method: str, path: str) -> dict[str, str] | None:
        """The `{name}` segments of a *method* and *path* (no query) this route matches, by
        name; None when it does not match."""
        if method != self.method:
            return None
        given = path.strip("/").split("/")
        if len(given) != len(self.segments):
            return None
        found = {}
        for pattern, segment in zip(self.segments, given, strict=True):
            if pattern.startswith("{") and pattern.endswith("}"):
                found[pattern[1:-1]] = segment
            elif pattern != segment:
                return None
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamSettings:
    """One REST service that sub-requests may target, and how to talk to it.

    Attributes:
        name: what a sub-request's `upstream` field names.
        base_url: scheme, host, port and an optional base path; sub-request paths go below it.
        timeout_ms: the total time one call may take, connect to last byte.
        connect_timeout_ms: the time to open a connection.
        max_connections: pooled connections to this upstream; also its concurrency cap.
        forward_headers: incoming headers copied onto this upstream's calls; None takes the
            server-wide list.
        share_inflight: let concurrent batches share one in-flight GET or HEAD when the calls
            are identical, credentials included. Off by default.
        bulk: routes whose lookups are merged into plural calls.
        probe_path: a path `/readyz` GETs to tell whether this upstream answers (any status
            below 500); None leaves it unprobed.
        openapi: the upstream's OpenAPI document, a file or an http(s) URL, read once at
            start-up; sub-requests to this upstream are checked against it before they run.
        strict_routes: with `openapi`, refuse a method and path that match no operation.
        validate_responses: with `openapi`, check JSON answers against their documented
            schema: "off", "log" (a warning per answer that does not match), or "fail" (the
            item fails with UPSTREAM_BAD_RESPONSE and the pointer).
        infer_bulk: with `openapi`, also use the bulk routes the document shows (a list
            operation filtering by an array of ids); `bulk` routes with the same match win.
        compensate: how writes on these routes are undone in atomic batches and groups,
            for items that declare no `compensate` of their own (the first match wins).
        id_type: with `openapi`, "id" makes each generated type's `id` field a GraphQL ID,
            as Relay, Apollo and urql key their caches by; "documented" keeps its type.
    """

    name: str
    base_url: str
    timeout_ms: int = 10_000
    connect_timeout_ms: int = 3_000
    max_connections: int = 100
    forward_headers: tuple[str, ...] | None = None
    share_inflight: bool = False
    bulk: tuple[BulkRoute, ...] = ()
    probe_path: str | None = None
    openapi: str | None = None
    strict_routes: bool = False
    validate_responses: str = "off"
    infer_bulk: bool = False
    compensate: tuple[RouteCompensation, ...] = ()
    id_type: str = "id"

    def __post_init__(self) -> None:
        if self.validate_responses not in ("off", "log", "fail"):
            raise ConfigError(
                f"upstreams.{self.name}.validate_responses must be 'off', 'log' or 'fail', "
                f"got {self.validate_responses!r}"
            )
        if self.id_type not in ("id", "documented"):
            raise ConfigError(
                f"upstreams.{self.name}.id_type must be 'id' or 'documented', got {self.id_type!r}"
            )
        uses = [
            k
            for k in ("strict_routes", "validate_responses")
            if getattr(self, k) not in (False, "off")
        ]
        if uses and self.openapi is None:
            raise ConfigError(
                f"upstreams.{self.name}.{uses[0]} needs upstreams.{self.name}.openapi"
            )
        if not _NAME.match(self.name):
            raise ConfigError(
                f"upstream name {self.name!r} must be a letter then letters, digits, '_' or '-'"
            )
        _check_base_url(self.name, self.base_url)
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        check_positive(
            f"upstreams.{self.name}", self, ("timeout_ms", "connect_timeout_ms", "max_connections")
        )


def upstream_flags(urls: Sequence[str]) -> dict[str, str]:
    """The upstreams that `URL` or `name=URL` strings name, as `--upstream` takes them: one
    may go unnamed (it is "default"), several must be named, and names are unique.

    Raises:
        ConfigError: naming the flag and why.
    """
    named: dict[str, str] = {}
    for text in urls:
        name, sep, url = text.partition("=")
        if not sep or "://" in name:
            if len(urls) > 1:
                raise ConfigError(
                    f"--upstream {text!r}: name each of several upstreams as name=URL"
                )
            name, url = DEFAULT_UPSTREAM, text
        if name in named:
            raise ConfigError(f"--upstream names must be unique, {name!r} is given twice")
        named[name] = url
    return named


def _check_base_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    problem = None
    if parts.scheme not in ("http", "https"):
        problem = "must start with http:// or https://"
    elif not parts.hostname:
        problem = "has no host"
    elif parts.username or parts.password:
        problem = "must not carry credentials (user:password@)"
    elif parts.query or parts.fragment:
        problem = "must not have a query or fragment"
    if problem:
        raise ConfigError(f"upstreams.{name}.base_url {url!r} {problem}")
    try:
        parts.port  # noqa: B018 - urlsplit validates the port lazily, on access
    except ValueError as exc:
        raise ConfigError(f"upstreams.{name}.base_url {url!r}: {exc}") from exc


def check_positive(prefix: str, obj: object, names: Sequence[str], *, attr: str = "") -> None:
    """Each of *obj*'s *names* (attributes `attr + name`) is a positive integer.

    Raises:
        ConfigError: naming the first that is not as `prefix.name`.
    """
    for name in names:
        value = getattr(obj, attr + name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{prefix}.{name} must be a positive integer, got {value!r}")
