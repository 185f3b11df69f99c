"""The `gqlbatch` command: `serve`, `demo` and `export-schema`.

The only module that reads the process's arguments and environment. A bad flag or setting exits
with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from gqlbatch.app import create_app, running
from gqlbatch.config import Settings
from gqlbatch.demo import EXAMPLE_QUERY, sample_api
from gqlbatch.errors import ConfigError
from gqlbatch.schema import build_schema

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["main"]

DEFAULT_SCHEMA_PATH = Path("schema/schema.graphql")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"gqlbatch: error: {exc}", file=sys.stderr)
        return 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"gqlbatch: error: {message} (see gqlbatch --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gqlbatch", description="A GraphQL batching gateway for REST APIs.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND", parser_class=_Parser)

    serve = commands.add_parser("serve", help="serve /graphql in front of REST upstreams")
    serve.add_argument(
        "--upstream",
        action="append",
        required=True,
        metavar="[NAME=]URL",
        help="a REST service to front; repeat as name=URL for several",
    )
    _add_listen_args(serve, port=8000)
    serve.set_defaults(run=_serve)

    demo = commands.add_parser("demo", help="serve in front of a built-in sample REST API")
    _add_listen_args(demo, port=8000)
    demo.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay every sample API response by this much"
    )
    demo.set_defaults(run=_demo)

    export = commands.add_parser("export-schema", help="print or write the GraphQL SDL")
    export.add_argument("-o", "--output", type=Path, help=f"write here, e.g. {DEFAULT_SCHEMA_PATH}")
    export.set_defaults(run=_export_schema)
    return parser


def _add_listen_args(parser: argparse.ArgumentParser, *, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=port, help="port to listen on (0: any)")


def _serve(args: argparse.Namespace) -> int:
    settings = Settings.from_upstream_urls(args.upstream)
    return _run_until_interrupted(_serve_forever(settings, args.host, args.port))


async def _serve_forever(settings: Settings, host: str, port: int) -> None:
    async with _listening(create_app(settings), host, port) as url:
        print(
            f"gqlbatch serving {url}/graphql in front of "
            + ", ".join(f"{u.name}={u.base_url}" for u in settings.upstreams.values()),
            flush=True,
        )
        await asyncio.Event().wait()


def _demo(args: argparse.Namespace) -> int:
    return _run_until_interrupted(_demo_forever(args.host, args.port, args.latency_ms))


async def _demo_forever(host: str, port: int, latency_ms: float) -> None:
    async with running(sample_api(latency_ms=latency_ms)) as api_url:
        settings = Settings.from_upstream_urls([api_url])
        app = create_app(settings, landing_query=EXAMPLE_QUERY)
        async with _listening(app, host, port) as url:
            print(
                f"gqlbatch demo: sample REST API at {api_url} (users, posts, comments)", flush=True
            )
            print(
                f"Open {url}/ for GraphiQL with an example batch, or POST to {url}/graphql",
                flush=True,
            )
            await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def _listening(app: web.Application, host: str, port: int) -> AsyncIterator[str]:
    try:
        server = running(app, host, port)
        url = await server.__aenter__()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    try:
        yield url
    finally:
        await server.__aexit__(None, None, None)


def _run_until_interrupted(coro: object) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(coro)  # type: ignore[arg-type]
    return 0


def _export_schema(args: argparse.Namespace) -> int:
    sdl = build_schema().as_str() + "\n"
    if args.output is None:
        sys.stdout.write(sdl)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(sdl, encoding="utf-8")
    return 0
