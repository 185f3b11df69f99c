"""Prometheus metrics: batches, items, upstream calls, savings, retries and refusals, with
batch and upstream latency histograms. The only module that imports prometheus-client.

With several worker processes (`serve --workers`), prometheus-client's multiprocess mode adds
up every worker's values: the command line sets `PROMETHEUS_MULTIPROC_DIR` before any worker
starts, each worker writes its values there, and `/metrics` reads them all.
"""

from __future__ import annotations

import bisect
import os
import time
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

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

from gqlbatch.core.errors import BatchRejected
from gqlbatch.core.result import BatchOutcome
from gqlbatch.core.wire import Send, UpstreamCall, UpstreamResponse

__all__ = [
    "CONTENT_TYPE",
    "exposition",
    "observed",
    "record_batch",
    "record_refusal",
    "worker_exited",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

BATCHES = Counter("gqlbatch_batches", "Batches, by how they ended.", ["outcome"])
ITEMS = Counter("gqlbatch_items", "Items of the batches that ran, by state.", ["state"])
CALLS_SAVED = Counter(
    "gqlbatch_calls_saved", "Upstream calls a batch did not send, by why.", ["by"]
)
RETRIES = Counter("gqlbatch_retries", "Attempts beyond a call's first.")
REFUSALS = Counter("gqlbatch_refusals", "Batches refused whole, by error code.", ["code"])
BATCH_SECONDS = Histogram(
    "gqlbatch_batch_seconds", "Time to run a batch, refused ones included.", buckets=_LATENCY_S
)
IN_FLIGHT = Gauge(
    "gqlbatch_upstream_in_flight",
    "Upstream calls in flight now; an autoscaler's measure of load beside CPU.",
    multiprocess_mode="livesum",
)
_SHARED = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
"""Workers' values are added up from files (`serve --workers`), each written as it changes;
one process's gauge is read when scraped. Fixed at import, as prometheus-client's mode is."""
_in_flight = [0]
if not _SHARED:
    # A plain count, read at scrape time: `inc` and `dec` take a lock each, twice per call.
    IN_FLIGHT.set_function(lambda: _in_flight[0])
_CALLS = (
    "gqlbatch_upstream_calls",
    "Attempts sent upstream, by upstream and status (or error code when none came back).",
)
_CALL_SECONDS = ("gqlbatch_upstream_seconds", "Time of one upstream attempt, by upstream.")
_BUCKET_LABELS = [
    floatToGoString(b)  # type: ignore[no-untyped-call]  # the `le` Histogram writes
    for b in (*_LATENCY_S, float("inf"))
]


class _Attempts(Collector):
    """Upstream attempts, by upstream and status, and their durations, by upstream: plain
    counts that `/metrics` reads when it is scraped.

    prometheus-client's Counter and Histogram take a lock for each of their three increments,
    and check on each that the metric may be observed: 27k instructions an attempt, a third
    of what the gateway spends on a call beside aiohttp's own. A batch's calls all run on one
    event loop, so nothing can interleave with a plain increment. One process only: workers
    write their values to files (`_SHARED`), which prometheus-client's own metrics do.
    """

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str], int] = {}
        self._created: dict[tuple[str, str], float] = {}
        self._seconds: dict[str, list[float]] = {}
        """Per upstream: the attempts that fell in each bucket (the last is +Inf), and then
        the sum of their durations."""

    def record(self, upstream: str, status: str, seconds: float) -> None:
        key = (upstream, status)
        calls = self._calls.get(key)
        if calls is None:
            calls = 0
            self._created[key] = time.time()
        self._calls[key] = calls + 1
        tally = self._seconds.get(upstream)
        if tally is None:
            tally = self._seconds[upstream] = [0.0] * (len(_LATENCY_S) + 2)
        tally[bisect.bisect_left(_LATENCY_S, seconds)] += 1  # a bucket counts values <= le
        tally[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(*_CALLS, labels=["upstream", "status"])
        for key, count in self._calls.items():
            calls.add_metric(key, count, created=self._created[key])
        yield calls
        seconds = HistogramMetricFamily(*_CALL_SECONDS, labels=["upstream"])
        for upstream, tally in self._seconds.items():
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, inside in zip(_BUCKET_LABELS, tally, strict=False):  # not the sum
                cumulative += inside
                buckets.append((bound, cumulative))
            seconds.add_metric([upstream], buckets, sum_value=tally[-1])
        yield seconds


if _SHARED:
    UPSTREAM_CALLS = Counter(*_CALLS, ["upstream", "status"])
    UPSTREAM_SECONDS = Histogram(*_CALL_SECONDS, ["upstream"], buckets=_LATENCY_S)

    def _record_attempt(upstream: str, status: str, seconds: float) -> None:
        _child(UPSTREAM_CALLS, upstream, status).inc()
        _child(UPSTREAM_SECONDS, upstream).observe(seconds)

else:
    _ATTEMPTS = _Attempts()
    REGISTRY.register(_ATTEMPTS)
    _record_attempt = _ATTEMPTS.record


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
            status = str(response.status)
            return response
        except Exception as exc:
            status = str(getattr(exc, "code", "error"))
            raise
        finally:
            if _SHARED:
                IN_FLIGHT.dec()
            else:
                _in_flight[0] -= 1
            _record_attempt(call.upstream, status, time.perf_counter() - started)

    return observe


def record_batch(outcome: BatchOutcome, seconds: float) -> None:
    """Count a batch that ran (or was replayed) and its items."""
    _child(BATCHES, "replayed" if outcome.replayed else "ran").inc()
    BATCH_SECONDS.observe(seconds)
    if outcome.replayed:
        return
    for state, count in Tally(r.state.value for r in outcome.results).items():
        _child(ITEMS, state).inc(count)
    stats = outcome.stats
    _child(CALLS_SAVED, "dedupe").inc(stats.saved_by_dedupe)
    _child(CALLS_SAVED, "bulk").inc(stats.saved_by_bulk)
    RETRIES.inc(stats.retries)


_children: dict[tuple[object, tuple[str, ...]], Any] = {}


def _child(metric: Counter | Histogram, *values: str) -> Any:
    """`metric.labels(*values)`, looked up once. `labels()` validates, hashes and takes a lock
    on every call, which cost a tenth of an upstream call's time in our own code; the child it
    gives is the same object every time. The values are few (upstream names, statuses, error
    codes, item states), so this map stays small."""
    key = (metric, values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def record_refusal(exc: BatchRejected, seconds: float) -> None:
    """Count a batch refused whole."""
    BATCHES.labels("refused").inc()
    REFUSALS.labels(exc.code.value).inc()
    BATCH_SECONDS.observe(seconds)


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
