"""Work that a client or an upstream can make large, run off the event loop (issue 24):
checking a large body or answer against an OpenAPI document, compressing and decompressing
a large job's outcome. The loop keeps answering everyone else meanwhile.

Only work that lets go of the GIL is spared the loop this way: Python code (jsonschema's
checks) hands the GIL back every few milliseconds, and zlib and `regex` let go of it; but
`json.dumps` and `json.loads` keep it for the whole of a call, so a large one in this
thread holds the loop as long as it would on the loop. Large JSON is written and read a
piece at a time on the loop instead (docs/decisions.md).

One thread, so that such checks queue behind each other instead of taking every core and
the GIL from the loop in turn; each is bounded by its request's budget
(`core.schema_checks`), so none holds the queue for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

__all__ = ["INLINE_VALUES", "OffLoop", "Offload"]

T = TypeVar("T")

INLINE_VALUES = 5_000
"""A check of up to this many JSON values runs where it is asked for: a few milliseconds at
most, less than a thread's hand-off costs; a larger one goes off the loop."""


class Offload(Protocol):
    """Runs *work* away from the event loop, and gives its result (or raises its error)."""

    def __call__(self, work: Callable[[], T]) -> asyncio.Future[T]: ...


class OffLoop:
    """A thread of its own for heavy checks; `close` when the server stops."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gqlbatch-check")

    def __call__(self, work: Callable[[], T]) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(self._executor, work)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
