"""`/readyz`: whether this process should get traffic. It is not draining, its store answers,
and each upstream with a `probe_path` answers it below 500; else 503, saying which failed.

Checked at most once a second, however many ask, and by one check at a time (issue 24: every
anonymous GET sent a probe to every upstream). The answer says what failed by its kind, never
in the failure's own words (they name hosts and addresses); those go to the log, once each
time a check's result changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from gqlbatch.core.config import Settings
from gqlbatch.core.errors import UpstreamError
from gqlbatch.core.wire import UpstreamCall
from gqlbatch.doors.http import CLIENT, SETTINGS
from gqlbatch.upstreams.client import UpstreamClient

__all__ = ["READINESS", "Readiness", "draining", "readyz"]

log = logging.getLogger("gqlbatch.readiness")

_PROBE_TIMEOUT_MS = 2_000
_FRESH_S = 1.0
"""How long one check's findings answer every /readyz."""


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


async def draining(app: web.Application) -> None:
    """The on-shutdown hook: from now on, /readyz says not to send this process anything."""
    app[READINESS].draining = True
