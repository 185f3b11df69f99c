"""The shared store: outstanding-call places (`redis_places`), idempotency records
(`redis_idempotency`), persisted queries (here) and jobs (`redis_jobs`) in Redis, so that
several gqlbatch processes (workers, hosts) hold one set of limits, keys and jobs. With those
modules, the only ones that import redis-py; `[store] url` (or `GQLBATCH_STORE__URL`) turns
them on.

Every call to Redis goes through `answering`: a Redis that does not answer (refused, reset,
timed out, loading its data) is `StoreUnavailable`, logged once per outage (`store_faults`).
Connections come from a bounded pool (`connect`): running out of them is a wait.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from gqlbatch.core.errors import StoreUnavailable
from gqlbatch.execution.store_faults import OUTAGE

__all__ = [
    "POLL_S",
    "POOL_SIZE",
    "PREFIX",
    "RedisPersistedQueries",
    "answering",
    "client_key",
    "connect",
    "connect_blocking",
]

PREFIX = "gqlbatch:"

POLL_S = (0.002, 0.05)
"""How often a waiter looks again, from the first look to the slowest: Redis cannot wake it."""
_COMMAND_S = 2.0
"""How long one command may wait for Redis's answer before Redis counts as not answering."""
_CONNECT_S = 1.0
POOL_SIZE = 64
"""Connections to Redis per process. A batch asks Redis a few times, each a fraction of a
millisecond; 64 carry thousands of batches a second, and a request past them waits for one
(at most `_COMMAND_S`) rather than failing."""


def connect(url: str, *, pool_size: int = POOL_SIZE) -> Redis:
    """A client for *url* (`redis://host:port/db`) over a bounded, blocking pool of
    connections, opened on first use. A command that meets a broken connection (Redis
    restarted) is sent once more on a new one; a command that gets no answer within
    `_COMMAND_S` fails (`answering` makes that StoreUnavailable)."""
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        max_connections=pool_size,
        timeout=_COMMAND_S,
        socket_timeout=_COMMAND_S,
        socket_connect_timeout=_CONNECT_S,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1, (RedisConnectionError,)),
    )
    return Redis.from_pool(pool)


_P = ParamSpec("_P")
_T = TypeVar("_T")


def answering(
    method: Callable[_P, Coroutine[Any, Any, _T]],
) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """*method*, a call to Redis, raising StoreUnavailable when Redis does not answer, and
    telling the process's `OUTAGE` whether it did."""

    @functools.wraps(method)
    async def answered(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            result = await method(*args, **kwargs)
        except (RedisError, OSError) as exc:
            why = f"{type(exc).__name__}: {exc}"[:200]
            OUTAGE.failed(why)
            raise StoreUnavailable(type(exc).__name__) from None
        OUTAGE.answered()
        return result

    return answered


def connect_blocking(url: str) -> Redis:
    """A client for the job queue: bytes replies, as saq reads them, and no socket timeout,
    because its blocking reads end on the server (`job_queue` says why)."""
    return Redis.from_url(url, socket_timeout=None)


# KEYS: the document's key, the store's registered bytes, the client's. ARGV: document, ttl_s,
# max bytes, max bytes of the client. Keeps the document unless it is kept already (1), or its
# bytes would pass the store's or the client's for this window of ttl_s (0). Each count lives
# ttl_s from its first registration: as long as the documents it counts.
_PUT_DOCUMENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
local size = string.len(ARGV[1])
local ttl = tonumber(ARGV[2])
if tonumber(redis.call('GET', KEYS[2]) or '0') + size > tonumber(ARGV[3]) then return 0 end
if tonumber(redis.call('GET', KEYS[3]) or '0') + size > tonumber(ARGV[4]) then return 0 end
for _, key in ipairs({KEYS[2], KEYS[3]}) do
  redis.call('INCRBY', key, size)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ttl) end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
return 1
"""


class RedisPersistedQueries:
    """`persisted.PersistedQueryStore` in Redis: a document registered through one process
    runs by its hash on any other. Each is kept *ttl_s* from its registration; a client that
    sends a hash after that registers it again, as Apollo's link does on any miss. At most
    *max_bytes* of documents, and *max_bytes_per_client* of one client's, are registered in
    each window of *ttl_s*."""

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_s: int,
        max_bytes: int = 16 * 1024 * 1024,
        max_bytes_per_client: int = 1024 * 1024,
    ) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._per_client = max_bytes_per_client
        self._put = redis.register_script(_PUT_DOCUMENT)

    @answering
    async def get(self, sha256: str) -> str | None:
        document = await self._redis.get(PREFIX + "pq:" + sha256)
        return None if document is None else str(document)  # decode_responses: a str

    @answering
    async def put(self, sha256: str, document: str, client: str) -> bool:
        keys = [PREFIX + "pq:" + sha256, PREFIX + "pq-bytes", client_key("pq-bytes", client)]
        args: list[str | int] = [document, self._ttl_s, self._max_bytes, self._per_client]
        return int(await self._put(keys=keys, args=args)) == 1


def client_key(kind: str, client: str) -> str:
    """The key of what the store keeps of *client* (its jobs, its bytes), of one *kind*."""
    return f"{PREFIX}{kind}:client:{client}"
