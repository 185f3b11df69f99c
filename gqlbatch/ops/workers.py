"""`gqlbatch serve --workers N`: N processes under gunicorn, each running gqlbatch's aiohttp
application with aiohttp's gunicorn worker (`aiohttp.GunicornWebWorker`, or its uvloop
variant under `--loop`'s choice).

gunicorn's master binds the socket, starts the workers, restarts one that dies, and on SIGTERM
stops them gracefully. Each worker builds its own application (its own upstream pools and event
loop) from the same settings; with `[store] url` they share limits and idempotency keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web
from gunicorn.app.base import BaseApplication

from gqlbatch.core.config import Settings
from gqlbatch.doors.app import create_app
from gqlbatch.doors.listener import app_runner
from gqlbatch.execution import metrics

__all__ = ["serve_workers"]

Ready = Callable[[str], None]
"""Told the base URL once gunicorn listens."""


def serve_workers(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    *,
    ready: Ready,
    on_worker_start: Callable[[], None],
    uvloop: bool = False,
) -> None:
    """Serve with *workers* gunicorn worker processes until gunicorn is stopped (SIGTERM);
    each runs uvloop's event loop when *uvloop* is set."""

    async def application() -> web.AppRunner:
        # An async factory, as aiohttp's worker requires: each worker builds its own app.
        runner = app_runner(create_app(settings, processes=workers), settings.header_timeout_s)
        on_worker_start()
        return runner

    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "aiohttp.GunicornUVLoopWebWorker"
        if uvloop
        else "aiohttp.GunicornWebWorker",
        # One control socket per master (gunicorn 27's default) is a file in the home
        # directory that a second server on the same host collides with; gqlbatch has no use
        # for it.
        "control_socket_disable": True,
        "keepalive": settings.header_timeout_s,
        "graceful_timeout": 30,
        "accesslog": None,
        "logconfig_dict": _our_logging(),
        "when_ready": lambda arbiter: ready(_url(arbiter)),
        "child_exit": lambda _arbiter, worker: metrics.worker_exited(worker.pid),
    }
    _Gunicorn(application, options).run()


def _our_logging() -> dict[str, Any]:
    # gunicorn configures its own handlers and format; its lines go through the handlers
    # `--log-format` set up on the root logger instead, so that the log stays one format.
    handlers = logging.getLogger().handlers
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": logging.getLogger().level, "handlers": ["gqlbatch"]},
        "handlers": {"gqlbatch": {"()": lambda: handlers[0]}} if handlers else {},
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("gunicorn.error", "gunicorn.access")
        },
    }


def _url(arbiter: Any) -> str:
    host, port = arbiter.LISTENERS[0].sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    """gunicorn configured from code, not from its command line or a file."""

    def __init__(
        self,
        application: Callable[[], Coroutine[Any, Any, web.AppRunner]],
        options: dict[str, Any],
    ) -> None:
        self._application = application
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Callable[[], Coroutine[Any, Any, web.AppRunner]]:
        return self._application
