"""Prometheus metrics: batches, items, upstream calls, savings, retries and refusals, with
batch and upstream latency histograms. The only module that imports prometheus-client.

One process keeps its counters and histograms in plain numbers (`_Counts`, `_Durations`),
written out by a prometheus-client Collector when `/metrics` is scraped, with the names,
labels and buckets the library's own metrics would give. With several worker processes
(`serve --workers`), prometheus-client's own metrics keep them, in its multiprocess mode,
which adds up every worker's values: the command line sets `PROMETHEUS_MULTIPROC_DIR` before
any worker starts, each worker writes its values there, and `/metrics` reads them all.
"""

from __future__ import annotations

import bisect
import os
import time
from collections import Counter as Tally
from collections.abc import Iterator, Sequence
from http import HTTPStatus

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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
    "worker_exited",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SHARED = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
"""Workers' values are added up from files (`serve --workers`), each written as it changes,
which only prometheus-client's own metrics do. Fixed at import, as prometheus-client's mode
is."""


class _Counts:
    """A counter family of this process, by label values: plain numbers, which `/metrics`
    writes out when it is scraped (`_Plain`).

    prometheus-client's Counter takes a lock and checks that it may be observed on every
    increment (and its Histogram does that three times): 27k instructions for an upstream
    attempt's two metrics, 70k for a batch's. All of a process's batches run on its one event
    loop, so nothing interleaves with a plain increment.
    """

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self._counts: dict[tuple[str, ...], float] = {}
        self._created: dict[tuple[str, ...], float] = {}
        if not labels:
            self.add((), 0)  # exposed from the start, as prometheus-client's are

    def add(self, labels: tuple[str, ...], amount: float = 1) -> None:
        count = self._counts.get(labels)
        if count is None:
            count = 0
            self._created[labels] = time.time()
        self._counts[labels] = count + amount

    def metric(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, count in self._counts.items():
            family.add_metric(labels, count, created=self._created[labels])
        return family


class _Durations:
    """A histogram family of this process, by label values, in plain numbers (`_Counts`)."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self._tallies: dict[tuple[str, ...], list[float]] = {}
        """Per label values: the observations that fell in each bucket (the last is +Inf),
        and then their sum."""
        if not labels:
            self._tally(())

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        tally = self._tallies.get(labels) or self._tally(labels)
        tally[bisect.bisect_left(_LATENCY_S, seconds)] += 1  # a bucket counts values <= le
        tally[-1] += seconds

    def _tally(self, labels: tuple[str, ...]) -> list[float]:
        tally = self._tallies[labels] = [0.0] * (len(_LATENCY_S) + 2)
        return tally

    def metric(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, tally in self._tallies.items():
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, inside in zip(_BUCKET_LABELS, tally, strict=False):  # not the sum
                cumulative += inside
                buckets.append((bound, cumulative))
            family.add_metric(labels, buckets, sum_value=tally[-1])
        return family


_BUCKET_LABELS = [
    floatToGoString(b)  # type: ignore[no-untyped-call]  # the `le` Histogram writes
    for b in (*_LATENCY_S, float("inf"))
]


class _Plain(Collector):
    """This process's plain families, written out when `/metrics` is scraped."""

    def __init__(self) -> None:
        self.families: list[_Counts | _Durations] = []

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield family.metric()


class _SharedCounts:
    """`_Counts`, kept by prometheus-client's Counter, which writes the workers' files.

    Each label set's child is looked up once: `labels()` validates, hashes and takes a lock
    on every call, and gives the same child every time. The label values are few (upstream
    names, statuses, error codes, item states), so the map stays small.
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
        child.inc(amount)


class _SharedDurations:
    """`_Durations`, kept by prometheus-client's Histogram (see `_SharedCounts`)."""

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


_PLAIN = _Plain()


def _counts(name: str, documentation: str, labels: Sequence[str] = ()) -> _Counts | _SharedCounts:
    if _SHARED:
        return _SharedCounts(name, documentation, labels)
    family = _Counts(name, documentation, labels)
    _PLAIN.families.append(family)
    return family


def _durations(
    name: str, documentation: str, labels: Sequence[str] = ()
) -> _Durations | _SharedDurations:
    if _SHARED:
        return _SharedDurations(name, documentation, labels)
    family = _Durations(name, documentation, labels)
    _PLAIN.families.append(family)
    return family


BATCHES = _counts("gqlbatch_batches", "Batches, by how they ended.", ["outcome"])
ITEMS = _counts("gqlbatch_items", "Items of the batches that ran, by state.", ["state"])
CALLS_SAVED = _counts(
    "gqlbatch_calls_saved", "Upstream calls a batch did not send, by why.", ["by"]
)
RETRIES = _counts("gqlbatch_retries", "Attempts beyond a call's first.")
CLOSED = _counts(
    "gqlbatch_connections_closed",
    "Client connections the server cut, by why (slow_reader: it did not read its answer "
    "within write_timeout_s; idle_websocket: ws_idle_timeout_s).",
    ["why"],
)
REFUSALS = _counts(
    "gqlbatch_refusals",
    "Refusals clients were sent, by error code: a request, a batch (a GraphQL field), a job "
    "or an operation refused whole, nothing run.",
    ["code"],
)
ANSWERS = _counts(
    "gqlbatch_http_responses",
    "Answers the server sent, by status (a status HTTP does not define, by its class).",
    ["status"],
)
STORE_ERRORS = _counts(
    "gqlbatch_store_errors", "Times the shared store did not answer (a timeout, a refusal)."
)
STORE_WRITES = _counts(
    "gqlbatch_store_writes",
    "Writes to the shared store made after it failed them: deferred (kept in the process), "
    "written_later, or dropped (kept too long, past the most a process keeps).",
    ["what"],
)
BATCH_SECONDS = _durations("gqlbatch_batch_seconds", "Time to run a batch, refused ones included.")
UPSTREAM_CALLS = _counts(
    "gqlbatch_upstream_calls",
    "Attempts sent upstream, by upstream and status (or error code when none came back).",
    ["upstream", "status"],
)
UPSTREAM_SECONDS = _durations(
    "gqlbatch_upstream_seconds", "Time of one upstream attempt, by upstream.", ["upstream"]
)
IN_FLIGHT = Gauge(
    "gqlbatch_upstream_in_flight",
    "Upstream calls in flight now; an autoscaler's measure of load beside CPU.",
    multiprocess_mode="livesum",
)
_in_flight = [0]
if not _SHARED:
    # A plain count, read at scrape time: `inc` and `dec` take a lock each, twice per call.
    IN_FLIGHT.set_function(lambda: _in_flight[0])
    REGISTRY.register(_PLAIN)


def observed(send: Send) -> Send:
    """*send*, counting each attempt by upstream and status, timing it, and counting the
    attempts in flight."""

    async def observe(call: UpstreamCall) -> UpstreamResponse:
        started = time.perf_counter()
        status = "error"
        if _SHARED:
            IN_FLIGHT.inc()
        else:
            _in_flight[0] += 1
        try:
            response = await send(call)
            status = _status_label(response.status)
            return response
        except Exception as exc:
            status = str(getattr(exc, "code", "error"))
            raise
        finally:
            if _SHARED:
                IN_FLIGHT.dec()
            else:
                _in_flight[0] -= 1
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


def exposition() -> bytes:
    """The metrics in Prometheus's text format: this process's, or every worker's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


def worker_exited(pid: int) -> None:
    """Let a dead worker's live values go (its counters stay in the totals)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
