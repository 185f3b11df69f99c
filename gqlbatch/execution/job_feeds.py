"""Following jobs (`Subscription.batchJob`): one reader per job in this process, however many
follow it, reading only what changed since it last looked (`JobStore.changes`), and handing
each follower what it has not seen. Followers per job and per client are bounded.

Issue 24: 2,000 followers of one 100-item job each re-read the whole job on every change
(on Redis, every 50 ms): the event loop was held 46 s, and eight followers on Redis took the
process to 2 GiB.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable

from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem, StoreUnavailable
from gqlbatch.core.result import ItemResult
from gqlbatch.execution.job_store import Job, JobState, JobStore

__all__ = ["Feed", "Feeds"]

log = logging.getLogger("gqlbatch.jobs")
_STORE_WAIT_S = 0.5
"""How long a feed waits to read again when the store did not answer."""


class Feed:
    """What this process knows of one followed job, shared by its followers."""

    def __init__(self, job_id: str, client: str, results: list[ItemResult]) -> None:
        self.job_id = job_id
        self.client = client
        self.results = results
        """Its results in the order they settled, as far as they are known here."""
        self.final: Job | None = None
        """The job, unpacked, once it has ended."""
        self.gone = False
        """The job expired, or could not be read: its followers stop."""
        self.followers = 0
        self.reader: asyncio.Task[None] | None = None
        self._news: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def tell(self) -> None:
        """Wake every follower: there is news."""
        news, self._news = self._news, asyncio.get_running_loop().create_future()
        news.set_result(None)

    async def news(self) -> None:
        """Return at the next news. (asyncio.wait: a follower that leaves meanwhile must not
        cancel the future the others wait on.)"""
        await asyncio.wait([self._news])


class Feeds:
    """The jobs followed in this process."""

    def __init__(
        self,
        store: JobStore,
        unpacked: Callable[[Job], Awaitable[Job]],
        *,
        per_job: int,
        per_client: int,
        retry_after_s: int,
    ) -> None:
        """*unpacked* reads a finished job's packed outcome (off the event loop when it is
        large)."""
        self._store = store
        self._unpacked = unpacked
        self._per_job = per_job
        self._per_client = per_client
        self._retry_after_s = retry_after_s
        self._feeds: dict[str, Feed] = {}
        self._followers: Counter[str] = Counter()

    async def join(self, job_id: str, client: str) -> Feed:
        """Count a new follower of *job_id* for *client*, and its feed.

        Raises:
            LookupError: no such job for *client*.
            BatchRejected: TOO_MANY_REQUESTS, past the followers of the job or the client.
        """
        feed = self._feeds.get(job_id)
        if feed is None:
            feed = await self._open(job_id, client)
        if feed.client != client:
            raise LookupError(job_id)
        if feed.followers >= self._per_job or self._followers[client] >= self._per_client:
            self._close_if_unfollowed(feed)
            raise self._too_many(feed)
        feed.followers += 1
        self._followers[client] += 1
        return feed

    async def events(self, feed: Feed) -> AsyncGenerator[ItemResult | Job, None]:
        """What one follower of *feed* is told: each result as it settles (those settled
        before first), then the job once it has ended. Leaving (closing the iterator) counts
        the follower out."""
        told: set[int] = set()
        seen = 0
        try:
            while True:
                while seen < len(feed.results):
                    result = feed.results[seen]
                    seen += 1
                    if result.index not in told:
                        told.add(result.index)
                        yield result
                if feed.final is not None:
                    for result in feed.final.items():
                        if result.index not in told:
                            yield result
                    yield feed.final
                    return
                if feed.gone:
                    return
                await feed.news()
        finally:
            feed.followers -= 1
            self._followers[feed.client] -= 1
            if self._followers[feed.client] <= 0:
                del self._followers[feed.client]
            self._close_if_unfollowed(feed)

    async def _open(self, job_id: str, client: str) -> Feed:
        news = await self._store.changes(job_id, 0)
        if news is None or news.client != client:
            raise LookupError(job_id)
        feed = self._feeds.get(job_id)  # another follower may have opened it meanwhile
        if feed is not None:
            return feed
        feed = self._feeds[job_id] = Feed(job_id, client, news.results)
        if news.state is JobState.RUNNING:
            feed.reader = asyncio.create_task(self._read(feed), name="gqlbatch:job-feed")
        else:
            await self._end(feed)
        return feed

    async def _read(self, feed: Feed) -> None:
        # The one reader of this job here: what settled since it last looked, until the job
        # ends. A store that does not answer is asked again later (its outage is logged once);
        # one that cannot be read otherwise stops the followers, never the process.
        try:
            while feed.final is None and not feed.gone:
                await self._store.changed(feed.job_id)
                try:
                    told = await self._looked(feed)
                except StoreUnavailable:
                    await asyncio.sleep(_STORE_WAIT_S)
                    continue
                if told:
                    feed.tell()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s: its followers stop: the store could not be read", feed.job_id)
            feed.gone = True
            feed.tell()

    async def _looked(self, feed: Feed) -> bool:
        """Read what changed; whether the followers have news."""
        news = await self._store.changes(feed.job_id, len(feed.results))
        if news is None:
            feed.gone = True
        elif news.state is not JobState.RUNNING:
            await self._end(feed)
            feed.results.extend(news.results)
        elif news.results:
            feed.results.extend(news.results)
        else:
            return False
        return True

    async def _end(self, feed: Feed) -> None:
        job = await self._store.get(feed.job_id)
        if job is None:
            feed.gone = True
        else:
            feed.final = await self._unpacked(job)

    def _close_if_unfollowed(self, feed: Feed) -> None:
        if feed.followers > 0 or self._feeds.get(feed.job_id) is not feed:
            return
        del self._feeds[feed.job_id]
        if feed.reader is not None:
            feed.reader.cancel()

    def _too_many(self, feed: Feed) -> BatchRejected:
        message = (
            f"this job already has {feed.followers} followers here (jobs.max_followers "
            f"{self._per_job}), or its client {self._followers[feed.client]} in all "
            f"(jobs.max_followers_per_client {self._per_client}); stop following another "
            "first, or read the job with batchJob"
        )
        return BatchRejected(
            [Problem(ErrorCode.TOO_MANY_REQUESTS, message, field="id")],
            retry_after_s=self._retry_after_s,
        )
