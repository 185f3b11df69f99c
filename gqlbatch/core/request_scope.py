"""The request the running code serves, for the log lines it writes.

Set by the HTTP door for each request (its `X-Request-Id`, or one made up) and read by the log
formatter, so that every line, the library's and the gateway's, says which request it is
about. A context variable: each task a request starts (its items, its calls) inherits it.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["current_request_id"]

current_request_id: ContextVar[str | None] = ContextVar("gqlbatch_request_id", default=None)
