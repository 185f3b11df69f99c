"""`/readyz`: whether this process should get traffic. It is not draining, its store answers,
and each upstream with a `probe_path` answers it below 500; else 503, saying which failed.

Draining (`drain`, from SIGTERM): `/readyz` answers 503 while the requests in progress
finish, the process still listening, so that a load balancer takes it out of its pool first;
every answer meanwhile carries `Connection: close` (`watch_answers`), so that no client sends
its next request on a connection about to close (issue 25: during a drain, /readyz could not
be reached, and the next request on each kept-alive connection was reset).

Checked at most once a second, however many ask, and by one check at a time (issue 24: every
anonymous GET sent a probe to every upstream). The answer says what failed by its kind, never
in the failure's own words (they name hosts and addresses); those go to the log, once each
time a check's result changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from gqlbatch.core.config import Settings
from gqlbatch.core.errors import UpstreamError
from gqlbatch.core.wire import UpstreamCall
from gqlbatch.doors.http import CLIENT, SETTINGS
from gqlbatch.execution import metrics
from gqlbatch.upstreams.client import UpstreamClient

__all__ = ["DRAIN_S", "READINESS", "Readiness", "drain", "readyz", "watch_answers"]

log = logging.getLogger("gqlbatch.readiness")

_PROBE_TIMEOUT_MS = 2_000
_FRESH_S = 1.0
"""How long one check's findings answer every /readyz."""
DRAIN_S = 25.0
"""The longest a drain waits for the requests in progress, within gunicorn's graceful 30 s;
those still running then are waited for by aiohttp's own shutdown."""
_NOT_COUNTED = frozenset({"/readyz", "/healthz", "/metrics"})


@dataclasses.dataclass
class Readiness:
    """What `/readyz` reports besides the upstreams."""

    draining: bool = False
    """Set when the server begins to stop: a load balancer should send it nothing new."""
    store: Callable[[], Awaitable[object]] | None = None
    """Pings the shared store, when there is one."""
    _found: tuple[float, dict[str, str]] | None = None
    """The last check's findings (the store's and each upstream's), and when it was made."""
    _checking: asyncio.Task[dict[str, str]] | None = None
    _said: dict[str, str] = dataclasses.field(default_factory=dict)
    """What was last logged of each check."""
    busy: int = 0
    """Requests in progress, but for probes and websockets."""
    _idle: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    """Set while nothing is in progress."""

    def __post_init__(self) -> None:
        self._idle.set()

    @contextlib.contextmanager
    def counted(self) -> Iterator[None]:
        """One request in progress for the duration of the block."""
        self.busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.busy -= 1
            if not self.busy:
                self._idle.set()

    async def drained(self, within_s: float) -> None:
        """Begin draining; return once nothing is in progress, or *within_s* has passed."""
        self.draining = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                await self._idle.wait()

    async def findings(self, settings: Settings, client: UpstreamClient) -> dict[str, str]:
        """The store's and each probed upstream's state ("ok", or "failing: <kind>"), by
        "store" and by upstream name: a second old at most."""
        found = self._found
        if found is not None and time.monotonic() - found[0] < _FRESH_S:
            return found[1]
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(self._check(settings, client))
        return await asyncio.shield(self._checking)

    async def _check(self, settings: Settings, client: UpstreamClient) -> dict[str, str]:
        probed = [u for u in settings.upstreams.values() if u.probe_path]
        checks = await asyncio.gather(
            self._check_store(), *(_probe(client, u.name, u.probe_path) for u in probed)
        )
        found = dict(zip(["store", *(u.name for u in probed)], checks, strict=True))
        states = {name: state for name, (state, _) in found.items()}
        for name, (state, why) in found.items():
            if self._said.get(name, "ok") != state:  # said once each time it changes
                self._said[name] = state
                log.warning("readiness: %s is %s", name, why or state)
        self._found = (time.monotonic(), states)
        return states

    async def _check_store(self) -> tuple[str, str | None]:
        if self.store is None:
            return "ok", None  # in memory
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT_MS / 1000):
                await self.store()
        except Exception as exc:  # any failure to answer is "not ready"
            return f"failing: {type(exc).__name__}", f"failing: {type(exc).__name__}: {exc}"
        return "ok", None


async def _probe(client: UpstreamClient, upstream: str, path: str | None) -> tuple[str, str | None]:
    call = UpstreamCall(upstream, "GET", path or "/", timeout_ms=_PROBE_TIMEOUT_MS)
    try:
        response = await client.send(call)
    except UpstreamError as exc:
        return f"failing: {exc.code.value}", f"failing: {exc.code.value}: {exc.message}"
    if response.status >= 500:
        said = f"failing: answered {response.status}"
        return said, f"{said} to GET {path}"
    return "ok", None


READINESS: Final = web.AppKey("readiness", Readiness)


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz."""
    readiness, settings = request.app[READINESS], request.app[SETTINGS]
    found = await readiness.findings(settings, request.app[CLIENT])
    upstreams: dict[str, str] = dict.fromkeys(settings.upstreams, "not probed")
    upstreams.update({name: state for name, state in found.items() if name != "store"})
    ready = not readiness.draining and all(state == "ok" for state in found.values())
    body = {
        "status": "ready" if ready else "not ready",
        "draining": readiness.draining,
        "store": found["store"],
        "upstreams": upstreams,
    }
    return web.json_response(body, status=200 if ready else 503)


async def drain(app: web.Application, within_s: float = DRAIN_S) -> None:
    """From SIGTERM, before the server stops listening: /readyz says not to send this process
    anything, and the requests in progress finish (*within_s* at most)."""
    busy = app[READINESS].busy
    if busy:
        log.warning("draining: %d requests in progress", busy)
    await app[READINESS].drained(within_s)


@web.middleware
async def watch_answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outermost middleware: counts the requests in progress (for a drain; a websocket
    is not counted, it lasts as long as its client wants) and each answer by its status (for
    `/metrics`), and closes each connection after its answer once the server is draining."""
    readiness = request.app[READINESS]
    counted = (
        request.path not in _NOT_COUNTED
        and request.headers.get("Upgrade", "").lower() != "websocket"
    )
    try:
        with readiness.counted() if counted else contextlib.nullcontext():
            response = await handler(request)
    except web.HTTPException as exc:
        metrics.record_answer(exc.status)
        raise
    except Exception:  # aiohttp answers it 500 (front_door answers everything it can)
        metrics.record_answer(500)
        raise
    metrics.record_answer(response.status)
    if readiness.draining:
        response.force_close()  # aiohttp writes `Connection: close`, then closes
    return response
