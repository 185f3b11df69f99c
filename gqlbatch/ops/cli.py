"""The `gqlbatch` command: `serve`, `demo` and `export-schema`.

The only module that reads the process's arguments, environment and files. A bad flag or
setting exits with status 2 and one line on stderr. The application is imported inside the
commands, not at the top: `serve --workers` must set up metrics before it is imported.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

from gqlbatch.core.config import Settings
from gqlbatch.core.errors import ConfigError
from gqlbatch.core.upstream_settings import upstream_flags
from gqlbatch.ops.config_file import settings_from_mapping, settings_from_toml
from gqlbatch.ops.logs import LOG_FORMATS, configure_logging
from gqlbatch.ops.memory import give_back_large_blocks
from gqlbatch.ops.running import (
    listening,
    loop_factory,
    loop_name,
    run_until_interrupted,
    tune_collector,
)

if TYPE_CHECKING:
    from gqlbatch.core.openapi import Contract

__all__ = ["main"]

log = logging.getLogger("gqlbatch.cli")

DEFAULT_SCHEMA_PATH = Path("schema/schema.graphql")
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
LOOPS = ("auto", "uvloop", "asyncio")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    args.environ = os.environ if environ is None else environ
    configure_logging(getattr(args, "log_level", "INFO"), getattr(args, "log_format", "text"))
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
    parser.add_argument("--version", action="version", version=f"gqlbatch {_version()}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND", parser_class=_Parser)

    serve = commands.add_parser("serve", help="serve /graphql in front of REST upstreams")
    _add_source_args(serve)
    _add_log_args(serve, log_format="json")
    _add_listen_args(serve)
    _add_loop_arg(serve)
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="processes under gunicorn (default 1: this process); with [store] url they "
        "share limits and idempotency keys",
    )
    serve.set_defaults(run=_serve)

    worker = commands.add_parser(
        "worker", help="run async batches (jobs) from the shared store's queue; no HTTP"
    )
    _add_source_args(worker)
    _add_log_args(worker, log_format="json")
    _add_loop_arg(worker)
    worker.set_defaults(run=_worker)

    demo = commands.add_parser(
        "demo",
        help="serve in front of a built-in sample REST API",
        description="Serve in front of a built-in sample REST API. The demo honours the "
        "GQLBATCH_* variables serve does, such as GQLBATCH_GRAPHIQL__ASSETS_DIR=DIR (GraphiQL "
        "from files fetched by `gqlbatch graphiql --download DIR`) and "
        "GQLBATCH_CORS__ORIGINS='[\"http://localhost:5173\"]' (a page on another origin).",
    )
    _add_log_args(demo, log_format="text")
    _add_listen_args(demo)
    _add_loop_arg(demo)
    demo.add_argument(
        "--latency-ms",
        type=_milliseconds,
        default=0.0,
        help="delay every sample API response by this much",
    )
    demo.add_argument(
        "--api-port",
        type=_port,
        default=0,
        help="port for the sample REST API, on the same host (default: any free port)",
    )
    demo.add_argument(
        "--no-bulk",
        action="store_true",
        help="turn the demo's bulk routes off, to compare upstream calls",
    )
    demo.set_defaults(run=_demo)

    routes = commands.add_parser(
        "routes", help="print the bulk routes each upstream has, and those its OpenAPI shows"
    )
    _add_source_args(routes)
    routes.set_defaults(run=_routes)

    graphiql = commands.add_parser(
        "graphiql", help="fetch GraphiQL's files once, to serve them without a CDN"
    )
    graphiql.add_argument(
        "--download",
        type=Path,
        required=True,
        metavar="DIR",
        help="the folder to write them to; then set [graphiql] assets_dir = DIR",
    )
    graphiql.add_argument(
        "--registry",
        default=None,
        help="the npm registry to fetch from (default https://registry.npmjs.org)",
    )
    graphiql.set_defaults(run=_graphiql)

    export = commands.add_parser("export-schema", help="print or write the GraphQL SDL")
    export.add_argument("-o", "--output", type=Path, help=f"write here, e.g. {DEFAULT_SCHEMA_PATH}")
    maps = export.add_mutually_exclusive_group()
    maps.add_argument(
        "--possible-types",
        action="store_true",
        help="print Apollo Client's possibleTypes map (each interface and union) instead",
    )
    maps.add_argument(
        "--graphcache-keys",
        action="store_true",
        help="print each object type's cache key (id, or null) for urql's graphcache instead",
    )
    typed = export.add_mutually_exclusive_group()
    typed.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="with the types of the answers its upstreams' OpenAPI documents describe",
    )
    typed.add_argument(
        "--demo", action="store_true", help="with the types of the demo's sample API"
    )
    export.set_defaults(run=_export_schema, upstream=None)
    return parser


def _add_source_args(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a gqlbatch.toml; GQLBATCH_* environment variables override it",
    )
    source.add_argument(
        "--upstream",
        action="append",
        metavar="[NAME=]URL",
        help="a REST service to front; repeat as name=URL for several",
    )


def _add_log_args(parser: argparse.ArgumentParser, *, log_format: str) -> None:
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="INFO writes one line per batch (default); WARNING only problems",
    )
    parser.add_argument(
        "--log-format",
        default=log_format,
        choices=LOG_FORMATS,
        help=f"json: one JSON object per line; text: for a person (default {log_format})",
    )


def _add_listen_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument(
        "--port", type=_port, help=f"port to listen on, 0 for any (default {DEFAULT_PORT})"
    )


def _add_loop_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loop",
        default="auto",
        choices=LOOPS,
        help="the event loop: uvloop where it is installed (auto, the default; installed with "
        "gqlbatch except on Windows), or Python's own asyncio loop",
    )


def _port(text: str) -> int:
    port: int = _number(text, int)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0 to 65535)")
    return port


def _milliseconds(text: str) -> float:
    value: float = _number(text, float)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a duration (0 or more milliseconds)")
    return value


def _number(text: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None


def _version() -> str:
    try:
        return metadata.version("gqlbatch")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _serve(args: argparse.Namespace) -> int:
    settings, server = _settings(args)
    give_back_large_blocks()  # before gunicorn forks: its workers inherit it
    host = args.host or server.get("host", DEFAULT_HOST)
    port = args.port if args.port is not None else server.get("port", DEFAULT_PORT)
    if args.workers == 1:
        return run_until_interrupted(_serve_forever(settings, host, port), args.loop)
    _share_metrics_between_workers()
    from gqlbatch.ops.workers import serve_workers  # gunicorn only when asked for

    loop = "asyncio" if loop_factory(args.loop) is None else "uvloop"

    if settings.store_url is None:
        log.warning(
            "%d workers without [store] url: each keeps its own outstanding-call limits and "
            "idempotency keys, and async batches (jobs) are refused, since a job could be "
            "read only through the worker that took it (docs/deploying.md)",
            args.workers,
        )
    serve_workers(
        settings,
        host,
        port,
        args.workers,
        ready=lambda url: _announce(url, settings, f" ({args.workers} workers, {loop})"),
        on_worker_start=tune_collector,
        uvloop=loop == "uvloop",
    )
    return 0


def _share_metrics_between_workers() -> None:
    """prometheus-client adds up the workers' metrics from files in one directory, named by
    PROMETHEUS_MULTIPROC_DIR before it is first imported: the application, and so the metrics,
    are only imported past this point (hence the imports inside this module's functions)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        directory = tempfile.mkdtemp(prefix="gqlbatch-metrics-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory


def _worker(args: argparse.Namespace) -> int:
    give_back_large_blocks()
    settings, _ = _settings(args)
    if settings.store_url is None:
        raise ConfigError(
            "gqlbatch worker takes jobs from the shared store's queue: set [store] url or "
            "GQLBATCH_STORE__URL (without it, serve runs each job in the process that took it)"
        )
    settings = dataclasses.replace(settings, jobs_in_process=True)
    return run_until_interrupted(_work_forever(settings), args.loop)


async def _work_forever(settings: Settings) -> None:
    from gqlbatch.doors.app import create_app
    from gqlbatch.doors.listener import started

    async with started(create_app(settings)):
        print(f"gqlbatch worker running jobs from {_redacted(settings.store_url)}", flush=True)
        tune_collector()
        await asyncio.Event().wait()


def _redacted(url: str | None) -> str:
    """*url* without its user and password, for a line that goes to logs."""
    parts = urlsplit(url or "")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _workers(text: str) -> int:
    workers: int = _number(text, int)
    if not 1 <= workers <= 64:
        raise argparse.ArgumentTypeError(f"{text} is not a number of workers (1 to 64)")
    return workers


def _announce(url: str, settings: Settings, suffix: str = "") -> None:
    upstreams = ", ".join(f"{u.name}={u.base_url}" for u in settings.upstreams.values())
    print(f"gqlbatch serving {url}/graphql in front of {upstreams}{suffix}", flush=True)


def _settings(args: argparse.Namespace) -> tuple[Settings, dict[str, Any]]:
    if args.config is not None:
        try:
            text = args.config.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {args.config}: {exc.strerror}") from exc
        return settings_from_toml(text, args.environ, source=str(args.config))
    named = upstream_flags(args.upstream)
    data = {"upstreams": {name: {"base_url": url} for name, url in named.items()}}
    return settings_from_mapping(data, args.environ, source="--upstream")


async def _serve_forever(settings: Settings, host: str, port: int) -> None:
    from gqlbatch.doors.app import create_app

    async with listening(create_app(settings), host, port) as url:
        _announce(url, settings, f" ({loop_name()})")
        tune_collector()
        await asyncio.Event().wait()


def _demo(args: argparse.Namespace) -> int:
    give_back_large_blocks()
    host, port = args.host or DEFAULT_HOST, DEFAULT_PORT if args.port is None else args.port
    return run_until_interrupted(_demo_forever(args, host, port), args.loop)


async def _demo_forever(args: argparse.Namespace, host: str, port: int) -> None:
    from gqlbatch.doors.app import create_app
    from gqlbatch.ops.demo import EXAMPLE_BATCH, EXAMPLE_QUERY, sample_api

    async with listening(sample_api(latency_ms=args.latency_ms), host, args.api_port) as api_url:
        settings = demo_settings(api_url, args.environ, bulk=not args.no_bulk)
        app = create_app(settings, landing_query=EXAMPLE_QUERY, playground_example=EXAMPLE_BATCH)
        async with listening(app, host, port) as url:
            print(
                f"gqlbatch demo: sample REST API at {api_url} (users, posts, comments)", flush=True
            )
            print(
                f"Open {url}/ for the playground with the example screen, {url}/graphiql for "
                f"GraphiQL with example batches, or POST to {url}/graphql",
                flush=True,
            )
            tune_collector()
            await asyncio.Event().wait()


def demo_settings(api_url: str, environ: Mapping[str, str], *, bulk: bool = True) -> Settings:
    """The packaged demo.toml, pointed at the sample API at *api_url*."""
    text = resources.files("gqlbatch").joinpath("demo.toml").read_text(encoding="utf-8")
    prefix = "GQLBATCH_UPSTREAMS__DEMO__"
    env = {
        **environ,
        prefix + "BASE_URL": f'"{api_url}"',
        prefix + "OPENAPI": f'"{api_url}/openapi.json"',
    }
    if not bulk:
        env[prefix + "BULK"] = "[]"
    return settings_from_toml(text, env, source="demo.toml")[0]


def _exported_contracts(args: argparse.Namespace) -> tuple[dict[str, Contract], frozenset[str]]:
    """The OpenAPI documents whose answer types `export-schema` adds (none by default), and
    the upstreams whose `id` fields keep their documented types."""
    from gqlbatch.core.openapi import Contract
    from gqlbatch.doors.documents import load_contracts
    from gqlbatch.doors.graphql.schema import documented_ids
    from gqlbatch.ops.demo import openapi_document

    if args.demo:  # demo.toml's one upstream
        return {"demo": Contract(openapi_document(), "the demo's sample API")}, frozenset()
    if args.config is None:
        return {}, frozenset()
    settings, _ = _settings(args)
    return asyncio.run(load_contracts(settings)), documented_ids(settings)


def _routes(args: argparse.Namespace) -> int:
    from gqlbatch.doors.documents import load_contracts
    from gqlbatch.execution.engine import bulk_routes

    settings, _ = _settings(args)
    contracts = asyncio.run(load_contracts(settings))
    used = bulk_routes(settings, contracts)
    for name, upstream in settings.upstreams.items():
        found = contracts[name].bulk_routes if name in contracts else ()
        configured = {r.match for r in upstream.bulk}
        state = "used" if upstream.infer_bulk else "not used: set infer_bulk = true"
        print(
            f"# upstreams.{name}: {len(upstream.bulk)} configured, {len(found)} found in its "
            f"OpenAPI document ({state}); {len(used[name])} in use"
        )
        for route in (*upstream.bulk, *(r for r in found if r.match not in configured)):
            origin = "configured" if route.match in configured else "from the document"
            print(f"[[upstreams.{name}.bulk]]  # {origin}: {route.path}?{route.param}=…")
            print(f'match = "{route.match}"' + ("\nmany = true" if route.many else ""))
        print()
    return 0


def _graphiql(args: argparse.Namespace) -> int:
    from gqlbatch.doors.graphql.view import graphiql_page
    from gqlbatch.ops.graphiql_assets import NPM_REGISTRY, download

    registry = args.registry or NPM_REGISTRY
    written = asyncio.run(download(graphiql_page(), args.download, registry))
    for path in written:
        print(f"{path} (sha384 checked)")
    print(f"Now set [graphiql] assets_dir = {str(args.download)!r} in the configuration.")
    return 0


def _export_schema(args: argparse.Namespace) -> int:
    from gqlbatch.doors.graphql.schema import (
        answer_types,
        build_schema,
        cache_keys,
        possible_types,
    )

    contracts, documented = _exported_contracts(args)
    schema = build_schema(answers=answer_types(contracts, documented) if contracts else None)
    if args.possible_types:
        sdl = json.dumps(possible_types(schema), indent=2) + "\n"
    elif args.graphcache_keys:
        sdl = json.dumps(cache_keys(schema), indent=2) + "\n"
    else:
        sdl = schema.as_str() + "\n"
    if args.output is None:
        sys.stdout.write(sdl)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(sdl, encoding="utf-8")
    return 0
