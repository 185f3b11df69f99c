"""What travels to and from an upstream: methods, calls, responses, and how a response was
obtained. The bottom of the package: imports only `types`, so that the results, the codecs and
the upstream client need nothing of the planner to name a call or a response.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import field
from enum import StrEnum
from typing import Any

from gqlbatch.core.types import JSON, Headers, frozen_for_type_checkers

__all__ = [
    "FRAMING_HEADERS",
    "HEADER_NAME",
    "HOP_BY_HOP_HEADERS",
    "IDEMPOTENCY_KEY",
    "IDEMPOTENT_METHODS",
    "READ_METHODS",
    "SAFE_METHODS",
    "BodyEncoding",
    "Fetch",
    "Fetched",
    "Method",
    "Send",
    "UpstreamCall",
    "UpstreamResponse",
]


class Method(StrEnum):
    """The HTTP methods a sub-request may use."""

    GET = "GET"
    HEAD = "HEAD"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"
    OPTIONS = "OPTIONS"


READ_METHODS = frozenset({Method.GET, Method.HEAD})
"""Reads: what `Query.batch` allows, and what calls may share (deduplication, in-flight)."""
SAFE_METHODS = READ_METHODS | {Method.OPTIONS}
"""Methods that change nothing upstream: an atomic batch has nothing to undo for them."""
IDEMPOTENT_METHODS = SAFE_METHODS | {Method.PUT, Method.DELETE}
"""Methods a retry may repeat without an Idempotency-Key (RFC 9110 §9.2.2)."""

HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP field name (RFC 9110 token), for `fullmatch`."""
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
"""An Idempotency-Key, on a batch or an item: 1 to 255 printable ASCII characters."""
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})
"""Headers that frame a message's body: always the sender's own, never passed on."""
HOP_BY_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "te", "trailer", "upgrade", "proxy-connection"}
)
"""Headers about one connection (RFC 9110 §7.6.1), never passed on."""


class BodyEncoding(StrEnum):
    """How an upstream body is carried in `body`."""

    JSON = "JSON"
    TEXT = "TEXT"
    BASE64 = "BASE64"
    EMPTY = "EMPTY"


@frozen_for_type_checkers()
class UpstreamCall:
    """A fully rendered upstream call. Hashable: it is also the DataLoader's cache key, so two
    calls are coalesced only when upstream, method, path, query, headers (credentials among them)
    and body are all the same.

    Frozen for type checkers only, like the other per-item values: a batch builds one per call
    it renders, and a frozen dataclass set each of its nine fields through `object.__setattr__`,
    half the time it took to build one. Its hash is worked out from the fields once, when it is
    built; no code may assign a field afterwards (mypy refuses it), so the hash stays true."""

    upstream: str
    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: Headers = ()
    body: bytes | None = None
    timeout_ms: int | None = None
    _hash: int = field(init=False, repr=False, compare=False)
    _size: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A call is a dict key several times over (its DataLoader, the in-flight map, the
        # retries): its hash, of every field, is worked out once; so is its size, which the
        # budget and the client's URL cache both read.
        fields = (self.upstream, self.method, self.path, self.query, self.headers, self.body)
        # Through object.__setattr__: type checkers take the class as frozen.
        object.__setattr__(self, "_hash", hash((*fields, self.timeout_ms)))
        size = len(self.path) + (len(self.body) if self.body is not None else 0)
        for name, value in self.query:
            size += len(name) + len(value) + 2
        for name, value in self.headers:
            size += len(name) + len(value) + 4
        object.__setattr__(self, "_size", size)

    def __hash__(self) -> int:
        return self._hash

    @property
    def is_read(self) -> bool:
        """GET and HEAD: safe to share between identical calls."""
        return self.method in READ_METHODS

    @property
    def size(self) -> int:
        """About the bytes this call sends: its path, query, headers and body."""
        return self._size


@frozen_for_type_checkers()
class UpstreamResponse:
    """What an upstream answered, with its body decoded (DESIGN §7 "Bodies")."""

    status: int
    headers: Headers
    body: JSON
    body_encoding: BodyEncoding = BodyEncoding.JSON
    attempts: int = 1

    def with_attempts(self, attempts: int) -> UpstreamResponse:
        """The same response, noting how many attempts it took."""
        return self if attempts == self.attempts else dataclasses.replace(self, attempts=attempts)


@frozen_for_type_checkers()
class Fetched:
    """A response, and how it was obtained."""

    response: UpstreamResponse
    """Its `attempts` says how many tries the call took; the count is kept there only."""
    coalesced: bool = False
    bulk_call: str | None = None
    """The plural call that served this one, as "GET /users?id=1&id=2", when one did."""


Send = Callable[[UpstreamCall], Coroutine[Any, Any, UpstreamResponse]]
"""Sends one call upstream (the client, retries, admission and sharing wrap one another)."""
Fetch = Callable[[UpstreamCall], Awaitable[Fetched]]
"""The executor's I/O capability: one call in, its response and how it was obtained out."""
