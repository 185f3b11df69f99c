"""Per-client admission: how many upstream calls each client may have outstanding at once,
across all of its batches (DESIGN §9).

Pure bookkeeping, in memory, for one process. A batch reserves its calls before anything
runs and releases them when it ends; a batch that would pass the limit is refused whole, so
that the client can resend it unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from gqlbatch.errors import BatchRejected, ErrorCode, Problem

__all__ = ["OutstandingCalls", "client_key"]


def client_key(authorization: str | None, remote: str | None) -> str:
    """Who a batch counts against: a hash of its credentials, or its address without any."""
    if authorization:
        return "cred:" + hashlib.sha256(authorization.encode()).hexdigest()[:16]
    return f"addr:{remote or 'unknown'}"


class OutstandingCalls:
    """Counts the calls each client has admitted and not yet finished."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self._limit = limit
        self._retry_after_s = retry_after_s
        self._held: dict[str, int] = {}

    def held(self, client: str) -> int:
        """Calls *client* has outstanding now."""
        return self._held.get(client, 0)

    @contextmanager
    def admit(self, client: str, calls: int) -> Iterator[None]:
        """Hold *calls* for *client* for the duration of the block.

        Raises:
            BatchRejected: TOO_MANY_REQUESTS, with retry_after_s, when the client would pass
                the limit. Nothing is held then.
        """
        held = self.held(client)
        if held + calls > self._limit:
            raise BatchRejected(
                [
                    Problem(
                        ErrorCode.TOO_MANY_REQUESTS,
                        f"this client has {held} upstream calls outstanding and the batch asks "
                        f"for {calls} more; the limit is {self._limit}. Nothing was run: send "
                        f"it again after {self._retry_after_s} s",
                    )
                ],
                retry_after_s=self._retry_after_s,
            )
        self._held[client] = held + calls
        try:
            yield
        finally:
            left = self._held[client] - calls
            if left:
                self._held[client] = left
            else:
                del self._held[client]
