"""Retries of upstream calls inside a batch (DESIGN §7 "Retries").

The policy is pure (`should_retry`, `delay_ms`, `parse_retry_after`); `Retrying` wraps a send
for one batch and never sleeps past the item's timeout or the batch's deadline. It follows
stamina's rules: retry only named failures, back off exponentially with jitter, and bound both
attempts and time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from gqlbatch.core.errors import UpstreamError, UpstreamUnreachable
from gqlbatch.core.upstream_settings import RetrySettings
from gqlbatch.core.wire import IDEMPOTENT_METHODS, Send, UpstreamCall, UpstreamResponse

__all__ = ["RETRY_STATUSES", "Retrying", "delay_ms", "parse_retry_after", "should_retry"]

RETRY_STATUSES = frozenset({429, 502, 503, 504})


def may_retry(call: UpstreamCall) -> bool:
    """Idempotent methods may be retried; others only when they carry an Idempotency-Key."""
    return call.method in IDEMPOTENT_METHODS or any(
        name.lower() == "idempotency-key" for name, _ in call.headers
    )


def should_retry(call: UpstreamCall, outcome: UpstreamResponse | UpstreamError) -> bool:
    """Whether *outcome* is a failure worth another attempt of *call*.

    Connection errors and 429/502/503/504 are; a timeout is not (the call may still be running
    upstream), nor is a body we could not read.
    """
    if not may_retry(call):
        return False
    if isinstance(outcome, UpstreamError):
        return isinstance(outcome, UpstreamUnreachable)
    return outcome.status in RETRY_STATUSES


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After in milliseconds, from delay-seconds or an HTTP-date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000.0
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds() * 1000)


def delay_ms(
    attempt: int,
    retry_after_ms: float | None,
    settings: RetrySettings,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """How long to wait before attempt *attempt* + 1, or None when the upstream asked for
    longer than we are willing to wait. Without Retry-After: full jitter over an exponential
    backoff, capped."""
    if retry_after_ms is not None:
        return retry_after_ms if retry_after_ms <= settings.max_retry_after_ms else None
    ceiling = min(settings.max_backoff_ms, settings.backoff_ms * 2 ** (attempt - 1))
    return rand() * float(ceiling)


class Retrying:
    """A batch's send with retries, bounded by each call's timeout and the batch deadline."""

    def __init__(
        self,
        send: Send,
        settings: RetrySettings,
        *,
        deadline: float,
        timeouts_ms: Mapping[str, int],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._send = send
        self._settings = settings
        self._deadline = deadline
        self._timeouts_ms = timeouts_ms
        self._clock = clock
        self._sleep = sleep

    async def send(self, call: UpstreamCall) -> UpstreamResponse:
        """Send *call*, retrying as the policy allows; the result carries its attempt count.

        Raises:
            UpstreamError: the last attempt's error, with `attempts` set.
        """
        timeout_ms = call.timeout_ms or self._timeouts_ms.get(call.upstream, 10_000)
        give_up_at = min(self._deadline, self._clock() + timeout_ms / 1000)
        attempt = 1
        while True:
            outcome: UpstreamResponse | UpstreamError
            try:
                outcome = await self._send(call)
            except UpstreamError as exc:
                outcome = exc
            if isinstance(outcome, UpstreamResponse) and outcome.status not in RETRY_STATUSES:
                return outcome.with_attempts(attempt)  # most answers: nothing to retry
            wait_ms = self._wait_ms(call, outcome, attempt, give_up_at)
            if wait_ms is None:
                if isinstance(outcome, UpstreamResponse):
                    return outcome.with_attempts(attempt)
                outcome.attempts = attempt
                try:
                    raise outcome
                finally:
                    # A raised error's traceback keeps this frame: it must not keep the error
                    # in turn, or the two form a cycle only the cyclic collector frees.
                    del outcome
            await self._sleep(wait_ms / 1000)
            attempt += 1

    def _wait_ms(
        self,
        call: UpstreamCall,
        outcome: UpstreamResponse | UpstreamError,
        attempt: int,
        give_up_at: float,
    ) -> float | None:
        if attempt >= self._settings.max_attempts or not should_retry(call, outcome):
            return None
        retry_after = None
        if isinstance(outcome, UpstreamResponse):
            header = next((v for n, v in outcome.headers if n.lower() == "retry-after"), None)
            retry_after = parse_retry_after(header, datetime.now(UTC))
        wait = delay_ms(attempt, retry_after, self._settings)
        if wait is None or self._clock() + wait / 1000 >= give_up_at:
            return None  # no time left for another attempt: the last answer stands
        return wait
