"""Per-client admission: how many upstream calls each client may have outstanding (in flight)
at once, across all of its batches (DESIGN §9).

Pure bookkeeping, in memory, for one process. A batch reserves the calls it may have in flight
(its concurrency, which the executor enforces) before anything runs and releases them when it
ends; a batch that would pass the limit is refused whole, so that the client can resend it
unchanged.
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
    """Counts the calls admitted and not yet finished: per client, and in all."""

    def __init__(self, per_client: int, total: int, retry_after_s: int) -> None:
        self._per_client = per_client
        self._total = total
        self._retry_after_s = retry_after_s
        self._held: dict[str, int] = {}
        self._held_total = 0

    def held(self, client: str | None = None) -> int:
        """Calls *client* has outstanding now, or all clients together without one."""
        return self._held_total if client is None else self._held.get(client, 0)

    def largest_admissible(self) -> int:
        """The most one batch can ever reserve; batches hold their in-flight calls to it."""
        return min(self._per_client, self._total)

    def check(self, client: str) -> None:
        """Refuse at once, before a batch is even parsed, when *client* or the server is
        already at its limit: under overload, refusing must cost less than admitting.

        Raises:
            BatchRejected: TOO_MANY_REQUESTS, as `admit` would.
        """
        if self.held(client) >= self._per_client:
            raise self._refuse(
                f"this client already has {self.held(client)} upstream calls "
                f"outstanding; the limit is {self._per_client}"
            )
        if self._held_total >= self._total:
            raise self._refuse(
                f"the server already has {self._held_total} upstream calls "
                f"outstanding; the limit is {self._total}"
            )

    @contextmanager
    def admit(self, client: str, calls: int) -> Iterator[None]:
        """Hold *calls* for *client* for the duration of the block.

        Raises:
            BatchRejected: TOO_MANY_REQUESTS, with retry_after_s, when the client, or the server
                as a whole, would pass its limit. Nothing is held then.
        """
        held = self.held(client)
        if held + calls > self._per_client:
            raise self._refuse(
                f"this client has {held} upstream calls outstanding and the "
                f"batch asks for {calls} more; the limit is {self._per_client}"
            )
        if self._held_total + calls > self._total:
            raise self._refuse(
                f"the server has {self._held_total} upstream calls outstanding "
                f"and the batch asks for {calls} more; the limit is {self._total}"
            )
        self._held[client] = held + calls
        self._held_total += calls
        try:
            yield
        finally:
            self._held_total -= calls
            left = self._held[client] - calls
            if left:
                self._held[client] = left
            else:
                del self._held[client]

    def _refuse(self, why: str) -> BatchRejected:
        message = f"{why}. Nothing was run: send it again after {self._retry_after_s} s"
        return BatchRejected(
            [Problem(ErrorCode.TOO_MANY_REQUESTS, message)], retry_after_s=self._retry_after_s
        )
