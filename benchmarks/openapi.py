"""What an upstream's OpenAPI document costs: start-up (reading and checking a 300-operation
document) and each sub-request (checking a batch against it before it runs).

    python benchmarks/openapi.py                # about 10 s
    python benchmarks/openapi.py --operations 300 --items 100 --rounds 50

Pure CPU, no network: the document is generated (100 resources with a list, a create and a
lookup each, `$ref`s to component schemas), and batches are planned with
`execution.engine.prepare`, with and without the document. Prints a table; bounded by
--rounds.
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

from gqlbatch.core.config import Settings, UpstreamSettings
from gqlbatch.core.openapi import Contract
from gqlbatch.execution.engine import prepare


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
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"| {'-' * width} | --- |")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


if __name__ == "__main__":
    main()
