"""Admission: how many upstream calls a client may have outstanding (in flight) at once,
across all of its batches (DESIGN §9), counted per credential, per address and in all.

In memory for one process, or in a store several share (`Places`). What is counted is what
is really outstanding: each admitted
batch holds one call from the moment it is admitted (its first call always has a place, so an
admitted batch can never be starved), and each further call it has in flight at once holds one
more, taken as the call is sent and given back when it ends. A batch is refused whole, before
anything runs, when one of its keys is already at its limit. A call that finds a key at its
limit waits for a place instead of passing it.

Reserving a batch's concurrency up front (the first design) made three ordinary 22-item
screens hold 300 of the 200 places and refused most of them; counting live lets sixteen
screens from one address through while a flood is still refused at the door.

A batch says, when it is admitted, how many places it may use at once (its widest step): a
store shared by processes reserves them ahead for the process, which then counts its calls
in memory (`redis_places.RedisPlaces`), so that the store is asked a few times a batch, not
twice a call (issue 25). A call that finds the store away waits for a place its own batch
gives back: an admitted batch always has its first place, and never fails for the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem, StoreUnavailable

__all__ = ["Admission", "MemoryPlaces", "OutstandingCalls", "Places"]

_A = TypeVar("_A")
_R = TypeVar("_R")
_TOTAL = "*"


class Places(Protocol):
    """Where the places are counted: this process's memory, or a store that several
    processes share (`redis_places.RedisPlaces`). Each key has a limit; a place is taken in all
    the keys of a batch at once, or in none."""

    async def admit(self, limits: Mapping[str, int], want: int) -> object | None:
        """A batch's first place, in every key of *limits*, all or none: a token to give back
        with `release`, or None when a key is at its limit. The batch may use up to *want*
        places at once (a hint: a shared store reserves them ahead for its calls).

        Raises:
            StoreUnavailable: the store did not answer.
        """
        ...

    async def take(self, limits: Mapping[str, int]) -> bool:
        """One more place in every key of *limits*, for a call of an admitted batch, all or
        none: False when a key is at its limit.

        Raises:
            StoreUnavailable: the store did not answer.
        """
        ...

    async def give(self, limits: Mapping[str, int]) -> None:
        """Give back a place `take` took; never raises."""
        ...

    async def release(self, limits: Mapping[str, int], token: object) -> None:
        """Give back a batch's first place once it has run; never raises."""
        ...

    async def full(self, limits: Mapping[str, int]) -> tuple[str, int] | None:
        """A key of *limits* with no place left, and what it holds; None when each has one.

        Raises:
            StoreUnavailable: the store did not answer.
        """
        ...

    async def held(self, key: str) -> int:
        """Places *key* holds now."""
        ...

    async def wait(self) -> None:
        """Return when a place may have been given back (or soon, for a shared store)."""
        ...


class MemoryPlaces:
    """Places in this process's memory; a waiter wakes when any place is given back."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self._waiters: list[asyncio.Future[None]] = []

    async def admit(self, limits: Mapping[str, int], want: int) -> object | None:
        return True if await self.take(limits) else None

    async def take(self, limits: Mapping[str, int]) -> bool:
        held = self._held
        for key, limit in limits.items():
            if held.get(key, 0) >= limit:
                return False
        for key in limits:
            held[key] = held.get(key, 0) + 1
        return True

    async def give(self, limits: Mapping[str, int]) -> None:
        for key in limits:
            left = self._held[key] - 1
            if left:
                self._held[key] = left
            else:
                del self._held[key]
        self._wake()

    async def release(self, limits: Mapping[str, int], token: object) -> None:
        await self.give(limits)

    async def full(self, limits: Mapping[str, int]) -> tuple[str, int] | None:
        for key, limit in limits.items():
            held = self._held.get(key, 0)
            if held >= limit:
                return key, held
        return None

    async def held(self, key: str) -> int:
        return self._held.get(key, 0)

    async def wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _wake(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


class OutstandingCalls:
    """The limits per key (a credential, an address) and in all, over some `Places`."""

    def __init__(
        self,
        *,
        per_client: int,
        per_address: int,
        total: int,
        retry_after_s: int,
        places: Places | None = None,
    ) -> None:
        self._per_client = per_client
        self._per_address = per_address
        self._total = total
        self._retry_after_s = retry_after_s
        self.places: Places = places or MemoryPlaces()

    async def held(self, key: str = _TOTAL) -> int:
        """Calls held now by *key*, or by everyone without one."""
        return await self.places.held(key)

    async def check(self, client: str, address: str) -> None:
        """Refuse at once, before a batch is even read, when a key is at its limit: under
        overload, refusing must cost less than admitting.

        Raises:
            BatchRejected: TOO_MANY_REQUESTS, with retry_after_s.
        """
        limits = self._limits(client, address)
        full = await self.places.full(limits)
        if full is not None:
            key, held = full
            raise self._refuse(key, held, limits[key])

    @asynccontextmanager
    async def admit(self, client: str, address: str, want: int = 1) -> AsyncIterator[Admission]:
        """Admit one batch for the duration of the block; it holds its first call's place,
        and may use up to *want* at once.

        Raises:
            BatchRejected: TOO_MANY_REQUESTS when a key is at its limit; nothing is held then.
                StoreUnavailable when the store did not answer.
        """
        limits = self._limits(client, address)
        token = await self.places.admit(limits, max(want, 1))
        if token is None:
            await self.check(client, address)  # names the key that is full
            raise self._refuse(_TOTAL, self._total, self._total)  # it emptied meanwhile
        try:
            yield Admission(self.places, limits)
        finally:
            await self.places.release(limits, token)

    def _limits(self, client: str, address: str) -> dict[str, int]:
        limits = {_TOTAL: self._total, address: self._per_address}
        limits[client] = min(self._per_client, limits.get(client, self._per_client))
        return limits

    def _refuse(self, key: str, held: int, limit: int) -> BatchRejected:
        who = self._kind(key)
        message = (
            f"{who} already has {held} upstream calls outstanding; the limit is "
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

    def __init__(self, places: Places, limits: Mapping[str, int]) -> None:
        self._places = places
        self._limits = limits
        self._live = 0
        self._extra = 0
        """Places held beyond the batch's own: one per live call past the first. Places are
        interchangeable, so any call's end gives back any of them."""

    def guard(self, send: Callable[[_A], Awaitable[_R]]) -> Callable[[_A], Coroutine[Any, Any, _R]]:
        """*send*, holding a place for each call while it is in flight."""

        async def guarded(call: _A) -> _R:
            await self._acquire()
            try:
                return await send(call)
            finally:
                await self._release()

        return guarded

    async def _acquire(self) -> None:
        # A call uses the place admission took whenever no other call of the batch is in
        # flight; each further one takes a place of its own, waiting while a key is full, or
        # while the store does not answer (the batch's own calls give places back).
        while True:
            if self._live == 0:
                self._live = 1
                return
            try:
                taken = await self._places.take(self._limits)
            except StoreUnavailable:
                taken = False
            if taken:
                self._extra += 1
                self._live += 1
                return
            await self._places.wait()

    async def _release(self) -> None:
        self._live -= 1
        if self._extra:
            self._extra -= 1
            await self._places.give(self._limits)
        else:
            await self._places.give({})  # the batch's own place is free: wake its waiters
