"""The built-in sample REST API behind `gqlbatch demo`: users, posts and comments in memory.

A small but honest REST service: `?id=1&id=2` and `?userId=`/`?postId=` filters, 404s, POST to
create, an optional latency per request, and a count of the requests it served.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ["EXAMPLE_QUERY", "calls", "sample_api"]

_STORE: Final = web.AppKey("store", dict)
_LATENCY: Final = web.AppKey("latency_s", float)
_CALLS: Final = web.AppKey("calls", list)

_NAMES = [
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Margaret",
    "Ken",
    "Linus",
    "Guido",
]

EXAMPLE_BATCH = """[
  {"requestId": "user", "path": "/users/1"},
  {"requestId": "posts", "path": "/posts", "query": {"userId": "{resultOf(user).id}"}},
  {"requestId": "authors", "forEach": "{resultOf(posts)[*].userId}", "path": "/users/{item}"},
  {"requestId": "comments", "forEach": "{resultOf(posts)[*].id}", "path": "/comments",
   "query": {"postId": "{item}"}}
]"""
"""The demo's screen as the playground's editor holds it: the Screen of EXAMPLE_QUERY."""

EXAMPLE_QUERY = """\
# Two batches. Pick one with the play button's menu (or Ctrl-Enter runs the one under the cursor).
#
# Screen: a user, their posts, and each post's author and comments, in one request. The demo's
# bulk routes merge the ten comment lookups into one upstream call, and the ten author lookups
# are the same user, fetched once: stats shows 3 upstream calls for 22 lookups. The sample API's
# OpenAPI document types each answer: `data` is a User, a PostList, a UserEach (one per post).
query Screen {
  batch(requests: [
    {requestId: "user", path: "/users/1"}
    {requestId: "posts", path: "/posts", query: {userId: "{resultOf(user).id}"}}
    {requestId: "authors", forEach: "{resultOf(posts)[*].userId}", path: "/users/{item}"}
    {requestId: "comments", forEach: "{resultOf(posts)[*].id}", path: "/comments",
     query: {postId: "{item}"}}
  ]) {
    user: item(requestId: "user") { ... on Succeeded { data { ... on User { name email } } } }
    posts: item(requestId: "posts") {
      ... on Succeeded { data { ... on PostList { items { id title } } } }
    }
    authors: item(requestId: "authors") {
      status
      ... on Succeeded { data { ... on UserEach { items { name } } } }
    }
    comments: item(requestId: "comments") {
      status
      body(select: ["id", "body"])
      elements { index status bulkCall }
    }
    stats { subRequests callsRequested upstreamCalls savedByDedupe savedByBulk wallMs }
  }
}

# Features: create then read back, identical GETs coalesced, a failure and its skipped dependent.
mutation Features {
  batch(requests: [
    {requestId: "create", method: POST, path: "/posts",
     body: {userId: 1, title: "Hello from gqlbatch"}}
    {requestId: "readBack", path: "/posts/{resultOf(create).id}"}
    {requestId: "user", path: "/users/2"}
    {requestId: "sameUser", path: "/users/2"}
    {requestId: "missing", path: "/users/999"}
    {requestId: "dependent", path: "/posts", query: {userId: "{resultOf(missing).id}"}}
  ]) {
    items {
      __typename requestId state status coalesced
      body(select: ["id", "name", "title"])
      error { code message }
      ... on Skipped { failedDependency }
    }
    stats { subRequests upstreamCalls callsSaved wallMs criticalPathMs }
  }
}
"""


def sample_api(*, latency_ms: float = 0.0) -> web.Application:
    """A fresh sample API with its own data; *latency_ms* delays every response."""
    app = web.Application(middlewares=[_record_and_delay])
    app[_STORE] = _seed()
    app[_LATENCY] = latency_ms / 1000
    app[_CALLS] = []
    app.router.add_get("/openapi.json", _openapi)
    for kind in ("users", "posts", "comments"):
        app.router.add_get(f"/{kind}", _list(kind))
        app.router.add_post(f"/{kind}", _create(kind))
        app.router.add_get(f"/{kind}/{{id}}", _one(kind))
        app.router.add_delete(f"/{kind}/{{id}}", _delete(kind))
    return app


_FIELDS: dict[str, dict[str, str]] = {
    "User": {"id": "integer", "name": "string", "email": "string"},
    "Post": {"id": "integer", "userId": "integer", "title": "string"},
    "Comment": {"id": "integer", "postId": "integer", "userId": "integer", "body": "string"},
}
_KINDS = {"users": "User", "posts": "Post", "comments": "Comment"}


def openapi_document() -> dict[str, Any]:
    """The sample API's OpenAPI 3.0 document, served at /openapi.json; the demo's upstream
    names it, so that batches are checked against it before they run."""
    schemas: dict[str, Any] = {
        name: {
            "type": "object",
            "required": ["id"],
            "properties": {field: {"type": kind} for field, kind in fields.items()},
        }
        for name, fields in _FIELDS.items()
    }
    schemas["Error"] = {"type": "object", "properties": {"error": {"type": "string"}}}
    paths: dict[str, Any] = {}
    for kind, name in _KINDS.items():
        ref = {"$ref": f"#/components/schemas/{name}"}
        new = {k: v for k, v in _FIELDS[name].items() if k != "id"}
        filters = [f for f in ("id", "userId", "postId") if f in _FIELDS[name]]
        paths[f"/{kind}"] = {
            "get": {
                "summary": f"{kind}, filtered by any of their ids",
                "parameters": [
                    {
                        "name": f,
                        "in": "query",
                        "style": "form",
                        "explode": True,
                        "schema": {"type": "array", "items": {"type": "integer"}},
                    }
                    for f in filters
                ],
                "responses": {"200": _json("the rows", {"type": "array", "items": ref})},
            },
            "post": {
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            # The sample API takes any object: only the types of the
                            # fields it knows are checked.
                            "schema": {
                                "type": "object",
                                "properties": {f: {"type": t} for f, t in new.items()},
                            }
                        }
                    },
                },
                "responses": {"201": _json("created", ref)},
            },
        }
        paths[f"/{kind}/{{id}}"] = {
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "get": {
                "responses": {
                    "200": _json("the row", ref),
                    "404": _json("no such row", {"$ref": "#/components/schemas/Error"}),
                }
            },
            "delete": {"responses": {"204": {"description": "deleted"}}},
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": "gqlbatch sample API", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def _seed() -> dict[str, dict[int, dict[str, Any]]]:
    users = {
        i: {"id": i, "name": n, "email": f"{n.lower()}@example.com"}
        for i, n in enumerate(_NAMES, 1)
    }
    posts = {i: {"id": i, "userId": (i - 1) % 10 + 1, "title": f"Post {i}"} for i in range(1, 101)}
    comments = {
        i: {"id": i, "postId": (i - 1) % 100 + 1, "userId": i % 10 + 1, "body": f"Comment {i}"}
        for i in range(1, 301)
    }
    return {"users": users, "posts": posts, "comments": comments}


@web.middleware
async def _record_and_delay(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path == "/openapi.json":  # the gateway's start-up read, not a batch's call
        return await handler(request)
    request.app[_CALLS].append(f"{request.method} {request.path_qs}")
    if request.app[_LATENCY]:
        await asyncio.sleep(request.app[_LATENCY])
    return await handler(request)


def _list(kind: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        rows = list(request.app[_STORE][kind].values())
        for field in ("id", "userId", "postId"):
            wanted = request.query.getall(field, [])
            values = {v for raw in wanted for v in raw.split(",") if v}
            if values:
                rows = [r for r in rows if str(r.get(field)) in values]
        return web.json_response(rows)

    return handler


def _one(kind: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        row = _find(request, kind)
        return web.json_response(row)

    return handler


def _create(kind: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(
                text='{"error": "body must be an object"}', content_type="application/json"
            )
        table = request.app[_STORE][kind]
        row = {**body, "id": max(table, default=0) + 1}
        table[row["id"]] = row
        return web.json_response(row, status=201, headers={"Location": f"/{kind}/{row['id']}"})

    return handler


def _delete(kind: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        row = _find(request, kind)
        del request.app[_STORE][kind][row["id"]]
        return web.Response(status=204)

    return handler


def _find(request: web.Request, kind: str) -> dict[str, Any]:
    key = request.match_info["id"]
    row: dict[str, Any] | None = request.app[_STORE][kind].get(int(key)) if key.isdigit() else None
    if row is None:
        raise web.HTTPNotFound(
            text=f'{{"error": "no {kind[:-1]} {key}"}}', content_type="application/json"
        )
    return row


def calls(app: web.Application) -> list[str]:
    """The requests *app* has served, as "METHOD /path?query" strings."""
    return app[_CALLS]
