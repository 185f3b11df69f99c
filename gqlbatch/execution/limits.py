"""Admission: how many upstream calls a client may have outstanding (in flight) at once,
across all of its batches (DESIGN §9), counted per credential, per address and in all.

In memory, for one process. What is counted is what is really outstanding: each admitted
batch holds one call from the moment it is admitted (its first call always has a place, so an
admitted batch can never be starved), and each further call it has in flight at once holds one
more, taken as the call is sent and given back when it ends. A batch is refused whole, before
anything runs, when one of its keys is already at its limit. A call that finds a key at its
limit waits for a place instead of passing it.

Reserving a batch's concurrency up front (the first design) made three ordinary 22-item
screens hold 300 of the 200 places and refused most of them; counting live lets sixteen
screens from one address through while a flood is still refused at the door.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem

__all__ = ["Admission", "OutstandingCalls"]

_A = TypeVar("_A")
_R = TypeVar("_R")
_TOTAL = "*"


class OutstandingCalls:
    """Counts the calls held per key (a credential, an address) and in all."""

    def __init__(
        self, *, per_client: int, per_address: int, total: int, retry_after_s: int
    ) -> None:
        self._per_client = per_client
        self._per_address = per_address
        self._total = total
        self._retry_after_s = retry_after_s
        self._held: dict[str, int] = {}
        self._waiters: list[asyncio.Future[None]] = []

    def held(self, key: str = _TOTAL) -> int:
        """Calls held now by *key*, or by everyone without one."""
        return self._held.get(key, 0)

    def check(self, client: str, address: str) -> None:
        """Refuse at once, before a batch is even read, when a key is at its limit: under
        overload, refusing must cost less than admitting.

        Raises:
            BatchRejected: TOO_MANY_REQUESTS, with retry_after_s.
        """
        self._refuse_if_full(self._limits(client, address))

    @contextmanager
    def admit(self, client: str, address: str) -> Iterator[Admission]:
        """Admit one batch for the duration of the block; it holds its first call's place.

        Raises:
            BatchRejected: TOO_MANY_REQUESTS when a key is at its limit; nothing is held then.
        """
        limits = self._limits(client, address)
        self._refuse_if_full(limits)
        self._take(limits)
        try:
            yield Admission(self, limits)
        finally:
            self._give(limits)

    def _limits(self, client: str, address: str) -> dict[str, int]:
        limits = {_TOTAL: self._total, address: self._per_address}
        limits[client] = min(self._per_client, limits.get(client, self._per_client))
        return limits

    def _refuse_if_full(self, limits: Mapping[str, int]) -> None:
        for key, limit in limits.items():
            if self.held(key) >= limit:
                raise self._refuse(key, limit)

    def _has_room(self, limits: Mapping[str, int]) -> bool:
        return all(self.held(key) < limit for key, limit in limits.items())

    def _take(self, limits: Mapping[str, int]) -> None:
        for key in limits:
            self._held[key] = self.held(key) + 1

    def _give(self, limits: Mapping[str, int]) -> None:
        for key in limits:
            left = self._held[key] - 1
            if left:
                self._held[key] = left
            else:
                del self._held[key]
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _refuse(self, key: str, limit: int) -> BatchRejected:
        who = self._kind(key)
        message = (
            f"{who} already has {self.held(key)} upstream calls outstanding; the limit is "
            f"{limit}. Nothing was run: send it again after {self._retry_after_s} s"
        )
        return BatchRejected(
            [Problem(ErrorCode.TOO_MANY_REQUESTS, message)], retry_after_s=self._retry_after_s
        )

    @staticmethod
    def _kind(key: str) -> str:
        if key == _TOTAL:
            return "the server"
        return "this client's address" if key.startswith("addr:") else "this client"


class Admission:
    """One admitted batch: the places its calls hold while they are in flight."""

    def __init__(self, calls: OutstandingCalls, limits: Mapping[str, int]) -> None:
        self._calls = calls
        self._limits = limits
        self._live = 0

    def guard(self, send: Callable[[_A], Awaitable[_R]]) -> Callable[[_A], Coroutine[Any, Any, _R]]:
        """*send*, holding a place for each call while it is in flight."""

        async def guarded(call: _A) -> _R:
            await self._acquire()
            try:
                return await send(call)
            finally:
                self._release()

        return guarded

    async def _acquire(self) -> None:
        while True:
            if self._live == 0:
                self._live = 1  # the place admission took for this batch
                return
            if self._calls._has_room(self._limits):
                self._calls._take(self._limits)
                self._live += 1
                return
            await self._calls._wait()

    def _release(self) -> None:
        self._live -= 1
        if self._live >= 1:
            self._calls._give(self._limits)  # a place beyond the batch's own
        else:
            self._calls._give({})  # the batch's own place is free again: wake its waiters
