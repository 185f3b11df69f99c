"""The GraphQL door's websockets: at most so many per client and per address, closed once
idle, and their messages read strictly (issue 24).

512 idle websockets of one client were still open 30 s later, and meanwhile the server's
connections were all taken: every new connection, anyone's, was refused. Now:

- a client may hold `ws_max_per_client` websockets, and an address `ws_max_per_address`;
  past them the handshake is refused with 429 and TOO_MANY_REQUESTS, before it is upgraded;
- a websocket that has not sent `connection_init` within `ws_init_timeout_s` is closed by
  Strawberry (4408, graphql-transport-ws);
- a websocket with no operation open and no message from its client for `ws_idle_timeout_s`
  is closed (1000); the server's own keep-alive messages do not count as use;
- a websocket runs at most `ws_max_operations` operations at once; Strawberry refuses the one
  past them, and its error gets TOO_MANY_REQUESTS here;
- a message the strict JSON reader refuses closes the websocket as its protocol says for
  invalid JSON (graphql-ws ignores it), where it once made the server write `HTTP/1.1 400`
  into the open socket.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from aiohttp import WSMsgType, web
from strawberry.aiohttp.views import AiohttpWebSocketAdapter
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived

from gqlbatch.core.errors import BatchRejected, ErrorCode
from gqlbatch.execution import metrics

__all__ = ["SOCKETS", "SocketAdapter", "Sockets"]

_OPENS = frozenset({"subscribe", "start"})
"""Client messages that open an operation: graphql-transport-ws's, then graphql-ws's."""
_ENDS_FROM_CLIENT = frozenset({"complete", "stop"})
_ENDS_FROM_SERVER = frozenset({"complete", "error"})
_KEEP_ALIVE = frozenset({"ka", "ping", "pong"})
"""Messages that say a connection is alive, not that it is used."""


@dataclass(slots=True, eq=False)
class _Socket:
    ws: web.WebSocketResponse
    client: str
    address: str
    seen: float
    """When its client last sent a message, or one of its operations last had news."""
    operations: set[object] = field(default_factory=set)


class Sockets:
    """The open websockets of one server."""

    def __init__(
        self,
        *,
        per_client: int,
        per_address: int,
        idle_s: float,
        retry_after_s: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_client = per_client
        self._per_address = per_address
        self._idle_s = idle_s
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._open: set[_Socket] = set()
        self._clients: Counter[str] = Counter()
        self._addresses: Counter[str] = Counter()

    async def open(
        self, request: web.Request, protocols: list[str], client: str, address: str
    ) -> web.WebSocketResponse:
        """The websocket of *request*, counted for *client* and *address*, once upgraded.

        Raises:
            web.HTTPTooManyRequests: the client or the address has its most open; the
                handshake is refused, not upgraded.
        """
        why = self._refusal(client, address)
        if why is not None:
            metrics.refused(ErrorCode.TOO_MANY_REQUESTS.value)
            error = {"error": {"code": ErrorCode.TOO_MANY_REQUESTS.value, "message": why}}
            raise web.HTTPTooManyRequests(
                text=json.dumps(error),
                content_type="application/json",
                headers={"Retry-After": str(self._retry_after_s)},
            )
        ws = web.WebSocketResponse(protocols=protocols)
        request[_SOCKET] = socket = _Socket(ws, client, address, self._clock())
        self._open.add(socket)
        self._clients[client] += 1
        self._addresses[address] += 1
        try:
            await ws.prepare(request)
        except BaseException:
            self.closed(request)
            raise
        return ws

    def closed(self, request: web.Request) -> None:
        """Count *request*'s websocket out, once its handler is done with it."""
        socket = request.get(_SOCKET)
        if socket is None or socket not in self._open:
            return
        self._open.discard(socket)
        for counter, key in ((self._clients, socket.client), (self._addresses, socket.address)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

    def heard(self, request: web.Request, message: object) -> None:
        """Note a message from *request*'s client."""
        socket = request.get(_SOCKET)
        if socket is None or not isinstance(message, Mapping):
            return
        kind = message.get("type")
        if kind in _KEEP_ALIVE:
            return
        socket.seen = self._clock()
        if kind in _OPENS:
            socket.operations.add(message.get("id"))
        elif kind in _ENDS_FROM_CLIENT:
            socket.operations.discard(message.get("id"))

    def told(self, request: web.Request, message: Mapping[str, object]) -> None:
        """Note a message to *request*'s client."""
        socket = request.get(_SOCKET)
        kind = message.get("type")
        if socket is None or kind in _KEEP_ALIVE:
            return
        socket.seen = self._clock()
        if kind in _ENDS_FROM_SERVER:
            socket.operations.discard(message.get("id"))

    async def close_idle(self) -> None:
        """Close, as they go idle, the websockets with no operation open and nothing heard
        for `idle_s`; runs until cancelled."""
        while True:
            await asyncio.sleep(min(self._idle_s / 4, 1.0))
            for ws in self.idle():
                message = f"idle for {self._idle_s:g} s (ws_idle_timeout_s)".encode()
                await ws.close(code=1000, message=message)
                metrics.record_closed("idle_websocket")

    def idle(self) -> list[web.WebSocketResponse]:
        """The websockets with no operation open and nothing heard for `idle_s`."""
        now = self._clock()
        return [s.ws for s in self._open if not s.operations and now - s.seen > self._idle_s]

    def _refusal(self, client: str, address: str) -> str | None:
        if self._clients[client] >= self._per_client:
            return (
                f"these credentials already have {self._per_client} websockets open "
                "(ws_max_per_client); close one first"
            )
        if self._addresses[address] >= self._per_address:
            return (
                f"this address already has {self._per_address} websockets open "
                "(ws_max_per_address); close one first"
            )
        return None

    def __len__(self) -> int:
        return len(self._open)


SOCKETS: Final = web.AppKey("sockets", Sockets)
_SOCKET: Final = web.RequestKey("socket", _Socket)


class SocketAdapter(AiohttpWebSocketAdapter):
    """Strawberry's websocket adapter for aiohttp, telling `Sockets` what passes, and reading
    messages with the view's strict JSON reader (`decode_json`)."""

    async def iter_json(
        self, *, ignore_parsing_errors: bool = False
    ) -> AsyncGenerator[object, None]:
        sockets = self.request.app[SOCKETS]
        async for message in self.ws:
            if message.type is WSMsgType.BINARY:
                raise NonTextMessageReceived
            if message.type is not WSMsgType.TEXT:
                continue
            try:
                decoded = self.view.decode_json(message.data)
            except (BatchRejected, ValueError) as exc:
                # Our reader refuses with BatchRejected (depth, NaN, ...), which an HTTP
                # request's middleware answers; here it is the protocol's invalid JSON.
                if ignore_parsing_errors:
                    continue
                raise NonJsonMessageReceived from exc
            sockets.heard(self.request, decoded)
            yield decoded

    async def send_json(self, message: Mapping[str, object]) -> None:
        self.request.app[SOCKETS].told(self.request, message)
        await super().send_json(_with_code(message))


_OVER_OPERATIONS: Final = "Subscription limit reached"
"""Strawberry's words, on both protocols, for an operation past `max_subscriptions_per_connection`
(our `ws_max_operations`); it gives them no code (checked with strawberry-graphql 0.341)."""


def _with_code(message: Mapping[str, object]) -> Mapping[str, object]:
    """*message*, with TOO_MANY_REQUESTS and the setting to name when it refuses an operation
    for the operations its websocket already runs; anything else as it is."""
    payload = message.get("payload")
    errors = payload if isinstance(payload, list) else [payload]
    if message.get("type") != "error" or not any(
        isinstance(e, dict) and e.get("message") == _OVER_OPERATIONS for e in errors
    ):
        return message
    metrics.refused(ErrorCode.TOO_MANY_REQUESTS.value)
    error = {
        "message": "this websocket already runs as many operations as it may at once "
        "(ws_max_operations); wait for one to finish, or open another websocket",
        "extensions": {"code": ErrorCode.TOO_MANY_REQUESTS.value},
    }
    return {**message, "payload": [error] if isinstance(payload, list) else error}


async def closing_idle(app: web.Application) -> AsyncIterator[None]:
    """The cleanup context that closes *app*'s idle websockets while it serves."""
    task = asyncio.create_task(app[SOCKETS].close_idle(), name="gqlbatch-server:idle-websockets")
    yield
    task.cancel()
    await asyncio.wait([task])
