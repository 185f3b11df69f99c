"""Settings: frozen, validated once at the edge, passed down explicitly.

Pure and stdlib-only. Only `cli.py` reads the environment or files and hands the values here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

from gqlbatch.core.errors import ConfigError
from gqlbatch.core.operation_settings import NamedOperation
from gqlbatch.core.upstream_settings import (
    RetrySettings,
    UpstreamSettings,
    check_positive,
    upstream_flags,
)

__all__ = [
    "DEFAULT_FORWARD_HEADERS",
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_WRITE_TIMEOUT_S",
    "CorsSettings",
    "Settings",
]

DEFAULT_HEADER_TIMEOUT_S = 10
DEFAULT_WRITE_TIMEOUT_S = 10
DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_FORWARD_HEADERS = ("Authorization", "Accept-Language", "X-Request-Id", "traceparent")
LIMITS = (
    "max_items",
    "max_fanout",
    "max_concurrency",
    "batch_timeout_ms",
    "max_response_bytes",
    "max_request_bytes",
    "max_query_depth",
    "max_query_aliases",
    "max_query_tokens",
    "max_outstanding_per_client",
    "max_outstanding_total",
    "max_outstanding_per_address",
    "retry_after_s",
    "max_json_depth",
    "max_query_bytes",
    "max_operations",
    "max_rendered_call_bytes",
    "max_rendered_batch_bytes",
    "max_batch_response_bytes",
    "max_select_paths",
    "max_checked_values",
    "max_document_check_ms",
)
"""The settings of the configuration file's [limits] table: each a positive integer."""
SERVER_LIMITS = (
    "header_timeout_s",
    "body_timeout_s",
    "write_timeout_s",
    "max_connections",
    "ws_max_per_client",
    "ws_max_per_address",
    "ws_idle_timeout_s",
    "ws_init_timeout_s",
    "ws_max_operations",
)
"""The positive integers of the [server] table."""
_LIMIT_FIELDS = (
    *LIMITS,
    *SERVER_LIMITS,
    "idempotency_ttl_s",
    "idempotency_max_records",
    "idempotency_max_bytes",
    "idempotency_max_record_bytes",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CorsSettings:
    """Which browser pages on other origins may call the gateway (DESIGN §10a).

    Attributes:
        origins: the origins allowed, each `scheme://host[:port]` exactly as a browser sends
            it; `"*"` allows any origin. Empty (the default) allows none: only pages served by
            the gateway itself, and clients that are not browsers.
        allow_credentials: let the page send cookies and HTTP authentication with its calls
            (`credentials: "include"`). Never with `"*"`: any site could act as its users.
        max_age_s: how long a browser may keep a preflight's answer.
    """

    origins: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age_s: int = 600

    def __post_init__(self) -> None:
        for origin in self.origins:
            if origin != "*" and _origin(origin) != origin:
                raise ConfigError(
                    f"cors.origins: {origin!r} is not an origin; write it as a browser sends "
                    "it, scheme://host[:port] with no path, such as 'https://app.example.com'"
                )
        if self.allow_credentials and "*" in self.origins:
            raise ConfigError(
                "cors.origins = ['*'] with cors.allow_credentials = true would let any site "
                "call the gateway as its users; list the origins instead"
            )
        check_positive("cors", self, ("max_age_s",))

    def allows(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins


def _origin(text: str) -> str | None:
    """*text* as the origin a browser would send, or None when it is not one."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        return None
    if parts.path or parts.query or parts.fragment or text.endswith(("?", "#")):
        return None
    return f"{parts.scheme}://{parts.hostname}" + ("" if port is None else f":{port}")


_STORE_SCHEMES = frozenset({"redis", "rediss", "unix"})
_PERSISTED_QUERY_FIELDS = ("max_bytes", "max_bytes_per_client", "ttl_s")
_JOB_FIELDS = (
    "ttl_s",
    "max",
    "max_per_client",
    "max_bytes_per_client",
    "max_followers",
    "max_followers_per_client",
    "max_running",
    "max_running_per_client",
    "heartbeat_s",
    "attempts",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything a gqlbatch server needs; build it once, then pass it down.

    Attributes:
        upstreams: the configured REST services, by name. A target is only ever one of these.
        max_items: items per batch; past it the batch is rejected with BATCH_TOO_LARGE.
        max_fanout: upstream calls a batch may ask for, forEach elements included.
        max_concurrency: upstream calls in flight per batch, unless a batch asks for fewer.
        batch_timeout_ms: the deadline of a whole batch, unless a batch asks for a shorter one.
        max_response_bytes: the largest upstream body read; past it UPSTREAM_BAD_RESPONSE.
        max_request_bytes: the largest incoming request body.
        forward_headers: incoming headers copied onto every sub-request (case-insensitive).
        graphiql: serve GraphiQL on GET /graphql from a browser.
        graphiql_assets_dir: a folder made by `gqlbatch graphiql --download`: GraphiQL's
            page then loads its files from this server, not from unpkg.com.
        max_query_depth, max_query_aliases, max_query_tokens: how big a GraphQL document may
            be; past them QUERY_TOO_COMPLEX.
        max_outstanding_per_client: upstream calls one client may have admitted at once, over
            all its batches; past it a batch is refused whole with TOO_MANY_REQUESTS.
        max_outstanding_total: upstream calls all clients together may have admitted at once.
        retry_after_s: the Retry-After a refused client is given.
        retries: when and how upstream calls are retried.
        idempotency_ttl_s: how long a batch's Idempotency-Key and its result are kept.
        idempotency_max_records: how many are kept at most; the oldest go first.
        idempotency_max_bytes: the upstream bytes all kept results may hold together; the
            oldest go first.
        idempotency_max_record_bytes: a batch whose responses are larger keeps only its key:
            a resend is told to use a new key, and never runs the writes again.
        max_json_depth: how deeply a JSON body (a client's or an upstream's) may nest.
        max_query_bytes: the largest GraphQL document; refused before it is parsed.
        max_operations: GraphQL operations one POST may carry as an array (operation
            batching); past it BATCH_TOO_LARGE. Their batches share one request's limits.
        max_rendered_call_bytes: the largest one call may be once its placeholders are
            substituted (path, query, headers and body); past it the item fails, unsent.
        max_rendered_batch_bytes: the same, for all the calls of a batch together.
        max_batch_response_bytes: upstream response bytes one batch may read; items past it
            fail with BATCH_TOO_LARGE.
        max_select_paths: paths one `body(select:)` may name.
        max_document_check_ms: the time one request's GraphQL documents may take to parse
            and validate, together (a document seen before costs next to nothing); the
            operations past it are refused with QUERY_TOO_COMPLEX.
        max_checked_values: JSON values (each scalar, list and object) of the bodies and
            answers one request may have checked against OpenAPI documents; a body past it
            is refused with REQUEST_TOO_LARGE, an answer past it goes unchecked.
        max_outstanding_per_address: upstream calls all the clients of one address may have
            in flight at once, whatever credentials they send.
        trusted_proxies: addresses (or networks) of proxies whose X-Forwarded-For is believed
            when working out a client's address.
        header_timeout_s: the time a connection has to send a complete request head, from
            when it opened or its previous response was sent; then it is closed.
        body_timeout_s: the time a request has to send its whole body; then it gets 408.
        write_timeout_s: the time a client that does not read may keep an answer waiting
            (bytes written and not yet taken); then its connection is closed.
        max_connections: client connections served at once; more are closed on arrival.
        ws_max_per_client: websockets one client may hold open; past it, 429.
        ws_max_per_address: websockets one address may hold open; past it, 429.
        ws_idle_timeout_s: a websocket with no operation open and nothing from its client
            for this long is closed.
        ws_init_timeout_s: a graphql-transport-ws websocket that has not sent
            `connection_init` within this long is closed.
        ws_max_operations: operations one websocket may have running at once; past it a new
            one gets an error ("Subscription limit reached", Strawberry's) without running.
        introspection: answer `__schema` and `__type` queries; switch off for production.
        store_url: a Redis URL (`redis://host:6379/0`) for the state several processes
            share: outstanding-call places and idempotency records. None keeps them in this
            process's memory.
        jobs_ttl_s: how long a finished async batch (a job) and its results are kept.
        jobs_max: jobs kept at once; past it a new one is refused with TOO_MANY_REQUESTS.
        jobs_max_per_client: jobs one client may have kept at once, running or finished;
            past it that client's new ones are refused with TOO_MANY_REQUESTS.
        jobs_max_bytes_per_client: the bytes one client's finished jobs' results may take,
            packed; past it its oldest finished jobs are forgotten first, and a job that alone
            is over it keeps its items' states, statuses and errors, not their bodies.
        jobs_max_followers: followers one job may have at once in one process
            (`Subscription.batchJob`); past it TOO_MANY_REQUESTS.
        jobs_max_followers_per_client: followers one client may have at once in one process.
        jobs_max_running: jobs one process runs at once; the others wait their turn (with
            the shared store, on its queue).
        jobs_max_running_per_client: of those, jobs of one client, without the shared store
            (with it, jobs are taken from the queue in the order they came).
        jobs_heartbeat_s: with the shared store, a running job's process tells the queue it is
            alive every third of this; a job not heard of for this long is taken over by
            another worker, which resumes it.
        jobs_attempts: how many times a job is started, counting the takeovers when the
            process running it stopped; past it the job fails (a batch that kills its worker
            does not go round the cluster forever).
        jobs_in_process: with the shared store, `serve` runs queued jobs too; False leaves
            them to `gqlbatch worker` processes.
        cors: which pages on other origins may call the gateway from a browser.
        persisted_queries: answer Apollo's automatic persisted queries (a document registered
            once, then sent by its SHA-256 alone).
        persisted_queries_max_bytes: the documents kept in this process's memory, in bytes;
            the least recently used go first (in the shared store, those registered per
            `persisted_queries_ttl_s`, which then bounds them too).
        persisted_queries_max_bytes_per_client: the documents one client may register, in
            bytes (in the shared store, per `persisted_queries_ttl_s`); past it its
            documents still run, sent in full, and are not kept.
        persisted_queries_ttl_s: how long the shared store keeps a registered document.
        trusted_documents: an Apollo persisted-query manifest: only its documents may run.
        door_options: batch options each door applies when its client does not set them,
            by door (`graphql`, `json`, `multipart`), in the plain form (`mode`, `onError`,
            `atomic`); the client's own options win.
        batch_paths: more paths that answer exactly like /batch, where a `{name}` segment
            matches one segment (`/v4.0/words/batch`, the Aspose SDK's; UCWA's
            `/ucwa/oauth/v1/applications/{app}/batch`), so that clients that post to their
            own service's path need no rewriting proxy.
        operations: named operations for Slides-style `batchUpdate` requests (POST
            /batchUpdate and `operations_paths`), by name.
        operations_paths: more paths that answer exactly like /batchUpdate; a `{name}`
            segment is readable in the operations as `{param.name}`.
    """

    upstreams: Mapping[str, UpstreamSettings]
    max_items: int = 100
    max_fanout: int = 1000
    max_concurrency: int = 100
    batch_timeout_ms: int = 30_000
    max_response_bytes: int = 8 * 1024 * 1024
    max_request_bytes: int = 10 * 1024 * 1024
    forward_headers: tuple[str, ...] = DEFAULT_FORWARD_HEADERS
    graphiql: bool = True
    graphiql_assets_dir: str | None = None
    max_query_depth: int = 12
    max_query_aliases: int = 50
    max_query_tokens: int = 5_000
    max_outstanding_per_client: int = 200
    max_outstanding_total: int = 2_000
    retry_after_s: int = 1
    retries: RetrySettings = field(default_factory=RetrySettings)
    idempotency_ttl_s: int = 86_400
    idempotency_max_records: int = 10_000
    idempotency_max_bytes: int = 64 * 1024 * 1024
    idempotency_max_record_bytes: int = 4 * 1024 * 1024
    max_json_depth: int = 128
    max_query_bytes: int = 64 * 1024
    max_operations: int = 10
    max_rendered_call_bytes: int = 10 * 1024 * 1024
    max_rendered_batch_bytes: int = 32 * 1024 * 1024
    max_batch_response_bytes: int = 64 * 1024 * 1024
    max_select_paths: int = 64
    max_checked_values: int = 100_000
    max_document_check_ms: int = 250
    max_outstanding_per_address: int = 500
    trusted_proxies: tuple[str, ...] = ()
    header_timeout_s: int = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: int = 30
    write_timeout_s: int = DEFAULT_WRITE_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    ws_max_per_client: int = 16
    ws_max_per_address: int = 64
    ws_idle_timeout_s: int = 60
    ws_init_timeout_s: int = 10
    ws_max_operations: int = 16
    introspection: bool = True
    door_options: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    batch_paths: tuple[str, ...] = ()
    operations: Mapping[str, NamedOperation] = field(default_factory=dict)
    operations_paths: tuple[str, ...] = ()
    cors: CorsSettings = field(default_factory=CorsSettings)
    persisted_queries: bool = True
    persisted_queries_max_bytes: int = 16 * 1024 * 1024
    persisted_queries_max_bytes_per_client: int = 1024 * 1024
    persisted_queries_ttl_s: int = 7 * 86_400
    trusted_documents: str | None = None
    store_url: str | None = None
    jobs_ttl_s: int = 86_400
    jobs_max: int = 10_000
    jobs_max_per_client: int = 100
    jobs_max_bytes_per_client: int = 64 * 1024 * 1024
    jobs_max_followers: int = 32
    jobs_max_followers_per_client: int = 64
    jobs_max_running: int = 10
    jobs_max_running_per_client: int = 4
    jobs_heartbeat_s: int = 10
    jobs_attempts: int = 3
    jobs_in_process: bool = True

    def __post_init__(self) -> None:
        if not self.upstreams:
            raise ConfigError("at least one upstream is required (--upstream URL)")
        for key, upstream in self.upstreams.items():
            if key != upstream.name:
                raise ConfigError(f"upstream key {key!r} differs from its name {upstream.name!r}")
        object.__setattr__(self, "upstreams", MappingProxyType(dict(self.upstreams)))
        if self.store_url is not None and urlsplit(self.store_url).scheme not in _STORE_SCHEMES:
            raise ConfigError(
                f"store.url {self.store_url!r} must start with redis://, rediss:// or unix://"
            )
        check_positive("limits", self, _LIMIT_FIELDS)
        check_positive("jobs", self, _JOB_FIELDS, attr="jobs_")
        check_positive(
            "persisted_queries", self, _PERSISTED_QUERY_FIELDS, attr="persisted_queries_"
        )
        for key in ("batch_paths", "operations_paths"):
            for pattern in getattr(self, key):
                problem = _door_path_problem(pattern)
                if problem:
                    raise ConfigError(f"doors.{key}: {pattern!r} {problem}")
        for name, operation in self.operations.items():
            if operation.upstream is not None and operation.upstream not in self.upstreams:
                raise ConfigError(
                    f"operations.{name}.upstream {operation.upstream!r} is not an upstream"
                )
            if operation.upstream is None and self.default_upstream() is None:
                raise ConfigError(f"operations.{name}.upstream is needed: there are several")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as exc:
                raise ConfigError(f"server.trusted_proxies: {proxy!r} is not an address") from exc

    @classmethod
    def from_upstream_urls(cls, urls: Sequence[str], **options: object) -> Settings:
        """Build settings from `URL` or `name=URL` strings, as `--upstream` takes them."""
        upstreams = {
            name: UpstreamSettings(name=name, base_url=url)
            for name, url in upstream_flags(urls).items()
        }
        return cls(upstreams=upstreams, **options)  # type: ignore[arg-type]

    def forwarded_header_names(self) -> tuple[str, ...]:
        """Every header some upstream may be sent, server-wide and per upstream, once each
        (case-insensitive, first spelling kept): what identifies a client, what a browser
        page may send, and what an answer varies by."""
        names: dict[str, str] = {}
        for upstream in self.upstreams.values():
            for name in (*self.forward_headers, *(upstream.forward_headers or ())):
                names.setdefault(name.lower(), name)
        return tuple(names.values())

    def default_upstream(self) -> str | None:
        """The upstream a sub-request gets when it names none: the only one, if there is one."""
        return next(iter(self.upstreams)) if len(self.upstreams) == 1 else None


_DOOR_SEGMENT = re.compile(r"^(?:\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z0-9._~!$&'()*+,;=:@-]+)$")
_DOORS_BUILT_IN = frozenset({"/batch", "/$batch", "/graphql", "/batchupdate"})


def _door_path_problem(pattern: str) -> str | None:
    """Why *pattern* cannot be a door path (`/v4.0/words/batch`, `/ucwa/{app}/batch`), or
    None: it starts with '/', and each segment is literal or one `{name}`."""
    if not pattern.startswith("/") or pattern == "/":
        return "must start with '/' and name a path, such as '/v4.0/words/batch'"
    for segment in pattern.strip("/").split("/"):
        if not _DOOR_SEGMENT.match(segment):
            return f"has segment {segment!r}: each is literal, or one {{name}} for any segment"
    if pattern.rstrip("/").lower() in _DOORS_BUILT_IN:
        return "is a door already"
    return None
