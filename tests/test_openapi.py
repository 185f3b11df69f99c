"""Upstreams' OpenAPI documents, and validation first with them (issue 14): a real upstream
serves its document; a batch that breaks it is refused whole, every problem listed, with
nothing sent."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings

from gqlbatch import Settings, create_app
from gqlbatch.core.errors import ConfigError
from gqlbatch.core.openapi import Contract
from gqlbatch.core.references import missing_field
from gqlbatch.core.upstream_settings import UpstreamSettings
from gqlbatch.doors.http import OFFLOAD
from tests.fakes import CountingOffload, FakeService
from tests.test_placeholders import _JSON

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "blog", "version": "1"},
    "paths": {
        "/users/me": {"get": {"responses": {"200": {"description": "me"}}}},
        "/users/{id}": {
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "get": {
                "responses": {
                    "200": {
                        "description": "a user",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/User"}}
                        },
                    }
                }
            },
        },
        "/posts": {
            "get": {
                "parameters": [
                    {
                        "name": "userId",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "integer"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "posts",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Post"},
                                }
                            }
                        },
                    }
                },
            },
            "post": {
                "requestBody": {"$ref": "#/components/requestBodies/NewPost"},
                "responses": {"201": {"description": "created"}},
            },
        },
        "/comments": {
            "post": {
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Comment"}}
                    },
                },
                "responses": {"201": {"description": "created"}},
            }
        },
    },
    "components": {
        "requestBodies": {
            "NewPost": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/NewPost"}}
                },
            }
        },
        "schemas": {
            "User": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
            },
            "Post": {
                "allOf": [
                    {"$ref": "#/components/schemas/NewPost"},
                    {"type": "object", "properties": {"id": {"type": "integer"}}},
                ]
            },
            "NewPost": {
                "type": "object",
                "required": ["title", "userId"],
                "properties": {
                    "title": {"type": "string", "minLength": 1},
                    "userId": {"type": "integer"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
            },
            # A cycle, oneOf and allOf: the document must still load and check.
            "Comment": {
                "allOf": [
                    {
                        "type": "object",
                        "required": ["body"],
                        "properties": {"body": {"type": "string"}},
                    },
                    {
                        "type": "object",
                        "properties": {
                            "replies": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Comment"},
                            },
                            "author": {
                                "oneOf": [
                                    {"type": "integer"},
                                    {"type": "object", "properties": {"name": {"type": "string"}}},
                                ]
                            },
                        },
                    },
                ]
            },
        },
    },
}


@pytest.fixture
async def checked(aiohttp_client: Any, service: FakeService, upstream_url: str) -> Any:
    service.route("GET", "/openapi.json", json=DOCUMENT)
    upstream = UpstreamSettings(
        name="blog",
        base_url=upstream_url,
        openapi=upstream_url + "/openapi.json",
        strict_routes=True,
    )
    client = await aiohttp_client(create_app(Settings(upstreams={"blog": upstream})))
    assert service.lines == ["GET /openapi.json"]  # read once, at start-up
    service.calls.clear()
    return client


def problems(answer: list[dict[str, Any]] | dict[str, Any]) -> list[tuple[Any, ...]]:
    assert isinstance(answer, dict), answer
    return [(p["requestId"], p["code"], p["field"]) for p in answer["error"]["problems"]]


async def test_a_batch_that_breaks_the_document_is_refused_whole(
    checked: Any, service: FakeService
) -> None:
    batch = [
        {"id": "user", "url": "/users/1"},
        {"id": "bad", "method": "POST", "url": "/posts", "body": {"title": 7, "tags": ["a", 1]}},
        {"id": "none", "method": "POST", "url": "/comments"},
        {"id": "posts", "url": "/posts"},
        {"id": "typo", "url": "/postz"},
    ]
    resp = await checked.post("/batch", json=batch)
    assert resp.status == 400
    answer = await resp.json()
    assert sorted(problems(answer)) == sorted(
        [
            ("bad", "INVALID_INPUT", "body"),  # userId is required
            ("bad", "INVALID_INPUT", "body/title"),
            ("bad", "INVALID_INPUT", "body/tags/1"),
            ("none", "INVALID_INPUT", "body"),
            ("posts", "INVALID_INPUT", "query"),
            ("typo", "UNKNOWN_ROUTE", "path"),
        ]
    )
    messages = " ".join(p["message"] for p in answer["error"]["problems"])
    assert "'userId' is a required property" in messages
    assert "GET /posts requires the query parameter 'userId'" in messages
    assert service.lines == []  # nothing was sent


async def test_a_batch_that_keeps_to_it_runs(checked: Any, service: FakeService) -> None:
    service.route("GET", "/users/1", json={"id": 1})
    service.route("GET", "/users/me", json={"id": 1})
    service.route("GET", "/posts", json=[])
    service.route("POST", "/posts", status=201, json={"id": 9})
    service.route("POST", "/comments", status=201, json={"id": 3})
    batch = [
        {"id": "user", "url": "/users/1"},
        {"id": "me", "url": "/users/me"},
        {"id": "posts", "url": "/posts?userId={resultOf(user).id}"},
        # A placeholder's value is known only when it runs: it is not judged now.
        {
            "id": "new",
            "method": "POST",
            "url": "/posts",
            "body": {"title": "t", "userId": "{resultOf(user).id}"},
        },
        {
            "id": "comment",
            "method": "POST",
            "url": "/comments",
            "body": {
                "body": "hi",
                "replies": [{"body": "re", "author": {"name": "Ada"}}],
                "author": 1,
            },
        },
    ]
    resp = await checked.post("/batch", json=batch)
    assert resp.status == 200, await resp.text()
    assert [r["status"] for r in await resp.json()] == [200, 200, 200, 201, 201]


async def test_without_strict_routes_an_unknown_route_is_sent(
    aiohttp_client: Any, service: FakeService, upstream_url: str, tmp_path: Path
) -> None:
    # A 3.1 document, in YAML, from a file.
    document = tmp_path / "blog.yaml"
    document.write_text(
        "openapi: 3.1.0\ninfo: {title: blog, version: '1'}\npaths:\n"
        "  /posts:\n    post:\n      requestBody:\n        content:\n"
        "          application/json:\n            schema:\n              type: object\n"
        "              required: [title]\n      responses: {'201': {description: created}}\n"
    )
    upstream = UpstreamSettings(name="blog", base_url=upstream_url, openapi=str(document))
    client = await aiohttp_client(create_app(Settings(upstreams={"blog": upstream})))
    service.route("GET", "/elsewhere", json={})
    refused = await client.post("/batch", json=[{"method": "POST", "url": "/posts", "body": {}}])
    assert problems(await refused.json()) == [("0", "INVALID_INPUT", "body")]
    sent = await client.post("/batch", json=[{"url": "/elsewhere"}])
    assert sent.status == 200
    assert service.lines == ["GET /elsewhere"]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not: [valid", "not JSON or YAML"),
        (
            '{"openapi": "3.0.3", "info": {"title": "x"}, "paths": {}}',
            "not a valid OpenAPI document",
        ),
        ("[]", "an OpenAPI document is an object"),
    ],
)
def test_a_document_that_cannot_be_read_is_one_line(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as refused:
        Contract.from_text(text, "upstreams.blog.openapi blog.yaml")
    assert "\n" not in str(refused.value)


async def test_an_unreadable_document_stops_start_up(upstream_url: str) -> None:
    upstream = UpstreamSettings(
        name="blog", base_url=upstream_url, openapi=upstream_url + "/nope.json"
    )
    runner = web.AppRunner(create_app(Settings(upstreams={"blog": upstream})))
    try:
        with pytest.raises(
            ConfigError, match=r"upstreams\.blog\.openapi .*/nope\.json: answered 404"
        ):
            await runner.setup()  # runs the start-up hooks, before any request is taken
    finally:
        await runner.cleanup()
    with pytest.raises(ConfigError, match="strict_routes needs"):
        UpstreamSettings(name="blog", base_url=upstream_url, strict_routes=True)


async def test_a_placeholder_must_select_a_field_the_answer_has(
    checked: Any, service: FakeService
) -> None:
    batch = [
        {"id": "user", "url": "/users/1"},
        {"id": "posts", "url": "/posts?userId={resultOf(user).id}"},
        {"id": "a", "url": "/users/{resultOf(user).nmae}"},
        {
            "id": "b",
            "method": "POST",
            "url": "/posts",
            "body": {"title": "{resultOf(posts)[0].titel}", "userId": 1},
        },
        {"id": "c", "url": "/users/{resultOf(posts)[*].userId}"},
    ]
    resp = await checked.post("/batch", json=batch)
    answer = await resp.json()
    found = {
        p["requestId"]: (p["code"], p["field"], p["message"]) for p in answer["error"]["problems"]
    }
    assert found == {
        "a": (
            "INVALID_REFERENCE",
            "path",
            "{resultOf(user).nmae}: User has no field 'nmae' (did you mean 'name'?)",
        ),
        "b": (
            "INVALID_REFERENCE",
            "body/title",
            "{resultOf(posts)[0].titel}: Post has no field 'titel' (did you mean 'title'?)",
        ),
    }
    assert service.lines == []


def test_an_open_schema_stays_permissive() -> None:
    document = json.loads(json.dumps(DOCUMENT))
    document["components"]["schemas"]["User"]["additionalProperties"] = True
    contract = Contract.from_text(json.dumps(document), "blog")
    operation = contract.match("GET", "/users/1")
    assert operation is not None
    from gqlbatch.core.placeholders import parse_selectors

    assert missing_field(contract, operation, parse_selectors("anything.at.all")) is None
    closed = Contract.from_text(json.dumps(DOCUMENT), "blog")
    assert missing_field(closed, operation, parse_selectors("name")) is None
    assert missing_field(closed, operation, parse_selectors("nmae")) is not None
    # Issue 27: `additionalProperties: false` was read as open, as any value was.
    document["components"]["schemas"]["User"]["additionalProperties"] = False
    said_closed = Contract.from_text(json.dumps(document), "blog")
    why = missing_field(said_closed, operation, parse_selectors("nmae"))
    assert why == "User has no field 'nmae' (did you mean 'name'?)"
    document["components"]["schemas"]["User"]["additionalProperties"] = {"type": "string"}
    extended = Contract.from_text(json.dumps(document), "blog")
    assert missing_field(extended, operation, parse_selectors("nmae")) is None


def test_routes_match_literal_segments_before_templates() -> None:
    contract = Contract.from_text(json.dumps(DOCUMENT), "blog")
    me, user = contract.match("GET", "/users/me"), contract.match("GET", "/users/{resultOf(u).id}")
    assert me is not None and me.template == "/users/me"
    assert user is not None and user.template == "/users/{id}"
    assert contract.match("DELETE", "/users/1") is None


@pytest.mark.parametrize("mode", ["fail", "log"])
async def test_answers_are_checked_against_the_document(
    mode: str, aiohttp_client: Any, service: FakeService, upstream_url: str, caplog: Any
) -> None:
    service.route("GET", "/openapi.json", json=DOCUMENT)
    service.route("GET", "/users/1", json={"id": "one", "name": 7})
    service.route("GET", "/users/2", json={"id": 2, "name": "Bo"})
    service.route("GET", "/posts", json=[])
    upstream = UpstreamSettings(
        name="blog",
        base_url=upstream_url,
        openapi=upstream_url + "/openapi.json",
        validate_responses=mode,
    )
    client = await aiohttp_client(create_app(Settings(upstreams={"blog": upstream})))
    batch = [
        {"id": "bad", "url": "/users/1"},
        {"id": "good", "url": "/users/2"},
        {"id": "after", "url": "/posts?userId={resultOf(bad).id}"},
    ]
    answer = await (await client.post("/batch", json=batch)).json()
    by_id = {r["id"]: r for r in answer}
    assert by_id["good"]["status"] == 200
    if mode == "fail":
        error = by_id["bad"]["error"]
        assert error["code"] == "UPSTREAM_BAD_RESPONSE"
        assert "GET /users/1 answered 200, not as" in error["message"]
        assert "body/id: 'one' is not of type 'integer'" in error["message"]
        assert "(and 1 more)" in error["message"]  # name is not a string either
        assert by_id["after"]["error"]["code"] == "FAILED_DEPENDENCY"
    else:
        assert by_id["bad"]["status"] == 200
        assert any("body/id" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigError, match="must be 'off', 'log' or 'fail'"):
        UpstreamSettings(name="b", base_url=upstream_url, openapi="x", validate_responses="yes")
    with pytest.raises(ConfigError, match="validate_responses needs"):
        UpstreamSettings(name="b", base_url=upstream_url, validate_responses="log")


DEMO_ROUTES = [
    ("/comments/{id}", False),
    ("/comments?userId={id}", True),
    ("/comments?postId={id}", True),
    ("/posts/{id}", False),
    ("/posts?userId={id}", True),
    ("/users/{id}", False),
]


def test_bulk_routes_are_found_where_a_list_filters_by_an_array_of_ids() -> None:
    from gqlbatch.ops.demo import openapi_document

    contract = Contract.from_text(json.dumps(openapi_document()), "demo")
    assert [(r.match, r.many) for r in contract.bulk_routes] == DEMO_ROUTES
    # A filter sent as one comma-separated value, not repeated, is not a bulk route.
    document = openapi_document()
    for parameter in document["paths"]["/users"]["get"]["parameters"]:
        parameter["explode"] = False
    users = Contract.from_text(json.dumps(document), "demo").bulk_routes
    assert "/users/{id}" not in [r.match for r in users]


SCREEN = [
    {"id": "user", "url": "/users/1"},
    {"id": "posts", "url": "/posts?userId={resultOf(user).id}"},
    {"id": "authors", "forEach": "{resultOf(posts)[*].userId}", "url": "/users/{item}"},
    {"id": "comments", "forEach": "{resultOf(posts)[*].id}", "url": "/comments?postId={item}"},
]


@pytest.mark.parametrize(("infer", "calls_made"), [(False, 12), (True, 3)])
async def test_inferred_bulk_routes_merge_a_screens_lookups(
    infer: bool, calls_made: int, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    from gqlbatch.ops.demo import calls, sample_api

    api = await aiohttp_server(sample_api(), host="127.0.0.1")
    url = str(api.make_url("")).rstrip("/")
    upstream = UpstreamSettings(
        name="demo", base_url=url, openapi=url + "/openapi.json", infer_bulk=infer
    )
    client = await aiohttp_client(create_app(Settings(upstreams={"demo": upstream})))
    answer = await (await client.post("/batch", json=SCREEN)).json()
    assert [r["status"] for r in answer] == [200] * 4
    # Counted by the sample API itself: every call it answered for this batch.
    assert len(calls(api.app)) == calls_made


def test_the_routes_command_prints_what_it_would_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gqlbatch.ops.cli import main
    from gqlbatch.ops.demo import openapi_document

    document = tmp_path / "demo.json"
    document.write_text(json.dumps(openapi_document()))
    config = tmp_path / "gqlbatch.toml"
    config.write_text(
        f'[upstreams.demo]\nbase_url = "http://127.0.0.1:9"\nopenapi = "{document}"\n'
        'infer_bulk = true\n[[upstreams.demo.bulk]]\nmatch = "/users/{id}"\n'
    )
    assert main(["routes", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "1 configured, 6 found in its OpenAPI document (used); 6 in use" in out
    assert "# configured: /users?id=…" in out
    assert 'match = "/comments?postId={id}"\nmany = true' in out


def test_a_server_without_documents_never_loads_the_openapi_libraries() -> None:
    # They are 18 MiB of each process; only an upstream that names a document needs them.
    code = (
        "import sys\n"
        "from gqlbatch import Settings, create_app\n"
        "create_app(Settings.from_upstream_urls(['http://127.0.0.1:9']))\n"
        "names = ('yaml', 'jsonschema', 'referencing', 'openapi_spec_validator',\n"
        "         'openapi_schema_validator')\n"
        "print(sorted(n for n in names if n in sys.modules))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert ran.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# Issue 24, finding 1: checks against a document cost a bounded amount of work.


def _checked_document(pattern: str = "^(a|aa)+$") -> dict[str, Any]:
    document = json.loads(json.dumps(DOCUMENT))
    document["paths"]["/slugs"] = {
        "post": {
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"slug": {"type": "string", "pattern": pattern}},
                        }
                    }
                }
            },
            "responses": {"201": {"description": "created"}},
        }
    }
    return document


async def _documented(
    aiohttp_client: Any, service: FakeService, upstream_url: str, **options: Any
) -> tuple[Any, CountingOffload]:
    service.route("GET", "/openapi.json", json=_checked_document())
    upstream = UpstreamSettings(
        name="blog",
        base_url=upstream_url,
        openapi=upstream_url + "/openapi.json",
        validate_responses=options.pop("validate_responses", "off"),
    )
    app = create_app(Settings(upstreams={"blog": upstream}, **options))
    app[OFFLOAD] = offload = CountingOffload()
    client = await aiohttp_client(app)
    service.calls.clear()
    return client, offload


async def test_a_body_with_more_values_than_may_be_checked_is_refused_unchecked(
    aiohttp_client: Any, service: FakeService, upstream_url: str
) -> None:
    # 200,000 elements of the wrong type: once a 36 s check on the event loop and a 284 MiB
    # answer listing each; now refused for its size, before any element is judged.
    client, _ = await _documented(aiohttp_client, service, upstream_url)
    body = {"title": "t", "userId": 1, "tags": [0] * 200_000}
    resp = await client.post("/batch", json=[{"method": "POST", "url": "/posts", "body": body}])
    assert resp.status == 413
    text = await resp.text()
    assert len(text) < 2_000
    assert problems(json.loads(text)) == [("0", "REQUEST_TOO_LARGE", "body")]
    assert "more than the 100000 JSON values its request may still have checked" in text
    assert "(max_checked_values)" in text
    assert service.lines == []


async def test_the_values_checked_are_counted_over_the_whole_request(
    aiohttp_client: Any, service: FakeService, upstream_url: str
) -> None:
    # Each body alone is within the limit; the request's two together are not.
    client, _ = await _documented(aiohttp_client, service, upstream_url, max_checked_values=1_000)
    body = {"title": "t", "userId": 1, "tags": ["x"] * 600}
    batch = [{"method": "POST", "url": "/posts", "body": body}] * 2
    resp = await client.post("/batch", json=batch)
    assert problems(await resp.json()) == [("1", "REQUEST_TOO_LARGE", "body")]
    assert service.lines == []


async def test_a_body_with_many_problems_lists_the_first_ten(
    aiohttp_client: Any, service: FakeService, upstream_url: str
) -> None:
    client, _ = await _documented(aiohttp_client, service, upstream_url)
    body = {"title": "t", "userId": 1, "tags": [0] * 50}
    resp = await client.post("/batch", json=[{"method": "POST", "url": "/posts", "body": body}])
    found = problems(await resp.json())
    assert found == [("0", "INVALID_INPUT", f"body/tags/{i}") for i in range(10)] + [
        ("0", "INVALID_INPUT", "body")
    ]


async def test_a_backtracking_pattern_is_stopped_by_its_time_bound(
    aiohttp_client: Any, service: FakeService, upstream_url: str
) -> None:
    # ^(a|aa)+$ against 60 a's and a '!': the standard library's `re` backtracks through
    # about 10^12 paths. The pattern runs with the request's time for patterns instead.
    client, offload = await _documented(aiohttp_client, service, upstream_url)
    service.route("POST", "/slugs", status=201, json={})

    async def send(slug: str) -> Any:
        item = {"method": "POST", "url": "/slugs", "body": {"slug": slug}}
        return await (await client.post("/batch", json=[item])).json()

    slow = await send("a" * 60 + "!")
    assert problems(slow) == [("0", "REQUEST_TOO_LARGE", "body")]
    assert "did not finish matching" in slow["error"]["problems"][0]["message"]
    # On the loop, the pattern had 10 ms; then the check was made again off it.
    assert offload.given == 1
    assert problems(await send("ab")) == [("0", "INVALID_INPUT", "body/slug")]
    assert [r["status"] for r in await send("aaa")] == [201]
    assert service.lines == ["POST /slugs"]
    assert offload.given == 1  # the quick ones never left the loop


async def test_a_large_check_runs_off_the_event_loop(
    aiohttp_client: Any, service: FakeService, upstream_url: str
) -> None:
    client, offload = await _documented(aiohttp_client, service, upstream_url)
    service.route("POST", "/posts", status=201, json={"id": 1})
    small = {"title": "t", "userId": 1, "tags": ["x"] * 10}
    large = {"title": "t", "userId": 1, "tags": ["x"] * 6_000}
    for body, handed in [(small, 0), (large, 1)]:
        resp = await client.post("/batch", json=[{"method": "POST", "url": "/posts", "body": body}])
        assert [r["status"] for r in await resp.json()] == [201]
        assert offload.given == handed
    wrong = {"title": "t", "userId": 1, "tags": [0] * 6_000}
    resp = await client.post("/batch", json=[{"method": "POST", "url": "/posts", "body": wrong}])
    assert problems(await resp.json())[0] == ("0", "INVALID_INPUT", "body/tags/0")
    assert offload.given == 2
    assert service.lines == ["POST /posts"] * 2


async def test_an_answer_too_large_to_check_fails_when_answers_must_keep_to_it(
    aiohttp_client: Any, service: FakeService, upstream_url: str
) -> None:
    client, offload = await _documented(
        aiohttp_client, service, upstream_url, validate_responses="fail", max_checked_values=8_000
    )
    rows = [{"id": i, "title": "t", "userId": 1} for i in range(1_500)]  # 7,501 values
    service.route("GET", "/posts", json=rows)
    first = await (await client.post("/batch", json=[{"url": "/posts?userId=1"}])).json()
    assert first[0]["status"] == 200
    assert offload.given == 1  # over 5,000 values: checked off the loop
    twice = [{"url": "/posts?userId=1"}, {"url": "/posts?userId=2"}]
    answer = await (await client.post("/batch", json=twice)).json()
    assert answer[0]["status"] == 200
    assert answer[1]["error"]["code"] == "UPSTREAM_BAD_RESPONSE"
    assert "the answer cannot be checked" in answer[1]["error"]["message"]


# --------------------------------------------------------------------------------------------
# Issue 24, finding 14: documents are bounded as they are read


async def test_a_document_that_never_ends_stops_start_up_at_its_cap(
    aiohttp_server: Any,
) -> None:
    from gqlbatch.core.openapi import MAX_BYTES

    sent = [0]

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunk = b" " * 65536
        while True:  # until the reader stops reading
            await response.write(chunk)
            sent[0] += len(chunk)

    app = web.Application()
    app.router.add_get("/openapi.json", endless)
    server = await aiohttp_server(app, host="127.0.0.1")
    url = str(server.make_url("/openapi.json"))
    upstream = UpstreamSettings(name="blog", base_url=url.rsplit("/", 1)[0], openapi=url)
    runner = web.AppRunner(create_app(Settings(upstreams={"blog": upstream})))
    try:
        with pytest.raises(ConfigError, match=f"longer than {MAX_BYTES} bytes"):
            await runner.setup()
    finally:
        await runner.cleanup()
    assert sent[0] < 2 * MAX_BYTES


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested more than 64 levels deep"),
        ('{"a": ' + "[" * 65 + "]" * 65 + "}", "nested more than 64 levels deep"),
    ],
    ids=["too deep for the parser", "deeper than 64"],
)
def test_a_deep_document_is_one_line(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as refused:
        Contract.from_text(text, "upstreams.blog.openapi deep.json")
    assert "\n" not in str(refused.value)


def test_a_document_of_too_many_operations_is_refused_at_once() -> None:
    paths = {f"/t{n}": {"get": {"responses": {"200": {"description": "ok"}}}} for n in range(2_001)}
    document = {"openapi": "3.0.3", "info": {"title": "big", "version": "1"}, "paths": paths}
    with pytest.raises(ConfigError, match="2001 operations, more than the 2000"):
        Contract.from_text(json.dumps(document), "big")


def _strings_reference(value: Any, where: str) -> Any:
    """openapi._strings as first written: every string, with its pointer."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _strings_reference(
                inner, f"{where}/{str(key).replace('~', '~0').replace('/', '~1')}"
            )
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _strings_reference(inner, f"{where}/{index}")


def _placeholders(found: Any) -> list[tuple[str, str]]:
    """Each placeholder of each string, by where it is and its text: every string parsed."""
    from gqlbatch.core.placeholders import TemplateSyntaxError, parse_template

    kept = []
    for where, text in found:
        # One that does not parse refuses the batch: no placeholder of it is checked.
        with contextlib.suppress(TemplateSyntaxError):
            kept += [(where, ref.text) for ref in parse_template(text).refs]
    return kept


@given(_JSON)
@settings(max_examples=300)
def test_the_placeholders_checked_are_the_planners_and_those_of_every_string(value: Any) -> None:
    # Issues 24 and 26: the placeholders checked against the documents are read from the
    # planned body, where the planner parsed them once (only strings that can hold one are
    # looked at); they are those found by parsing every string of the body, with their places.
    from gqlbatch.core.placeholders import compile_json, may_hold_placeholders
    from gqlbatch.core.references import _body_refs

    compiled = compile_json(value, "body", [])
    found = (
        [(where, ref.text) for where, ref in _body_refs(compiled)]
        if may_hold_placeholders(value)
        else []
    )
    assert found == _placeholders(_strings_reference(value, "body"))


def test_a_placeholder_anywhere_in_a_body_is_judged_when_it_runs_and_a_literal_now() -> None:
    # Issue 26: the body check tells a placeholder by the planned body, where the planner
    # parsed it once, down lists and objects alike; the literal beside it is judged now.
    from gqlbatch.core.config import Settings as Config
    from gqlbatch.core.errors import BatchRejected
    from gqlbatch.execution.planning import prepare

    contract = Contract.from_text(json.dumps(DOCUMENT), "blog")
    blog = UpstreamSettings(name="blog", base_url="http://127.0.0.1:9")
    settings = Config(upstreams={"blog": blog})
    reply = {"body": "re", "author": "{resultOf(user).id}"}
    items = [
        {"requestId": "user", "path": "/users/1"},
        {"requestId": "c", "method": "POST", "path": "/comments", "body": {"body": "hi"}},
    ]
    items[1]["body"] = {"body": "hi", "replies": [reply]}
    assert prepare(items, None, settings, contracts={"blog": contract}).items
    items[1]["body"] = {"body": "hi", "replies": [reply, {"body": "re", "author": "Ada"}]}
    with pytest.raises(BatchRejected) as refused:
        prepare(items, None, settings, contracts={"blog": contract})
    assert [p.field for p in refused.value.problems] == ["body/replies/1/author"]
