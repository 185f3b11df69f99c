"""Settings from a TOML document and `GQLBATCH_*` environment overrides.

Pure: `cli.py` reads the file and the environment and passes their text here. Every mistake
becomes one ConfigError naming the key and why, such as
`limits.max_items must be a positive integer, got -1`.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from gqlbatch.core.config import LIMITS, SERVER_LIMITS, CorsSettings, Settings
from gqlbatch.core.errors import ConfigError
from gqlbatch.core.operation_settings import NamedOperation
from gqlbatch.core.request import Mode, OnError
from gqlbatch.core.upstream_settings import (
    BulkRoute,
    RetrySettings,
    RouteCompensation,
    UpstreamSettings,
)

__all__ = ["ENV_PREFIX", "settings_from_mapping", "settings_from_toml"]

ENV_PREFIX = "GQLBATCH_"

_SECTIONS = {
    "server",
    "limits",
    "headers",
    "upstreams",
    "graphiql",
    "introspection",
    "retries",
    "idempotency",
    "doors",
    "store",
    "jobs",
    "cors",
    "persisted_queries",
    "operations",
}


def _kind(hint: Any) -> type:
    """The TOML kind of a settings field's type: `int | None` is an int, a tuple a list."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        [present] = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _kind(present)
    if origin in (tuple, list):
        return list
    if hint in (int, str, bool):
        return typing.cast(type, hint)
    raise TypeError(f"no TOML kind for {hint!r}")


def _kinds(cls: type, names: Iterable[str] | None = None, *, prefix: str = "") -> dict[str, type]:
    """The keys of a table and their kinds, from the fields of *cls* they set: *names* (or
    every field that starts with *prefix*, the prefix dropped), each the field *prefix* +
    name. The types are the settings' own, so the file's can never drift from them."""
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    if names is None:
        names = [name.removeprefix(prefix) for name in fields if name.startswith(prefix)]
    return {name: _kind(hints[prefix + name]) for name in names}


_RETRIES = _kinds(RetrySettings)
_DOORS = {"graphql", "json", "multipart"}
_DOOR_OPTIONS = {"mode": str, "on_error": str, "atomic": bool}
_DOOR_PATHS = _kinds(Settings, ["batch_paths", "operations_paths"])
"""[doors] keys beside the doors' tables: more paths for a door."""
_PERSISTED_FIELDS = {"enabled": "persisted_queries", "trusted_documents": "trusted_documents"}
_PERSISTED = {
    **{key: _kind(typing.get_type_hints(Settings)[f]) for key, f in _PERSISTED_FIELDS.items()},
    **_kinds(Settings, ["max_bytes", "max_bytes_per_client", "ttl_s"], prefix="persisted_queries_"),
}
_GRAPHIQL = {"enabled": bool, **_kinds(Settings, ["assets_dir"], prefix="graphiql_")}
_CORS = _kinds(CorsSettings)
_JOBS = _kinds(Settings, prefix="jobs_")
_CHOICES = {"mode": Mode, "on_error": OnError}
_IDEMPOTENCY = _kinds(Settings, prefix="idempotency_")
_LISTEN = ("host", "port")  # for the CLI; the rest of [server] are Settings
_SERVER = {
    "host": str,
    "port": int,
    **_kinds(Settings, [*SERVER_LIMITS, "trusted_proxies"]),
}
_LIMITS = _kinds(Settings, LIMITS)
_UPSTREAM = {key: kind for key, kind in _kinds(UpstreamSettings).items() if key != "name"}
_BULK = _kinds(BulkRoute)
_COMPENSATE_ROUTE = {"match": str, "with": dict}
"""[[upstreams.NAME.compensate]]: `with` is RouteCompensation.undo (a Python keyword)."""


def settings_from_toml(
    text: str, env: Mapping[str, str] | None = None, *, source: str = "config"
) -> tuple[Settings, dict[str, Any]]:
    """Parse a gqlbatch TOML document, apply `GQLBATCH_*` overrides, and validate it all.

    Returns the settings and the `[server]` table (host and port for the CLI).

    Raises:
        ConfigError: with the source, the key and the reason.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    return settings_from_mapping(data, env, source=source)


def settings_from_mapping(
    data: dict[str, Any], env: Mapping[str, str] | None = None, *, source: str = "config"
) -> tuple[Settings, dict[str, Any]]:
    """The same as `settings_from_toml`, for a document already parsed (or built by the CLI)."""
    overridden: dict[str, str] = {}
    try:
        for name, value in sorted((env or {}).items()):
            if name.startswith(ENV_PREFIX):
                overridden[_override(data, name, value)] = name
        server = _table(data.get("server"), "server", _SERVER)
        if not 0 <= server.get("port", 0) <= 65535:
            raise ConfigError(f"server.port must be a port (0 to 65535), got {server['port']}")
        listen = {k: v for k, v in server.items() if k in _LISTEN}
        return _settings(data, {k: v for k, v in server.items() if k not in _LISTEN}), listen
    except ConfigError as exc:
        message = str(exc)
        if message.startswith(ENV_PREFIX):  # already names its variable
            raise
        raise ConfigError(f"{_blamed(message, overridden, source)}: {message}") from exc


def _blamed(message: str, overridden: Mapping[str, str], source: str) -> str:
    # Every message names its dotted key first (or after "unknown key"): a key an environment
    # variable set is that variable's mistake, not the file's or the flag's.
    for key, name in overridden.items():
        if re.match(rf"(unknown key )?{re.escape(key)}\b", message):
            return name
    return source


def _override(data: dict[str, Any], name: str, value: str) -> str:
    # GQLBATCH_LIMITS__MAX_ITEMS=50 sets limits.max_items; "__" separates the levels. The value
    # is read as a TOML value when it is one (50, true, ["a", "b"]) and as a string otherwise.
    path = name[len(ENV_PREFIX) :].lower().split("__")
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{name}: {'.'.join(path)} does not name a table")
    try:
        node[path[-1]] = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        node[path[-1]] = value
    return ".".join(path)


_KIND_NAMES = {
    str: "string",
    bool: "boolean (true or false)",
    list: "list",
    int: "integer",
    dict: "table",
}


def _settings(data: dict[str, Any], server: dict[str, Any]) -> Settings:
    _check_keys(data, _SECTIONS, "")
    limits = _table(data.get("limits"), "limits", _LIMITS)
    if "trusted_proxies" in server:
        server["trusted_proxies"] = _strings(
            server["trusted_proxies"], "server.trusted_proxies", "addresses or networks"
        )
    headers = _table(data.get("headers"), "headers", {"forward": list})
    upstreams = data.get("upstreams")
    if not isinstance(upstreams, dict) or not upstreams:
        raise ConfigError("[upstreams] needs at least one table, such as [upstreams.users]")
    options: dict[str, Any] = {**limits, **server}
    if "forward" in headers:
        options["forward_headers"] = _strings(headers["forward"], "headers.forward")
    if isinstance(data.get("graphiql"), dict):  # [graphiql] enabled = ..., assets_dir = ...
        graphiql = _table(data["graphiql"], "graphiql", _GRAPHIQL)
        if "enabled" in graphiql:
            options["graphiql"] = graphiql["enabled"]
        if "assets_dir" in graphiql:
            options["graphiql_assets_dir"] = graphiql["assets_dir"]
    elif "graphiql" in data:  # graphiql = true | false
        options["graphiql"] = _typed(data["graphiql"], bool, "graphiql")
    if "introspection" in data:
        options["introspection"] = _typed(data["introspection"], bool, "introspection")
    if "retries" in data:
        options["retries"] = RetrySettings(**_table(data["retries"], "retries", _RETRIES))
    idempotency = _table(data.get("idempotency"), "idempotency", _IDEMPOTENCY)
    for key in _IDEMPOTENCY:
        if key in idempotency:
            options[f"idempotency_{key}"] = idempotency[key]
    jobs = _table(data.get("jobs"), "jobs", _JOBS)
    for key in jobs:
        options[f"jobs_{key}"] = jobs[key]
    cors = _table(data.get("cors"), "cors", _CORS)
    if "origins" in cors:
        cors["origins"] = tuple(_strings(cors["origins"], "cors.origins", "origins"))
    if cors:
        options["cors"] = CorsSettings(**cors)
    persisted = _table(data.get("persisted_queries"), "persisted_queries", _PERSISTED)
    for key, field in _PERSISTED_FIELDS.items():
        if key in persisted:
            options[field] = persisted.pop(key)
    for key, value in persisted.items():
        options[f"persisted_queries_{key}"] = value
    store = _table(data.get("store"), "store", {"url": str})
    if "url" in store:
        options["store_url"] = store["url"]
    doors = _table(data.get("doors"), "doors", {**dict.fromkeys(_DOORS, dict), **_DOOR_PATHS})
    for key in _DOOR_PATHS:
        if key in doors:
            options[key] = _strings(doors.pop(key), f"doors.{key}", "paths")
    options["door_options"] = {name: _door(name, table) for name, table in doors.items()}
    operations = _table(
        data.get("operations"), "operations", dict.fromkeys(data.get("operations") or {}, dict)
    )
    if operations:
        options["operations"] = {n: _operation(n, t) for n, t in operations.items()}
    built = {name: _upstream(name, table) for name, table in upstreams.items()}
    return Settings(upstreams=built, **options)


def _door(name: str, table: dict[str, Any]) -> dict[str, object]:
    # [doors.json] mode = "SEQUENTIAL" -> the plain option {"mode": "SEQUENTIAL"} that the
    # door gives batches whose clients do not set it.
    where = f"doors.{name}"
    values = _table(table, where, _DOOR_OPTIONS)
    for key, enum in _CHOICES.items():
        if key in values and values[key] not in {e.value for e in enum}:
            known = ", ".join(e.value for e in enum)
            raise ConfigError(f"{where}.{key} must be one of {known}, got {values[key]!r}")
    return {_OPTION_NAMES[key]: value for key, value in values.items()}


_OPTION_NAMES = {"mode": "mode", "on_error": "onError", "atomic": "atomic"}


def _upstream(name: str, table: object) -> UpstreamSettings:
    where = f"upstreams.{name}"
    values = _table(table, where, _UPSTREAM)
    if "base_url" not in values:
        raise ConfigError(f"{where}.base_url is required")
    if "forward_headers" in values:
        values["forward_headers"] = _strings(values["forward_headers"], f"{where}.forward_headers")
    routes = values.pop("bulk", [])
    bulk = tuple(_bulk(route, f"{where}.bulk[{i}]") for i, route in enumerate(routes))
    undo = values.pop("compensate", [])
    compensate = tuple(
        _route_compensation(route, f"{where}.compensate[{i}]") for i, route in enumerate(undo)
    )
    return UpstreamSettings(name=name, bulk=bulk, compensate=compensate, **values)


_OPERATION = {"method": str, "path": str, "upstream": str, "query": dict, "compensate": dict}
"""[operations.NAME], with `body` beside: any TOML value (a string such as "{args}", a table)."""


def _operation(name: str, table: dict[str, Any]) -> NamedOperation:
    where = f"operations.{name}"
    body = table.pop("body", None)
    values = _table(table, where, _OPERATION)
    if "method" not in values or "path" not in values:
        raise ConfigError(
            f"{where} needs method and path, such as method = 'POST', path = '/users'"
        )
    return NamedOperation(name=name, body=body, **values)


def _route_compensation(route: object, where: str) -> RouteCompensation:
    values = _table(route, where, _COMPENSATE_ROUTE)
    if "match" not in values or "with" not in values:
        raise ConfigError(
            f"{where} needs match and with, such as match = 'POST /users' and "
            "with = { method = 'DELETE', path = '/users/{result.id}' }"
        )
    try:
        return RouteCompensation(match=values["match"], undo=values["with"])
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _bulk(route: object, where: str) -> BulkRoute:
    values = _table(route, where, _BULK)
    if "match" not in values:
        raise ConfigError(f"{where}.match is required, such as '/users/{{id}}'")
    try:
        return BulkRoute(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _table(table: object, label: str, schema: Mapping[str, type]) -> dict[str, Any]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError(f"{label} must be a table")
    _check_keys(table, set(schema), label + ".")
    return {key: _typed(value, schema[key], f"{label}.{key}") for key, value in table.items()}


def _check_keys(table: dict[str, Any], known: set[str], prefix: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"unknown key {prefix}{key} (known: {', '.join(sorted(known))})")


def _typed(value: Any, kind: type, key: str) -> Any:
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{key} must be a {_KIND_NAMES[kind]}, got {value!r}")
    return value


def _strings(value: list[Any], key: str, what: str = "header names") -> tuple[str, ...]:
    if not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} must be a list of {what}")
    return tuple(value)
