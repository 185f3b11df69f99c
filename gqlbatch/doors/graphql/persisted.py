"""Persisted queries: Apollo's automatic persisted queries (APQ), and trusted documents.

APQ (Apollo's protocol, `extensions.persistedQuery = {version: 1, sha256Hash}`):
- a hash alone that is not stored gets PERSISTED_QUERY_NOT_FOUND, and Apollo's link sends it
  again with its document;
- a hash with its document registers the document, once its SHA-256 is checked;
- a hash alone that is stored runs its document, over GET too, which keeps the URL of a large
  screen short.

Trusted documents (`[persisted_queries] trusted_documents`, an Apollo persisted-query
manifest): only the documents of the manifest run, by hash or in full; nothing registers.

The documents live in a `PersistedQueryStore`: memory (bounded, least recently used goes
first), or the shared Redis store (`redis_store.RedisPersistedQueries`).

A document is registered only once it has parsed and validated (`PersistedQueries.register`,
called by the view after execution), and each client may register so many bytes of them
(`[persisted_queries] max_bytes_per_client`, per `ttl_s` in Redis) beside the store's own
bound: past it, its documents run, sent in full, and are not kept (issue 24: 1,500
registrations kept 94 MiB for 7 days, invalid documents among them).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections import Counter
from collections.abc import Mapping
from typing import Protocol

from gqlbatch.core.errors import ConfigError, ErrorCode, GqlbatchError, StoreUnavailable
from gqlbatch.core.kept import Kept

__all__ = [
    "MemoryPersistedQueries",
    "PersistedQueries",
    "PersistedQueryRefused",
    "PersistedQueryStore",
    "trusted_documents",
]

_HASH = re.compile(r"^[0-9a-fA-F]{64}$")
NOT_FOUND = "PersistedQueryNotFound"
"""The message Apollo's link looks for, beside the code."""
NOT_SUPPORTED = "PersistedQueryNotSupported"


class PersistedQueryRefused(GqlbatchError):
    """An operation whose document cannot be found, registered or run; nothing ran."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PersistedQueryStore(Protocol):
    """Where registered documents are kept, by their SHA-256 in lower-case hex."""

    async def get(self, sha256: str) -> str | None: ...

    async def put(self, sha256: str, document: str, client: str) -> bool:
        """Keep *document*, registered by *client*; False when the client's quota refused
        it (it is not kept)."""
        ...


class MemoryPersistedQueries:
    """This process's documents, at most *max_bytes* of them, and *max_bytes_per_client* of
    one client's registering: the least recently used go first, so that registering
    documents without end cannot grow the process, nor one client's crowd out the others'."""

    def __init__(self, max_bytes: int, max_bytes_per_client: int = 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._per_client = max_bytes_per_client
        self._documents: Kept[str, tuple[str, str]] = Kept(
            sys.maxsize, max_weight=max_bytes, forgotten=self._forget
        )
        """Each document, by hash, with the client that registered it, weighed in bytes."""
        self._clients: Counter[str] = Counter()

    async def get(self, sha256: str) -> str | None:
        kept = self._documents.get(sha256)
        return None if kept is None else kept[0]

    async def put(self, sha256: str, document: str, client: str) -> bool:
        size = len(document.encode())
        if self._documents.get(sha256) is not None:
            return True
        if size > self._max_bytes or self._clients[client] + size > self._per_client:
            return False
        self._clients[client] += size
        self._documents.put(sha256, (document, client), size)
        return True

    def _forget(self, _sha256: str, kept: tuple[str, str], size: int) -> None:
        owner = kept[1]
        self._clients[owner] -= size
        if self._clients[owner] <= 0:
            del self._clients[owner]


class PersistedQueries:
    """Turns an operation's `query` and `extensions` into the document to run.

    With *trusted* (hash to document), only those documents run. Otherwise, with *store*,
    APQ registers and finds documents; without it, a hash is answered with
    PERSISTED_QUERY_NOT_SUPPORTED, which makes Apollo's link stop sending hashes.
    """

    def __init__(
        self, store: PersistedQueryStore | None, trusted: Mapping[str, str] | None = None
    ) -> None:
        self._store = store
        self._trusted = trusted

    @property
    def trusted(self) -> frozenset[str] | None:
        """The SHA-256 digests of the documents that may run; None when any may."""
        return None if self._trusted is None else frozenset(self._trusted)

    async def document(self, query: str | None, extensions: object) -> str | None:
        """The document to run: *query*, or the one its persisted-query hash names. A
        document sent with its hash is registered only once it has run (`register`).

        Raises:
            PersistedQueryRefused: PERSISTED_QUERY_NOT_FOUND, _NOT_SUPPORTED or _NOT_IN_LIST,
                INVALID_INPUT for a malformed extension or a hash that is not the query's, or
                STORE_UNAVAILABLE when the shared store did not answer.
        """
        sha256 = _requested_hash(extensions)
        if self._trusted is not None:
            return self._trusted_document(query, sha256)
        if sha256 is None:
            return query
        if self._store is None:
            raise PersistedQueryRefused(ErrorCode.PERSISTED_QUERY_NOT_SUPPORTED, NOT_SUPPORTED)
        if query is None:
            try:
                stored = await self._store.get(sha256)
            except StoreUnavailable as exc:  # the operation's answer; the client sends it again
                message = exc.problems[0].message
                raise PersistedQueryRefused(ErrorCode.STORE_UNAVAILABLE, message) from None
            if stored is None:
                raise PersistedQueryRefused(ErrorCode.PERSISTED_QUERY_NOT_FOUND, NOT_FOUND)
            return stored
        _check_hash(query, sha256)
        return query

    async def register(self, query: str | None, extensions: object, client: str) -> bool:
        """Keep *query* under the hash its *extensions* name, for *client*, once it has
        parsed and validated (the view calls this after running it); False when nothing was
        kept (no hash, trusted documents, or the client's quota)."""
        if self._store is None or self._trusted is not None or query is None:
            return False
        try:
            sha256 = _requested_hash(extensions)
        except PersistedQueryRefused:
            return False
        if sha256 is None or _sha256(query) != sha256:
            return False
        try:
            return await self._store.put(sha256, query, client)
        except StoreUnavailable:  # it ran: its answer stands; a later send registers it
            return False

    def _trusted_document(self, query: str | None, sha256: str | None) -> str | None:
        assert self._trusted is not None
        if query is None and sha256 is None:
            return None  # no document at all: the view says so
        if query is not None:
            if sha256 is not None:
                _check_hash(query, sha256)
            sha256 = _sha256(query)
        assert sha256 is not None
        document = self._trusted.get(sha256)
        if document is None:
            raise PersistedQueryRefused(
                ErrorCode.PERSISTED_QUERY_NOT_IN_LIST,
                "only the trusted documents of the manifest run here, and this one is not "
                "among them ([persisted_queries] trusted_documents)",
            )
        return document


def trusted_documents(text: str, source: str) -> dict[str, str]:
    """The documents of an Apollo persisted-query manifest (`generate-persisted-query-
    manifest`), by hash; each hash is checked against its body.

    Raises:
        ConfigError: naming *source* and what is wrong with it.
    """
    try:
        manifest = json.loads(text)
        operations = manifest["operations"]
        documents = {op["id"].lower(): op["body"] for op in operations}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"{source}: not an Apollo persisted-query manifest "
            '({"format": "apollo-persisted-query-manifest", "operations": [{"id", "body"}]}): '
            f"{type(exc).__name__}: {exc}"
        ) from None
    for sha256, body in documents.items():
        if not isinstance(body, str) or _sha256(body) != sha256:
            raise ConfigError(f"{source}: operation {sha256} is not the SHA-256 of its body")
    return documents


def _requested_hash(extensions: object) -> str | None:
    if not isinstance(extensions, dict) or "persistedQuery" not in extensions:
        return None
    persisted = extensions["persistedQuery"]
    sha256 = persisted.get("sha256Hash") if isinstance(persisted, dict) else None
    if (
        not isinstance(persisted, dict)
        or persisted.get("version") != 1
        or not isinstance(sha256, str)
        or not _HASH.match(sha256)
    ):
        raise PersistedQueryRefused(
            ErrorCode.INVALID_INPUT,
            'extensions.persistedQuery must be {"version": 1, "sha256Hash": "<64 hex digits>"}',
        )
    return sha256.lower()


def _check_hash(query: str, sha256: str) -> None:
    if _sha256(query) != sha256:
        raise PersistedQueryRefused(
            ErrorCode.INVALID_INPUT,
            "extensions.persistedQuery.sha256Hash is not the SHA-256 of the query sent with it",
        )


def _sha256(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()
