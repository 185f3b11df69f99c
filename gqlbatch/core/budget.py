"""What one HTTP request may spend, shared by every batch in it (GraphQL aliases, several
operations): items, upstream calls, rendered bytes sent, response bytes kept, and the work
of checking bodies and answers against OpenAPI documents.

Pure and synchronous. DESIGN §9: "The limits on items, fan-out and outstanding calls apply to
a whole HTTP request", so ten aliases of 200 calls get the fan-out of one, not ten.

The response bytes are charged where they are read, chunk by chunk, inside the upstream client,
which every batch shares and whose `send(call)` seam carries only the call. The batch's budget
reaches it through a context variable: set by the engine for the batch's task, inherited by
every task the batch starts, and so never seen by another batch's reads.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from gqlbatch.core.errors import BatchTooLarge, CallTooLarge
from gqlbatch.core.rendering import Meter
from gqlbatch.core.types import JSON

__all__ = ["BatchBudget", "RequestBudget", "current_budget"]


@dataclass(slots=True, kw_only=True)
class RequestBudget:
    """What is left for the rest of one HTTP request."""

    items: int
    calls: int
    rendered_bytes: int
    response_bytes: int
    max_call_bytes: int
    checked_values: int = 100_000
    """JSON values that may still be checked against OpenAPI schemas (bodies and answers)."""
    pattern_s: float = 0.5
    """Seconds that the schemas' `pattern`s may still spend matching."""
    documents_s: float = 0.25
    """Seconds its GraphQL documents may still take to parse and validate (`[limits]
    max_document_check_ms`); one seen before costs next to nothing (issue 24: ten new
    documents of one POST held the loop 0.94 s)."""

    def take_batch(self, items: int, calls: int) -> bool:
        """Spend a batch's *items* and the *calls* known before it runs; or nothing, and
        False, when either is more than is left."""
        if items > self.items or calls > self.calls:
            return False
        self.items -= items
        self.calls -= calls
        return True

    def take_checked(self, values: int) -> bool:
        """Spend the checking of *values* JSON values, or nothing and False when fewer are
        left."""
        if values > self.checked_values:
            return False
        self.checked_values -= values
        return True

    def take_calls(self, count: int) -> bool:
        """Spend *count* upstream calls, or nothing and False when fewer are left."""
        if count > self.calls:
            return False
        self.calls -= count
        return True


class BatchBudget:
    """One batch's share: it charges the request's budget and counts what this batch used."""

    def __init__(self, request: RequestBudget) -> None:
        self.request = request
        self.rendered_bytes = 0
        self.response_bytes = 0
        # What the batch's renderings learnt of its values (`Meter`): shared, so that a result
        # embedded in every call of a batch is written out to be measured once, not per call.
        self._texts: dict[int, tuple[JSON, str]] = {}
        self._sizes: dict[int, tuple[JSON, int]] = {}

    def charge_rendered(self, size: int) -> None:
        """Charge a rendered call of *size* bytes before it is sent.

        Raises:
            CallTooLarge: the call alone is over max_rendered_call_bytes.
            BatchTooLarge: the request's calls together would pass max_rendered_batch_bytes.
        """
        if size > self.request.max_call_bytes:
            raise CallTooLarge(
                f"the call would send {size} bytes once its placeholders are substituted, "
                f"more than max_rendered_call_bytes ({self.request.max_call_bytes}); "
                "nothing was sent"
            )
        if size > self.request.rendered_bytes:
            exc = BatchTooLarge(
                f"the call would send {size} bytes, and the request has "
                f"{self.request.rendered_bytes} left of max_rendered_batch_bytes; "
                "nothing was sent"
            )
            exc.attempts = 0
            raise exc
        self.request.rendered_bytes -= size
        self.rendered_bytes += size

    def meter(self, *, alone: bool = False) -> Meter:
        """A meter for rendering one call: it stops the rendering at the first substituted
        value past the call's limit or the request's bytes left (only the call's limit, for a
        call that is not charged, *alone*), with the error that the size check of the whole
        call (`charge_rendered`) would raise. The sizes of the values it writes are worked
        out once for the whole batch (`Meter`'s memos are the batch's)."""
        call = self.request.max_call_bytes
        left = call if alone else self.request.rendered_bytes
        over = self._call_too_large if call <= left else self._request_ran_out
        return Meter(min(call, left), over, self._texts, self._sizes)

    def _call_too_large(self) -> Exception:
        return CallTooLarge(
            "the call would send more than max_rendered_call_bytes "
            f"({self.request.max_call_bytes}) once its placeholders are substituted; "
            "nothing was sent"
        )

    def _request_ran_out(self) -> Exception:
        exc = BatchTooLarge(
            f"the call would send more than the {self.request.rendered_bytes} bytes the "
            "request has left of max_rendered_batch_bytes; nothing was sent"
        )
        exc.attempts = 0
        return exc

    def charge_response(self, size: int) -> None:
        """Charge *size* bytes of an upstream body as they are read.

        Raises:
            BatchTooLarge: the request's responses together pass max_batch_response_bytes.
        """
        self.request.response_bytes -= size
        self.response_bytes += size
        if self.request.response_bytes < 0:
            raise BatchTooLarge(
                "the batch's upstream responses passed max_batch_response_bytes; this "
                "item's body was not kept"
            )


current_budget: ContextVar[BatchBudget | None] = ContextVar("gqlbatch_budget", default=None)
"""The budget of the batch whose task is running; None outside any batch."""
