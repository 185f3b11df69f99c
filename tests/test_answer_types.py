"""Typed `data` (issue 14): GraphQL types generated from upstreams' OpenAPI documents, and each
answer given its type. The upstream is a real aiohttp server that serves its document (in YAML)
and the answers; the generated SDL is checked against a snapshot."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import graphql
import pytest
from aiohttp.test_utils import TestClient
from gql import Client, GraphQLRequest
from gql.transport.aiohttp_websockets import AIOHTTPWebsocketsTransport

from gqlbatch import Settings, create_app, running
from gqlbatch.core.errors import ConfigError
from gqlbatch.core.openapi import Contract
from gqlbatch.core.upstream_settings import UpstreamSettings
from gqlbatch.doors.graphql.answer_types import AnswerTypes
from gqlbatch.doors.graphql.schema import answer_types, build_schema, builtin_type_names
from gqlbatch.ops.cli import main
from tests.conftest import graphql_caller
from tests.fakes import FakeService

HERE = Path(__file__).parent / "openapi"
DOCUMENT = (HERE / "blog.yaml").read_text(encoding="utf-8")
SNAPSHOT = HERE / "blog.graphql"

ADA = {
    "id": 1,
    "name": "Ada",
    "email": None,
    "role": "ADMIN",
    "big-id": 2**40,
    "@type": "person",
    "labels": {"team": "core"},
    "address": {"city": "London", "status": "in-progress"},
}
GRACE = {"id": 2, "name": "Grace", "role": "reader"}
POST = {"id": 7, "title": "Notes", "author": ADA, "editor": None, "tags": ["a", "b"], "score": 2}
THREADS = [{"id": 1, "body": "first", "replies": [{"id": 2, "body": "re", "replies": []}]}]


def blog() -> Contract:
    return Contract.from_text(DOCUMENT, "blog.yaml")


def generated_sdl(types: AnswerTypes) -> str:
    """The generated part of the schema: its new types, TypedBody, and Succeeded's `data`."""
    schema = graphql.build_schema(build_schema(answers=types).as_str())
    names = sorted(set(schema.type_map) - builtin_type_names())
    data = schema.get_type("Succeeded").fields["data"]  # type: ignore[union-attr]
    printed = [graphql.print_type(schema.type_map[name]) for name in names]
    return "\n\n".join([*printed, f"# Succeeded.data: {data.type}"]) + "\n"


def test_the_generated_sdl_matches_its_snapshot() -> None:
    sdl = generated_sdl(answer_types({"blog": blog()}))
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(sdl, encoding="utf-8")
    assert sdl == SNAPSHOT.read_text(encoding="utf-8"), (
        "the types generated from tests/openapi/blog.yaml changed; if that is meant, run "
        "UPDATE_SNAPSHOTS=1 pytest tests/test_answer_types.py and review the diff"
    )


def test_cycles_one_of_all_of_and_odd_names_build() -> None:
    types = answer_types({"blog": blog()})
    objects = {o.name: {f.name: f for f in o.fields} for o in types.objects}
    assert objects["Comment"]["replies"].shape.of.name == "Comment"  # type: ignore[union-attr]
    assert objects["Comment"]["attachment"].shape.name == "JSON"  # type: ignore[union-attr]
    assert set(objects["Post"]) >= {"id", "created", "title", "author", "editor"}  # allOf
    assert objects["User"]["big_id"].key == "big-id"
    assert objects["User"]["type"].key == "@type"
    assert "password" not in objects["User"]  # writeOnly: never in an answer
    assert "BlogHeader" in objects  # gqlbatch has a Header of its own
    assert types.member("blog", "GET", "/search", 200) is None  # oneOf of two objects: JSON


def test_id_fields_are_ids_unless_their_upstream_keeps_the_documented_type() -> None:
    # Issue 27: Relay refuses an Int id ("Expected id on field `data` to be a string"); an
    # upstream whose clients read the documented type says id_type = "documented".
    def user_id(types: Any) -> str:
        [user] = [o for o in types.objects if o.name == "User"]
        return next(f.shape.name for f in user.fields if f.name == "id")

    assert user_id(answer_types({"blog": blog()})) == "ID"
    assert user_id(answer_types({"blog": blog()}, documented_ids={"blog"})) == "Int"
    with pytest.raises(ConfigError, match="id_type must be 'id' or 'documented'"):
        UpstreamSettings(name="blog", base_url="http://127.0.0.1:9", id_type="string")


def test_several_documents_prefix_their_types() -> None:
    types = answer_types({"blog": blog(), "shop": blog()})
    assert {"BlogUser", "ShopUser", "BlogUserList", "ShopUserList"} <= set(types.members)
    schema = build_schema(answers=types).as_str()
    assert "type ShopUser {" in schema and "\ntype User {" not in schema


@pytest.fixture
async def typed(aiohttp_client: Any, service: FakeService, upstream_url: str) -> TestClient:
    service.route("GET", "/openapi.yaml", text=DOCUMENT, content_type="application/yaml")
    service.route("GET", "/users/1", json=ADA)
    service.route("GET", "/users", json=[ADA, GRACE])
    service.route("GET", "/posts/7", json=POST)
    service.route("GET", "/posts/7/comments", json=THREADS)
    service.route("DELETE", "/posts/7", status=204)
    service.route("GET", "/stats", status=203, json={"users": 2, "since": None})
    service.route("GET", "/version", json="1.0")
    service.route("GET", "/elsewhere", json={"id": 1})
    upstream = UpstreamSettings(
        name="blog", base_url=upstream_url, openapi=upstream_url + "/openapi.yaml"
    )
    client = await aiohttp_client(create_app(Settings(upstreams={"blog": upstream})))
    service.calls.clear()
    return client


SCREEN = """
mutation Screen {
  batch(requests: [
    {requestId: "user", path: "/users/1"}
    {requestId: "users", path: "/users", query: {id: [1, 2]}}
    {requestId: "post", path: "/posts/7", dependsOn: ["user"]}
    {requestId: "threads", path: "/posts/7/comments"}
    {requestId: "gone", method: DELETE, path: "/posts/7"}
    {requestId: "stats", path: "/stats"}
    {requestId: "version", path: "/version"}
    {requestId: "elsewhere", path: "/elsewhere"}
  ]) {
    items { requestId ... on Succeeded { data { __typename } } }
    user: item(requestId: "user") {
      ... on Succeeded {
        data { ... on User { id name email role big_id type labels address { city status } } }
        body
      }
    }
    users: item(requestId: "users") {
      ... on Succeeded { data { ... on UserList { items { id name role } } } }
    }
    post: item(requestId: "post") {
      ... on Succeeded {
        data { ... on Post { id title score tags author { name } editor { name } } }
      }
    }
    threads: item(requestId: "threads") {
      ... on Succeeded { data { ... on CommentList { items { body replies { body } } } } }
    }
    stats: item(requestId: "stats") {
      ... on Succeeded { data { ... on GetStatsResponse { users since } } }
    }
  }
}
"""


async def test_answers_are_typed_objects_lists_and_nothing_without_a_schema(
    typed: TestClient,
) -> None:
    answer = await graphql_caller(typed)(SCREEN)
    assert "errors" not in answer, answer
    batch = answer["data"]["batch"]
    kinds = {i["requestId"]: (i.get("data") or {}).get("__typename") for i in batch["items"]}
    assert kinds == {
        "user": "User",
        "users": "UserList",
        "post": "Post",
        "threads": "CommentList",
        "gone": None,  # 204: the document gives it no schema
        "stats": "GetStatsResponse",  # 203, by its 2XX answer
        "version": None,  # a string: not an object type
        "elsewhere": None,  # no operation matches
    }
    user = batch["user"]
    assert user["data"] == {
        "id": "1",  # an ID, as normalized caches key by (issue 27); id_type keeps Int
        "name": "Ada",
        "email": None,
        "role": "ADMIN",
        "big_id": 2**40,  # int64 is JSON: GraphQL's Int would refuse it
        "type": "person",
        "labels": {"team": "core"},
        "address": {"city": "London", "status": "in-progress"},
    }
    assert user["body"] == ADA  # body stays as it is
    assert batch["users"]["data"]["items"] == [
        {"id": "1", "name": "Ada", "role": "ADMIN"},
        {"id": "2", "name": "Grace", "role": "reader"},
    ]
    assert batch["post"]["data"] == {
        "id": "7",
        "title": "Notes",
        "score": 2.0,
        "tags": ["a", "b"],
        "author": {"name": "Ada"},
        "editor": None,
    }
    assert batch["threads"]["data"]["items"] == [{"body": "first", "replies": [{"body": "re"}]}]
    assert batch["stats"]["data"] == {"users": 2, "since": None}


async def test_a_for_each_items_answers_are_typed_slot_by_slot(typed: TestClient) -> None:
    query = """mutation {
      batch(requests: [
        {requestId: "authors", forEach: [1, 99, 1], path: "/users/{item}"}
        {requestId: "threads", forEach: [7], path: "/posts/{item}/comments"}
      ]) {
        authors: item(requestId: "authors") {
          status
          ... on Succeeded { data { __typename ... on UserEach { items { name } } } }
        }
        threads: item(requestId: "threads") {
          ... on Succeeded { data { ... on CommentListEach { items { items { body } } } } }
        }
      }
    }"""
    answer = await graphql_caller(typed)(query)
    assert "errors" not in answer, answer
    batch = answer["data"]["batch"]
    assert batch["authors"] == {
        "status": 207,  # /users/99 answered 404: its slot is null, not an Error typed as User
        "data": {"__typename": "UserEach", "items": [{"name": "Ada"}, None, {"name": "Ada"}]},
    }
    assert batch["threads"]["data"] == {"items": [{"items": [{"body": "first"}]}]}


async def test_an_answer_that_breaks_its_schema_is_an_error_in_its_own_data(
    typed: TestClient, service: FakeService
) -> None:
    service.route("GET", "/users/2", json={"id": 2, "role": "ADMIN"})  # no name
    service.route("GET", "/users/3", json=["not", "an", "object"])
    query = """mutation {
      batch(requests: [{requestId: "a", path: "/users/1"}, {requestId: "b", path: "/users/2"},
                       {requestId: "c", path: "/users/3"}]) {
        items { requestId ... on Succeeded { data { ... on User { name } } } }
      }
    }"""
    answer = await graphql_caller(typed)(query)
    items = answer["data"]["batch"]["items"]
    assert items == [
        {"requestId": "a", "data": {"name": "Ada"}},
        {"requestId": "b", "data": None},  # name is required: the error is here, not above
        {"requestId": "c", "data": None},  # not the JSON the schema describes
    ]
    [error] = answer["errors"]
    assert error["path"] == ["batch", "items", 1, "data", "name"]
    assert error["extensions"] == {"code": "UPSTREAM_BAD_RESPONSE"}
    assert error["message"].startswith(
        "the upstream's answer has no 'name', which User requires by its OpenAPI document"
    )


async def test_streamed_results_are_typed_too(service: FakeService, upstream_url: str) -> None:
    service.route("GET", "/openapi.yaml", text=DOCUMENT, content_type="application/yaml")
    service.route("GET", "/users/1", json=ADA)
    upstream = UpstreamSettings(
        name="blog", base_url=upstream_url, openapi=upstream_url + "/openapi.yaml"
    )
    query = """subscription {
      batch(requests: [{requestId: "user", path: "/users/1"}]) {
        __typename
        ... on Succeeded { data { ... on User { name role } } }
      }
    }"""
    async with running(create_app(Settings(upstreams={"blog": upstream}))) as url:
        transport = AIOHTTPWebsocketsTransport(url=url.replace("http://", "ws://") + "/graphql")
        async with Client(transport=transport) as session:
            events = [e["batch"] async for e in session.subscribe(GraphQLRequest(query))]
    assert events == [
        {"__typename": "Succeeded", "data": {"name": "Ada", "role": "ADMIN"}},
        {"__typename": "BatchDone"},
    ]


def test_export_schema_with_a_config_prints_the_generated_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gqlbatch.toml"
    document = json.dumps(str(HERE / "blog.yaml"))
    config.write_text(
        f'[upstreams.blog]\nbase_url = "http://127.0.0.1:9"\nopenapi = {document}\n',
        encoding="utf-8",
    )
    assert main(["export-schema", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert printed == build_schema(answers=answer_types({"blog": blog()})).as_str() + "\n"
    assert "union TypedBody = " in printed
