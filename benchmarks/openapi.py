"""What an upstream's OpenAPI document costs: start-up (reading and checking a 300-operation
document, and building its typed `data` schema) and each sub-request (checking a batch against
it before it runs, and reading its answers as typed `data`).

    python benchmarks/openapi.py                # about 20 s
    python benchmarks/openapi.py --operations 300 --items 100 --rounds 50

The document is generated (100 resources with a list, a create and a lookup each, `$ref`s to
component schemas). Checks: batches are planned with `execution.planning.prepare`, with and
without the document, CPU only. Typed `data`: a gateway and an upstream that answers every
lookup at once both run in this process on loopback, and a 100-lookup batch is sent selecting
only `status`, then `body`, then `data` with the same four fields; the process's CPU time per
item is compared. Prints a table; bounded by --rounds.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent))

import asyncio
import tempfile

from aiohttp import ClientSession, web

from gqlbatch import create_app, running
from gqlbatch.core.config import Settings
from gqlbatch.core.openapi import Contract
from gqlbatch.core.upstream_settings import UpstreamSettings
from gqlbatch.doors.graphql.schema import answer_types, build_schema
from gqlbatch.execution.planning import prepare

SELECTIONS = {
    "status only": "status",
    "body": "status body",
    "data { id title ownerId tags }": "status data { ... on Thing0 { id title ownerId tags } }",
}


def document(resources: int) -> dict[str, Any]:
    """An OpenAPI 3.0 document with three operations per resource."""
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for n in range(resources):
        name = f"Thing{n}"
        schemas[name] = {
            "type": "object",
            "required": ["id", "title"],
            "properties": {
                "id": {"type": "integer"},
                "title": {"type": "string", "minLength": 1},
                "ownerId": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
        }
        ref = {"$ref": f"#/components/schemas/{name}"}
        ok = {"description": "ok", "content": {"application/json": {"schema": ref}}}
        paths[f"/things{n}"] = {
            "get": {
                "parameters": [
                    {
                        "name": "id",
                        "in": "query",
                        "schema": {"type": "array", "items": {"type": "integer"}},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "rows",
                        "content": {
                            "application/json": {"schema": {"type": "array", "items": ref}}
                        },
                    }
                },
            },
            "post": {
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
                "responses": {"201": ok},
            },
        }
        paths[f"/things{n}/{{id}}"] = {
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "get": {"responses": {"200": ok}},
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": "bench", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def batch(items: int, resources: int) -> list[dict[str, Any]]:
    """Half lookups that read an earlier item's field, half writes with a body."""
    out: list[dict[str, Any]] = [{"requestId": "first", "path": "/things0/1"}]
    for i in range(1, items):
        n = i % resources
        if i % 2:
            out.append({"requestId": f"r{i}", "path": f"/things{n}/{{resultOf(first).id}}"})
        else:
            body = {
                "id": i,
                "title": f"t{i}",
                "ownerId": "{resultOf(first).ownerId}",
                "tags": ["a"],
            }
            out.append(
                {"requestId": f"w{i}", "method": "POST", "path": f"/things{n}", "body": body}
            )
    return out


def per_item_us(
    items: list[dict[str, Any]], settings: Settings, contracts: Any, rounds: int
) -> float:
    prepare(items, None, settings, contracts=contracts)  # warm
    gc.collect()
    started = time.perf_counter()
    for _ in range(rounds):
        prepare(items, None, settings, contracts=contracts)
    return (time.perf_counter() - started) / rounds / len(items) * 1e6


def schema_ms(contract: Contract) -> tuple[float, int]:
    """Building the schema with the document's types: milliseconds, and how many types."""
    started = time.perf_counter()
    types = answer_types({"bench": contract})
    build_schema(answers=types)
    return (time.perf_counter() - started) * 1000, len(types.objects) + len(types.enums)


async def typed_data_us(text: str, items: int, rounds: int) -> dict[str, float]:
    """CPU microseconds per item of a batch of *items* lookups, by what it selects."""

    async def row(request: web.Request) -> web.Response:
        return web.json_response({"id": 1, "title": "t", "ownerId": 2, "tags": ["a"]})

    upstream = web.Application()
    upstream.router.add_get("/{tail:.*}", row)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        file.write(text)
        file.flush()
        async with running(upstream) as upstream_url:
            config = UpstreamSettings(name="bench", base_url=upstream_url, openapi=file.name)
            settings = Settings(upstreams={"bench": config}, max_items=max(100, items))
            async with running(create_app(settings)) as url, ClientSession() as http:
                requests = [{"path": f"/things0/{i}"} for i in range(items)]
                return {
                    name: await _cpu_per_item(http, url, selection, requests, rounds)
                    for name, selection in SELECTIONS.items()
                }


async def _cpu_per_item(
    http: ClientSession, url: str, selection: str, requests: list[Any], rounds: int
) -> float:
    query = (
        "mutation($r: [SubRequestInput!]!) { batch(requests: $r) "
        f"{{ items {{ ... on Succeeded {{ {selection} }} }} }} }}"
    )
    body = {"query": query, "variables": {"r": requests}}

    async def send() -> None:
        async with http.post(url + "/graphql", json=body) as resp:
            answer = await resp.json()
            assert "errors" not in answer, answer

    await send()  # warm: the document parsed and validated once
    gc.collect()
    started = time.process_time()
    for _ in range(rounds):
        await send()
    return (time.process_time() - started) / rounds / len(requests) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--operations", type=int, default=300)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    resources = max(1, args.operations // 3)
    text = json.dumps(document(resources))

    started = time.perf_counter()
    contract = Contract.from_text(text, "bench")
    load_ms = (time.perf_counter() - started) * 1000
    tracemalloc.start()  # separately: tracing slows what it traces about threefold
    Contract.from_text(text, "bench")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    upstream = UpstreamSettings(name="bench", base_url="http://127.0.0.1:9", openapi="bench.json")
    settings = Settings(upstreams={"bench": upstream}, max_items=max(100, args.items))
    items = batch(args.items, resources)
    without = per_item_us(items, settings, {}, args.rounds)
    with_document = per_item_us(items, settings, {"bench": contract}, args.rounds)
    built_ms, type_count = schema_ms(contract)
    typed = asyncio.run(typed_data_us(text, args.items, args.rounds))

    rows = [
        ("operations in the document", f"{resources * 3}"),
        ("document size", f"{len(text) / 1024:.0f} KiB"),
        ("start-up: read and check it", f"{load_ms:.0f} ms"),
        ("start-up: peak memory while reading it", f"{peak / 1024 / 1024:.1f} MiB"),
        (f"prepare, {args.items}-item batch, without a document", f"{without:.1f} us per item"),
        (
            f"prepare, {args.items}-item batch, checked against it",
            f"{with_document:.1f} us per item",
        ),
        ("cost of the checks", f"{with_document - without:.1f} us per item"),
        (f"start-up: {type_count} types generated, schema built", f"{built_ms:.0f} ms"),
        *(
            (f"CPU, {args.items} lookups over GraphQL, selecting {name}", f"{us:.1f} us per item")
            for name, us in typed.items()
        ),
        (
            "cost of typed data over body",
            f"{typed['data { id title ownerId tags }'] - typed['body']:.1f} us per item",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"| {'-' * width} | --- |")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


if __name__ == "__main__":
    main()
