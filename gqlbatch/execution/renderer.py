"""Rendering a planned item into the call it sends (`core.call.to_call`), charged to its
batch's budget: on the event loop while what its placeholders write is small, and in the
offload thread once it is large, so that no result embedded in a call, however often, keeps
the loop from answering others (issue 24).
"""

from __future__ import annotations

from collections.abc import Mapping

from gqlbatch.core.budget import BatchBudget, RenderedTooMuch
from gqlbatch.core.call import to_call
from gqlbatch.core.placeholders import Scope
from gqlbatch.core.plan import PlannedItem
from gqlbatch.core.rendering import Meter
from gqlbatch.core.types import Headers
from gqlbatch.core.wire import UpstreamCall
from gqlbatch.execution.offload import INLINE_CHARS, Offload

__all__ = ["Renderer"]


class Renderer:
    """Renders the calls of one batch."""

    def __init__(
        self, budget: BatchBudget, forwarded: Mapping[str, Headers], offload: Offload | None
    ) -> None:
        self.budget = budget
        self._forwarded = forwarded
        self._offload = offload
        self._inline = None if offload is None else INLINE_CHARS

    def now(self, item: PlannedItem, scope: Scope) -> UpstreamCall | None:
        """*item*'s call, rendered here and charged; None when it is too large to render on
        the event loop (`later` renders it).

        Raises:
            ItemError: as `to_call`, and when the call is over its limits (nothing is sent).
        """
        try:
            call = to_call(item, scope, self._forwarded, self.budget.meter(self._inline))
        except RenderedTooMuch:
            return None
        self.budget.charge_rendered(call.size)
        return call

    async def later(self, item: PlannedItem, scope: Scope) -> UpstreamCall:
        """*item*'s call, rendered off the event loop and charged.

        Raises:
            ItemError: as `now`.
        """
        call = await self._off_loop(item, scope, self.budget.meter())
        self.budget.charge_rendered(call.size)
        return call

    async def uncharged(self, item: PlannedItem, scope: Scope) -> UpstreamCall:
        """*item*'s call within the limit of one call, not charged to the request: a
        compensation, which must not be refused for the bytes its batch spent.

        Raises:
            ItemError: as `to_call`, and when the call is over max_rendered_call_bytes.
        """
        try:
            meter = self.budget.meter(self._inline, alone=True)
            return to_call(item, scope, self._forwarded, meter)
        except RenderedTooMuch:
            return await self._off_loop(item, scope, self.budget.meter(alone=True))

    async def _off_loop(self, item: PlannedItem, scope: Scope, meter: Meter) -> UpstreamCall:
        assert self._offload is not None, "`now` renders everything when there is no offload"
        return await self._offload(lambda: to_call(item, scope, self._forwarded, meter))
