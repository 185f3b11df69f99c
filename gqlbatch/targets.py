"""What a sub-request may target: a path that stays below its upstream, and headers that
cannot smuggle a second request. Pure; used when a batch is validated (`request.py`) and when a
substituted value is encoded (`call.py`), so both apply the same rules.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

__all__ = ["decodings", "header_problem", "header_value_problem", "is_dot_segment", "path_problem"]

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f\\#]")
_DOT_SEGMENTS = frozenset({".", ".."})
_FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
    }
)


def path_problem(path: str) -> str | None:
    """Why *path* could leave its upstream, or None when it is a plain path below it."""
    if not path.startswith("/"):
        return "path must start with '/' and be relative to the upstream"
    if path.startswith("//"):
        return "path must not start with '//', which names another host"
    if _UNSAFE_CHARS.search(path):
        return "path must not contain spaces, control characters, backslashes or '#'"
    variants = [path] if path.isascii() and "%" not in path else decodings(path)
    for variant in variants:
        if _UNSAFE_CHARS.search(variant):
            return "path must not hide control characters or backslashes in percent-encoding"
        if _DOT_SEGMENTS.intersection(variant.split("/")):
            return "path must not contain '.' or '..' segments, encoded or not"
    return None


def is_dot_segment(value: str) -> bool:
    """True when *value*, decoded and folded as a lenient server might, is '.' or '..'."""
    return bool(_DOT_SEGMENTS.intersection(decodings(value)))


def decodings(text: str) -> list[str]:
    """*text* percent-decoded up to three times (double- and triple-encoding), each form also
    folded to NFKC, which turns look-alikes such as U+FF0E FULLWIDTH FULL STOP into '.'."""
    out, current = [], text
    for _ in range(3):
        out.append(unicodedata.normalize("NFKC", current))
        decoded = unquote(current)
        if decoded == current:
            break
        current = decoded
    out.append(unicodedata.normalize("NFKC", current))
    return out


def header_problem(name: str, value: str) -> str | None:
    """Why a sub-request may not send this header, or None."""
    if not _HEADER_NAME.match(name):
        return f"{name!r} is not a valid header name"
    if name.lower() in _FORBIDDEN_HEADERS or name.lower().startswith("proxy-"):
        return f"{name} is set by gqlbatch and may not be sent by a sub-request"
    return header_value_problem(value)


def header_value_problem(value: str) -> str | None:
    """Why *value* would split a header into two, or None."""
    if any(c in value for c in "\r\n\x00"):
        return "a header value must not contain CR, LF or NUL"
    return None
