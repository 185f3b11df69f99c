"""What a sub-request may target: a path that stays below its upstream, and headers that
cannot smuggle a second request or re-route this one. Pure; used when a batch is validated
(`request.py`) and when a substituted value is encoded (`call.py`), so both apply the same
rules.

A path is judged in every form a server on the way might read it in: as sent, and after each
round of percent-decoding until nothing changes, each also folded to NFKC (which turns
look-alikes such as U+FF0E FULLWIDTH FULL STOP into '.'). In each form, a segment's `;`
parameters are dropped before it is compared, because Tomcat and Jetty read `..;x` as `..`.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

from gqlbatch.core.wire import FRAMING_HEADERS, HEADER_NAME, HOP_BY_HOP_HEADERS

__all__ = [
    "MAX_DECODINGS",
    "batch_path",
    "header_problem",
    "header_value_problem",
    "path_problem",
    "segment_problem",
]

MAX_DECODINGS = 3
"""Rounds of percent-decoding a path may need; one that still changes after them is refused."""

_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f\\#]")
# RFC 9110 field-value: visible characters, space and tab; any other control character lets a
# server or a proxy split or end the header (aiohttp itself refuses to send them).
_UNSAFE_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_MALFORMED_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DOT_SEGMENTS = frozenset({".", ".."})
_BATCH_PATHS = frozenset({"/batch", "/$batch", "/graphql", "/batchupdate"})
_FORBIDDEN_HEADERS = FRAMING_HEADERS | HOP_BY_HOP_HEADERS | {"host"}
# Headers that common frameworks and proxies read as "the real method, URL or host": one of
# them turns a read-only GET into a DELETE, or a request for one path into one for another.
_ROUTING_HEADERS = frozenset(
    {
        "forwarded",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-original-uri",
        "x-original-host",
        "x-rewrite-url",
        "x-host",
        "x-real-ip",
    }
)
_FORBIDDEN_PREFIXES = ("proxy-", "x-forwarded-")


def path_problem(path: str) -> str | None:
    """Why *path* could leave its upstream, or None when it is a plain path below it."""
    if not path.startswith("/"):
        return "path must start with '/' and be relative to the upstream"
    if path.startswith("//"):
        return "path must not start with '//', which names another host"
    if _UNSAFE_CHARS.search(path):
        return "path must not contain spaces, control characters, backslashes or '#'"
    if path.isascii() and "%" not in path and "." not in path:
        return None  # one form only, without a dot: no segment to step out with
    return segment_problem(path, strict=True)


def segment_problem(text: str, *, strict: bool = False) -> str | None:
    """Why *text* (a path, or a value substituted into one) reads as a step out of its
    directory in some decoded form, or None. *strict* also refuses a '%' that starts no
    escape: a client's path must be well-formed, while a substituted value is encoded
    (its '%' sent as '%25') and may hold any text."""
    forms, problem = _forms(text, strict=strict)
    if problem:
        return problem
    for form in forms:
        if form is not text and _UNSAFE_CHARS.search(form):
            return "path must not hide control characters or backslashes in percent-encoding"
        if "." in form and any(_bare(seg) in _DOT_SEGMENTS for seg in form.split("/")):
            return "path must not contain '.' or '..' segments (encoded, or with ';' parameters)"
    return None


def batch_path(path: str, also: tuple[str, ...] = ()) -> bool:
    """True when *path*, in any decoded form, names a batch endpoint (`/batch`, `/$batch`,
    `/graphql`, or a configured door path of *also*, where `{name}` is any one segment), so
    that a sub-request cannot be a batch itself."""
    if path.isascii() and "%" not in path:
        forms = [path]  # its one form
    else:
        forms, _ = _forms(path, strict=False)
    for form in forms:
        bare = _bare(form.rstrip("/")).lower()
        if bare in _BATCH_PATHS or any(_matches(bare, pattern) for pattern in also):
            return True
    return False


def _matches(path: str, pattern: str) -> bool:
    given = path.strip("/").split("/")
    wanted = pattern.lower().strip("/").split("/")
    return len(given) == len(wanted) and all(
        w == g or (w.startswith("{") and w.endswith("}"))
        for w, g in zip(wanted, given, strict=True)
    )


def _forms(text: str, *, strict: bool) -> tuple[list[str], str | None]:
    """Every form of *text*: as given and decoded round by round, each also NFKC-folded; or
    the problem that stops decoding (a malformed escape, too many rounds)."""
    if text.isascii() and "%" not in text:
        return [text], None  # the usual case: nothing to decode, nothing to fold
    forms: list[str] = []
    current = text
    for _ in range(MAX_DECODINGS + 1):
        if strict and _MALFORMED_ESCAPE.search(current):
            return [], "path has a '%' that is not followed by two hex digits"
        forms += [current, unicodedata.normalize("NFKC", current)]
        decoded = unquote(current)
        if decoded == current:
            return forms, None
        current = decoded
    return [], f"path is percent-encoded more than {MAX_DECODINGS} times"


def _bare(segment: str) -> str:
    # "..;jsessionid=1" is ".." to Tomcat and Jetty: a segment's parameters do not count.
    return segment.split(";", 1)[0]


def header_problem(name: str, value: str) -> str | None:
    """Why a sub-request may not send this header, or None."""
    if not HEADER_NAME.fullmatch(name):
        return f"{name!r} is not a valid header name"
    lowered = name.lower()
    if lowered in _FORBIDDEN_HEADERS or lowered.startswith(_FORBIDDEN_PREFIXES):
        return f"{name} is set by gqlbatch and may not be sent by a sub-request"
    if lowered in _ROUTING_HEADERS:
        return f"{name} re-routes a request on common servers and may not be sent"
    return header_value_problem(value)


def header_value_problem(value: str) -> str | None:
    """Why *value* would split or end a header, or cannot be sent as one, or None."""
    if _UNSAFE_VALUE.search(value):
        return "a header value must not contain control characters (CR, LF, NUL and others)"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "a header value must be text that encodes as UTF-8"
    return None
