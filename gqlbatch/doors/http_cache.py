"""HTTP caching of a read-only screen (`Query.batch` over GET, DESIGN §10a): the answer's
`Cache-Control`, `ETag` and `Vary`. Pure.

An answer is as fresh as its least fresh item. So:
- any item that did not succeed, or whose upstream said `no-store`, makes it `no-store`;
- otherwise its `max-age` is the smallest of its items' (`max-age`, or `s-maxage` for a
  shared cache, read as the same bound here); an item whose upstream said nothing about
  freshness, or `no-cache`, has none: the answer is `no-cache`, kept but revalidated with its
  ETag each time;
- it is `private` when the request forwarded credentials (the answer is this user's), or an
  upstream said `private`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, MutableMapping

from gqlbatch.core.result import ItemResult, State

__all__ = ["NO_STORE", "add_vary", "cache_control", "etag", "if_none_match", "vary"]

NO_STORE = "private, no-store"
_NOT_VARYING = frozenset(
    {"baggage", "traceparent", "tracestate", "user-agent", "x-correlation-id", "x-request-id"}
)
"""Forwarded headers that do not change an answer: naming them in Vary would make every
request a cache miss."""


def cache_control(items: Iterable[ItemResult], *, credentials: bool) -> str:
    """The `Cache-Control` of an answer made of *items*, all of a GET's batches."""
    private = credentials
    max_age: int | None = None
    revalidate = False
    for item in items:
        if item.state is not State.SUCCEEDED:
            return NO_STORE
        directives = _directives(item.headers)
        if "no-store" in directives:
            return NO_STORE
        private = private or "private" in directives
        age = _age(directives)
        if age is None or "no-cache" in directives:
            revalidate = True
        else:
            max_age = age if max_age is None else min(max_age, age)
    scope = "private" if private else "public"
    if revalidate or max_age is None or max_age == 0:
        return f"{scope}, no-cache"
    return f"{scope}, max-age={max_age}"


def etag(body: bytes) -> str:
    """A strong validator of these exact bytes."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def if_none_match(header: str | None, tag: str) -> bool:
    """Whether a request's `If-None-Match` names *tag* (or `*`): it already has this answer."""
    if header is None:
        return False
    candidates = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in candidates or tag in candidates


def vary(forwarded: Iterable[str]) -> str:
    """`Vary` for an answer that depends on `Accept` and on these forwarded headers."""
    names = ["Accept", *(n for n in forwarded if n.lower() not in _NOT_VARYING)]
    return ", ".join(dict.fromkeys(names))


def add_vary(headers: MutableMapping[str, str], name: str) -> None:
    """Name *name* in the `Vary` of *headers*, once."""
    names = [v.strip() for v in headers.get("Vary", "").split(",") if v.strip()]
    if name.lower() not in (n.lower() for n in names):
        headers["Vary"] = ", ".join([*names, name])


def _directives(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    directives: dict[str, str] = {}
    for name, value in headers:
        if name.lower() == "cache-control":
            for part in value.split(","):
                key, _, argument = part.strip().partition("=")
                if key:
                    directives[key.lower()] = argument.strip().strip('"')
    return directives


def _age(directives: dict[str, str]) -> int | None:
    ages = []
    for key in ("max-age", "s-maxage"):
        if key in directives:
            try:
                ages.append(max(0, int(directives[key])))
            except ValueError:
                return None  # unreadable: treated as no freshness at all
    return min(ages) if ages else None
