"""Prometheus metrics: batches, items, upstream calls, savings, retries and refusals, with
batch and upstream latency histograms. The only module that imports prometheus-client.

With several worker processes (`serve --workers`), prometheus-client's multiprocess mode adds
up every worker's values: the command line sets `PROMETHEUS_MULTIPROC_DIR` before any worker
starts, each worker writes its values there, and `/metrics` reads them all.
"""

from __future__ import annotations

import os
import time
from collections import Counter as Tally
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

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
UPSTREAM_CALLS = Counter(
    "gqlbatch_upstream_calls",
    "Attempts sent upstream, by upstream and status (or error code when none came back).",
    ["upstream", "status"],
)
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
UPSTREAM_SECONDS = Histogram(
    "gqlbatch_upstream_seconds",
    "Time of one upstream attempt, by upstream.",
    ["upstream"],
    buckets=_LATENCY_S,
)


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
            _child(UPSTREAM_CALLS, call.upstream, status).inc()
            _child(UPSTREAM_SECONDS, call.upstream).observe(time.perf_counter() - started)

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
