"""Slides-style named operations (issue 27): `POST /batchUpdate` with
`{"requests": [{"createUser": {...}}, ...]}`, mapped by `[operations.NAME]` to REST calls, run
in order, all or nothing, against the demo's sample API (a real aiohttp server on 127.0.0.1
that records what it serves)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gqlbatch import create_app
from gqlbatch.ops.config_file import settings_from_toml
from gqlbatch.ops.demo import calls, sample_api

OPERATIONS = """
[doors]
operations_paths = ["/v1/decks/{deck}/batchUpdate"]

[operations.createUser]
method = "POST"
path = "/users"
body = "{args}"
compensate = { method = "DELETE", path = "/users/{result.id}" }

[operations.createPost]
method = "POST"
path = "/posts"
body = { userId = "{args.userId}", title = "{args.title} (deck {param.deck})" }
compensate = { method = "DELETE", path = "/posts/{result.id}" }

[operations.readUser]
method = "GET"
path = "/users/{args.id}"

[operations.touchUser]
method = "POST"
path = "/users/{args.id}/touch"
"""


@pytest.fixture
async def api(aiohttp_server: Any, aiohttp_client: Any) -> tuple[TestClient, Any]:
    upstream = sample_api()
    server = await aiohttp_server(upstream, host="127.0.0.1")
    config = f'[upstreams.default]\nbase_url = "{str(server.make_url("")).rstrip("/")}"\n'
    settings, _ = settings_from_toml(config + OPERATIONS)
    return await aiohttp_client(create_app(settings)), upstream


async def test_the_requests_run_in_order_and_reply_by_index(api: Any) -> None:
    client, upstream = api
    document = {
        "requests": [
            {"createUser": {"name": "Lin", "email": "lin@example.com"}},
            {"createPost": {"userId": 4, "title": "Hello"}},
            {"readUser": {"id": 1}},
        ],
        "writeControl": {"requiredRevisionId": "r7"},
    }
    answer = await client.post("/batchUpdate", json=document)
    assert answer.status == 200, await answer.text()
    body = await answer.json()
    created, post, read = body["replies"]
    assert created["createUser"]["name"] == "Lin"
    assert post["createPost"]["userId"] == 4
    assert post["createPost"]["title"] == "Hello (deck {param.deck})"  # no deck in /batchUpdate
    assert read["readUser"]["id"] == 1
    assert body["writeControl"] == {"requiredRevisionId": "r7"}
    assert calls(upstream) == ["POST /users", "POST /posts", "GET /users/1"]


async def test_a_failure_undoes_the_earlier_ones_and_is_the_answer(api: Any) -> None:
    client, upstream = api
    document = {
        "requests": [
            {"createUser": {"name": "Lin"}},
            {"createPost": {"userId": 1, "title": "x"}},
            {"readUser": {"id": 999}},
        ]
    }
    answer = await client.post("/v1/decks/d1/batchUpdate", json=document)
    assert answer.status == 404
    error = (await answer.json())["error"]
    assert (error["code"], error["status"], error["requestIndex"]) == ("UPSTREAM_STATUS", 404, 2)
    # Undone newest first; the sample API numbers new rows after its seed (10 users, 100 posts).
    assert calls(upstream) == [
        "POST /users",
        "POST /posts",
        "GET /users/999",
        "DELETE /posts/101",
        "DELETE /users/11",
    ]


async def test_what_cannot_run_is_refused_whole_with_every_problem(api: Any) -> None:
    client, upstream = api
    document = {
        "requests": [
            {"createUser": {"name": "Lin"}},
            {"createSlide": {}},
            {"createPost": {"title": "no user"}},
        ]
    }
    answer = await client.post("/batchUpdate", json=document)
    assert answer.status == 400
    problems = (await answer.json())["error"]["problems"]
    found = {(p["index"], p["field"]) for p in problems}
    assert found == {(1, "requests[1].createSlide"), (2, "requests[2].createPost.userId")}
    # A write that cannot be undone makes all or nothing impossible: refused too.
    cannot = {"requests": [{"createUser": {"name": "Lin"}}, {"touchUser": {"id": 1}}]}
    answer = await client.post("/batchUpdate", json=cannot)
    assert answer.status == 400
    [problem] = (await answer.json())["error"]["problems"]
    assert (problem["requestId"], problem["field"]) == ("r1", "compensate")
    assert calls(upstream) == []


async def test_an_argument_is_data_never_a_placeholder_or_a_segment(api: Any) -> None:
    client, upstream = api
    document = {
        "requests": [
            {"createUser": {"name": "{resultOf(r0).id}", "bio": "resultOf"}},
            {"readUser": {"id": "1/2"}},
        ]
    }
    answer = await client.post("/batchUpdate", json=document)
    body = await answer.json()
    assert body["error"]["requestIndex"] == 1  # /users/1%2F2: one segment, no such user
    assert calls(upstream)[:2] == ["POST /users", "GET /users/1%2F2"]


async def test_a_door_path_segment_is_a_param_and_arguments_stay_literal(api: Any) -> None:
    client, _ = api
    document = {
        "requests": [
            {"createUser": {"name": "{resultOf(r0).id}"}},
            {"createPost": {"userId": 1, "title": "Hi"}},
        ]
    }
    answer = await client.post("/v1/decks/d1/batchUpdate", json=document)
    assert answer.status == 200, await answer.text()
    user, post = (await answer.json())["replies"]
    assert user["createUser"]["name"] == "{resultOf(r0).id}"  # the client's text, as sent
    assert post["createPost"]["title"] == "Hi (deck d1)"


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"method": "FETCH", "path": "/users"}, "method must be one of"),
        ({"method": "POST", "path": "users"}, "path must start with '/'"),
        ({"method": "POST", "path": "/users", "compensate": {"path": "/u"}}, "needs a method"),
    ],
)
def test_an_operation_that_cannot_work_stops_start_up(values: dict[str, Any], why: str) -> None:
    from gqlbatch.core.errors import ConfigError
    from gqlbatch.core.operation_settings import NamedOperation

    with pytest.raises(ConfigError, match=why):
        NamedOperation(name="createUser", **values)
