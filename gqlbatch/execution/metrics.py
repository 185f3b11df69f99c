"""Prometheus metrics: batches, items, upstream calls, savings, retries and refusals, with
batch and upstream latency histograms. The only module that imports prometheus-client.

prometheus-client's own metrics keep every value. With several worker processes (`serve
--workers`), in its multiprocess mode, which adds up every worker's values: the command line
sets `PROMETHEUS_MULTIPROC_DIR` before any worker starts, each worker writes its values there,
and `/metrics` reads them all. (A second path in plain numbers for one process saved 0.5% of
a screen's instructions, and was removed: issue 26.)
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter as Tally
from collections.abc import Sequence
from http import HTTPStatus

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

from gqlbatch.core.result import BatchOutcome
from gqlbatch.core.wire import Send, UpstreamCall, UpstreamResponse

__all__ = [
    "CONTENT_TYPE",
    "exposition",
    "observed",
    "record_answer",
    "record_batch",
    "record_refusal",
    "record_store_error",
    "record_store_write",
    "refused",
    "watch_loop_lag",
    "worker_exited",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _Counts:
    """A counter family: prometheus-client's Counter, each label set's child looked up once.

    `labels()` validates, hashes and takes a lock on every call, and gives the same child
    every time. The label values are few (upstream names, statuses, error codes, item
    states), so the map stays small.
    """

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        self._counter = Counter(name, documentation, labels)
        self._children: dict[tuple[str, ...], Counter] = {}

    def add(self, labels: tuple[str, ...], amount: float = 1) -> None:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = (
                self._counter.labels(*labels) if labels else self._counter
            )
        if amount:  # a batch that saved or retried nothing (most): 1 us a counter less
            child.inc(amount)


class _Durations:
    """A histogram family: prometheus-client's Histogram (see `_Counts`)."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        self._histogram = Histogram(name, documentation, labels, buckets=_LATENCY_S)
        self._children: dict[tuple[str, ...], Histogram] = {}

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = (
                self._histogram.labels(*labels) if labels else self._histogram
            )
        child.observe(seconds)


BATCHES = _Counts("gqlbatch_batches", "Batches, by how they ended.", ["outcome"])
ITEMS = _Counts("gqlbatch_items", "Items of the batches that ran, by state.", ["state"])
CALLS_SAVED = _Counts(
    "gqlbatch_calls_saved", "Upstream calls a batch did not send, by why.", ["by"]
)
RETRIES = _Counts("gqlbatch_retries", "Attempts beyond a call's first.")
CLOSED = _Counts(
    "gqlbatch_connections_closed",
    "Client connections the server cut, by why (slow_reader: it did not read its answer "
    "within write_timeout_s; idle_websocket: ws_idle_timeout_s).",
    ["why"],
)
REFUSALS = _Counts(
    "gqlbatch_refusals",
    "Refusals clients were sent, by error code: a request, a batch (a GraphQL field), a job "
    "or an operation refused whole, nothing run.",
    ["code"],
)
ANSWERS = _Counts(
    "gqlbatch_http_responses",
    "Answers the server sent, by status (a status HTTP does not define, by its class).",
    ["status"],
)
STORE_ERRORS = _Counts(
    "gqlbatch_store_errors", "Times the shared store did not answer (a timeout, a refusal)."
)
STORE_WRITES = _Counts(
    "gqlbatch_store_writes",
    "Writes to the shared store made after it failed them: deferred (kept in the process), "
    "written_later, or dropped (kept too long, past the most a process keeps).",
    ["what"],
)
BATCH_SECONDS = _Durations("gqlbatch_batch_seconds", "Time to run a batch, refused ones included.")
UPSTREAM_CALLS = _Counts(
    "gqlbatch_upstream_calls",
    "Attempts sent upstream, by upstream and status (or error code when none came back).",
    ["upstream", "status"],
)
UPSTREAM_SECONDS = _Durations(
    "gqlbatch_upstream_seconds", "Time of one upstream attempt, by upstream.", ["upstream"]
)
LOOP_LAG = _Durations(
    "gqlbatch_event_loop_lag_seconds",
    "How late the event loop ran a timer that was due, sampled every 100 ms: what every "
    "request waited beside its own work while something held the loop.",
)
IN_FLIGHT = Gauge(
    "gqlbatch_upstream_in_flight",
    "Upstream calls in flight now; an autoscaler's measure of load beside CPU.",
    multiprocess_mode="livesum",
)


class _CallsOut:
    """Upstream calls in flight in this process, counted in a plain int and published to
    IN_FLIGHT when /metrics is read (this process) and every 100 ms (`watch_loop_lag`, for
    the other workers' values under --workers).

    The gauge's own inc and dec, around every call, cost 2.2 us a call: 1.8% of a screen's
    instructions (12 calls), for a value nobody reads between scrapes.
    """

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0

    def publish(self) -> None:
        IN_FLIGHT.set(self.now)


CALLS_OUT = _CallsOut()


def observed(send: Send) -> Send:
    """*send*, counting each attempt by upstream and status, timing it, and counting the
    attempts in flight."""

    async def observe(call: UpstreamCall) -> UpstreamResponse:
        started = time.perf_counter()
        status = "error"
        CALLS_OUT.now += 1
        try:
            response = await send(call)
            status = _status_label(response.status)
            return response
        except Exception as exc:
            status = str(getattr(exc, "code", "error"))
            raise
        finally:
            CALLS_OUT.now -= 1
            UPSTREAM_CALLS.add((call.upstream, status))
            UPSTREAM_SECONDS.observe((call.upstream,), time.perf_counter() - started)

    return observe


_KNOWN_STATUSES = frozenset(status.value for status in HTTPStatus)


def _status_label(status: int) -> str:
    """An upstream's status as a label: the code when HTTP defines it, else its class
    ("5xx"). An upstream may answer any code from 100 to 999, and each label is a series
    kept for the life of the process (issue 24)."""
    return str(status) if status in _KNOWN_STATUSES else f"{status // 100}xx"


def record_batch(outcome: BatchOutcome, seconds: float) -> None:
    """Count a batch that ran (or was replayed) and its items."""
    BATCHES.add(("replayed",) if outcome.replayed else ("ran",))
    BATCH_SECONDS.observe((), seconds)
    if outcome.replayed:
        return
    # Counted by member: an enum's `.value` is a Python-level property, read per state here.
    for state, count in Tally(r.state for r in outcome.results).items():
        ITEMS.add((state.value,), count)
    stats = outcome.stats
    CALLS_SAVED.add(("dedupe",), stats.saved_by_dedupe)
    CALLS_SAVED.add(("bulk",), stats.saved_by_bulk)
    RETRIES.add((), stats.retries)


def record_closed(why: str) -> None:
    """Count a client connection the server cut."""
    CLOSED.add((why,))


def record_store_error() -> None:
    """Count a time the shared store did not answer."""
    STORE_ERRORS.add(())


def record_store_write(what: str) -> None:
    """Count a write to the store kept for later, made later, or given up."""
    STORE_WRITES.add((what,))


def record_refusal(seconds: float) -> None:
    """Count a batch the engine refused whole (the client's refusal is counted where it is
    answered: `refused`)."""
    BATCHES.add(("refused",))
    BATCH_SECONDS.observe((), seconds)


def refused(code: str) -> None:
    """Count a refusal a client is sent, by its error code: once per refusal, by the door
    that writes it."""
    REFUSALS.add((code,))


def record_answer(status: int) -> None:
    """Count an answer the server sent, by status."""
    ANSWERS.add((_status_label(status),))


async def watch_loop_lag(every_s: float = 0.1) -> None:
    """Sample the event loop's lag until cancelled: a timer set *every_s* ahead, and how late
    it ran (`gqlbatch_event_loop_lag_seconds`). A request that held the loop for a second
    shows as a sample of a second, whatever the machine's speed. Each sample also publishes
    the calls in flight (`CALLS_OUT`)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + every_s
        await asyncio.sleep(every_s)
        LOOP_LAG.observe((), max(loop.time() - due, 0.0))
        CALLS_OUT.publish()


def exposition() -> bytes:
    """The metrics in Prometheus's text format: this process's, or every worker's."""
    CALLS_OUT.publish()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


def worker_exited(pid: int) -> None:
    """Let a dead worker's live values go (its counters stay in the totals)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
