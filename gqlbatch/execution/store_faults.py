"""What a failure of the shared store costs, and what it must not (issue 25).

Before anything is sent upstream, a store that does not answer refuses the batch
(`StoreUnavailable`, STORE_UNAVAILABLE): nothing ran, the client sends it again. After
something was sent, the store's failure must never cost the client its results: what the store
could not record then (an idempotency outcome, a job's results and its end, places given back)
is kept here, in the process, and written again until the store answers (`Later`).

An outage is logged once when it begins and once when it ends (`Outage`), not once per
request, and each failure is counted in `/metrics`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from gqlbatch.core.errors import StoreUnavailable
from gqlbatch.execution import metrics

__all__ = ["OUTAGE", "Later", "Outage", "delays"]

log = logging.getLogger("gqlbatch.store")

Write = Callable[[], Awaitable[object]]
"""One write to the store, made again as often as it takes: each call makes a new attempt."""


class Outage:
    """Whether the store answered last time it was asked."""

    def __init__(self) -> None:
        self._since: float | None = None

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, why: str) -> None:
        """The store did not answer: counted each time, logged when an outage begins."""
        metrics.record_store_error()
        if self._since is None:
            self._since = time.monotonic()
            log.warning(
                "the shared store does not answer (%s): new batches are refused with "
                "STORE_UNAVAILABLE until it does; what already ran is kept here and written "
                "once it answers",
                why,
            )

    def answered(self) -> None:
        """The store answered: logged when that ends an outage."""
        if self._since is not None:
            log.warning(
                "the shared store answers again, after %.1f s", time.monotonic() - self._since
            )
            self._since = None


OUTAGE = Outage()
"""This process's view of its store: one store per process, one outage at a time."""


def delays(first_s: float = 0.05, most_s: float = 1.0) -> Iterator[float]:
    """The waits between tries of a store that does not answer: from *first_s*, doubling, to
    *most_s* at most."""
    delay = first_s
    while True:
        yield delay
        delay = min(delay * 2, most_s)


class Later:
    """Writes the store must get: made now, or in the background (`soon`), and when the store
    does not answer, kept in this process and made again, in the order they came, with a
    backoff from *first_s* to *most_s*, until it does.

    At most *most_kept* wait at once; past that the oldest is given up, logged and counted:
    memory is bounded even in an outage without end. On the process's stop, `close` makes a
    last try within its grace, and logs what could not be written.
    """

    def __init__(
        self, *, first_s: float = 0.05, most_s: float = 1.0, most_kept: int = 10_000
    ) -> None:
        self._first_s = first_s
        self._most_s = most_s
        self._most_kept = most_kept
        self._kept: collections.deque[_Kept] = collections.deque()
        self._writing: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._kept)

    async def write(self, what: str, write: Write) -> None:
        """Make *write* now; if the store does not answer, keep it for later. Writes waiting
        already go first: a newer write never overtakes an older one."""
        if not self._kept:
            try:
                await write()
                return
            except StoreUnavailable:
                pass
        self._keep(_Kept(what, write, failed=True))

    def soon(self, what: str, write: Write) -> None:
        """Make *write* in the background, after the writes before it, and again until the
        store takes it."""
        self._keep(_Kept(what, write, failed=False))

    def _keep(self, kept: _Kept) -> None:
        if len(self._kept) >= self._most_kept:
            lost = self._kept.popleft()
            metrics.record_store_write("dropped")
            log.error("the shared store did not answer for too long: %s is given up", lost.what)
        if kept.failed:
            metrics.record_store_write("deferred")
        self._kept.append(kept)
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_kept(), name="gqlbatch:store-writes")

    async def _write_kept(self) -> None:
        waits = delays(self._first_s, self._most_s)
        while not await self._flush():
            await asyncio.sleep(next(waits))

    async def _flush(self) -> bool:
        """Make the kept writes in order; False at the first the store refuses."""
        while self._kept:
            kept = self._kept[0]
            try:
                await kept.write()
            except StoreUnavailable:
                if not kept.failed:
                    kept.failed = True
                    metrics.record_store_write("deferred")
                return False
            self._kept.popleft()
            if kept.failed:
                metrics.record_store_write("written_later")
        return True

    async def close(self, grace_s: float = 5.0) -> None:
        """A last try at the kept writes, within *grace_s*; what is left is logged."""
        if self._writing is not None:
            self._writing.cancel()
            await asyncio.wait([self._writing])
        try:
            async with asyncio.timeout(grace_s):
                while not await self._flush():
                    await asyncio.sleep(self._first_s)
        except TimeoutError:
            pass
        for kept in self._kept:
            log.error(
                "the shared store did not answer before the process stopped: %s is lost",
                kept.what,
            )
        self._kept.clear()


@dataclasses.dataclass(eq=False)
class _Kept:
    what: str
    """What the write is, for the log: "the outcome of Idempotency-Key ...", "3 places"."""
    write: Write
    failed: bool
    """Whether the store failed it once: counted when it is written at last."""
