"""Atomic batches: stop at the first failure, then undo what succeeded, newest first, and say
plainly what could not be undone."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gqlbatch import BatchRejected, Settings, create_app, prepare
from gqlbatch.core.upstream_settings import RouteCompensation, UpstreamSettings
from gqlbatch.ops.config_file import settings_from_toml
from gqlbatch.ops.demo import calls, sample_api
from tests.conftest import graphql_caller
from tests.fakes import FakeService

QUERY = """mutation($r: [SubRequestInput!]!, $o: BatchOptionsInput) {
  batch(requests: $r, options: $o) {
    rolledBack
    items { requestId state status error { code } rollback { state status message } }
  }
}"""


@pytest.fixture
async def api(aiohttp_server: Any, make_gateway: Any) -> tuple[TestClient, list[str]]:
    app = sample_api()
    server = await aiohttp_server(app, host="127.0.0.1")
    client = await make_gateway(str(server.make_url("")).rstrip("/"))
    return client, calls(app)


async def run(client: TestClient, items: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    result = await graphql_caller(client)(QUERY, {"r": items, "o": {"atomic": True, **options}})
    assert "errors" not in result, result
    return result["data"]["batch"]


def create(rid: str, title: str) -> dict[str, Any]:
    return {
        "requestId": rid,
        "method": "POST",
        "path": "/posts",
        "body": {"title": title},
        "compensate": {"method": "DELETE", "path": f"/posts/{{resultOf({rid}).id}}"},
    }


async def test_a_failure_undoes_what_succeeded_newest_first(api: Any) -> None:
    client, seen = api
    out = await run(
        client,
        [
            create("first", "a"),
            {"requestId": "read", "path": "/users/1"},
            create("second", "b"),
            {"requestId": "boom", "path": "/users/999"},
            create("never", "c"),
        ],
    )
    first, read, second, boom, never = out["items"]
    assert out["rolledBack"] is True
    assert (boom["state"], boom["status"]) == ("FAILED", 404)
    assert (never["state"], never["error"]["code"]) == ("CANCELLED", "CANCELLED")
    assert first["rollback"] == {
        "state": "ROLLED_BACK",
        "status": 204,
        "message": "DELETE /posts/101 answered 204",
    }
    assert second["rollback"]["state"] == "ROLLED_BACK"
    assert read["rollback"]["state"] == "NOT_NEEDED"
    assert boom["rollback"] is None and never["rollback"] is None
    assert seen == [
        "POST /posts",
        "GET /users/1",
        "POST /posts",
        "GET /users/999",
        "DELETE /posts/102",
        "DELETE /posts/101",
    ]


async def test_success_runs_one_at_a_time_and_compensates_nothing(api: Any) -> None:
    client, seen = api
    out = await run(client, [create("a", "x"), create("b", "y")])
    assert out["rolledBack"] is False
    assert [i["rollback"] for i in out["items"]] == [None, None]
    assert seen == ["POST /posts", "POST /posts"]


async def test_a_write_that_cannot_be_undone_refuses_the_atomic_batch(api: Any) -> None:
    # Issue 27: an atomic batch whose write had no compensate ran, created the post, failed
    # later and kept it (NOT_ROLLED_BACK): "all or nothing" promised and broken. It is now
    # refused before anything runs, with the reason.
    client, seen = api
    items = [
        {"requestId": "w", "method": "POST", "path": "/posts", "body": {"title": "kept"}},
        {"requestId": "boom", "path": "/users/999"},
    ]
    answer = await graphql_caller(client)(QUERY, {"r": items, "o": {"atomic": True}})
    [error] = answer["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT"
    [problem] = error["extensions"]["problems"]
    assert (problem["requestId"], problem["field"]) == ("w", "compensate")
    assert "could not undo it" in problem["message"]
    assert seen == []


async def test_a_route_compensation_from_the_config_undoes_a_write_that_declares_none(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    # The integrator's case: [doors.json] atomic = true, and clients that never write a
    # compensate. The route's compensation comes from the upstream's configuration.
    app = sample_api()
    server = await aiohttp_server(app, host="127.0.0.1")
    config = f"""
[doors.json]
atomic = true

[upstreams.default]
base_url = "{str(server.make_url("")).rstrip("/")}"

[[upstreams.default.compensate]]
match = "POST /posts"
with = {{ method = "DELETE", path = "/posts/{{result.id}}" }}

[[upstreams.default.compensate]]
match = "PUT /users/{{id}}/name"
with = {{ method = "PUT", path = "/users/{{param.id}}/name", body = "{{result.before}}" }}
"""
    settings, _ = settings_from_toml(config)
    client = await aiohttp_client(create_app(settings))
    items = [
        {"id": "a", "method": "POST", "url": "/posts", "body": {"title": "x"}},
        {"id": "b", "method": "POST", "url": "/posts", "body": {"title": "y"}},
        {"id": "boom", "url": "/users/999"},
    ]
    answer = await client.post("/batch", json=items)
    assert answer.status == 200, await answer.text()
    ran = ["POST /posts", "POST /posts", "GET /users/999"]
    assert calls(app) == [*ran, "DELETE /posts/102", "DELETE /posts/101"]


def test_a_route_compensation_is_written_for_each_item() -> None:
    # `{result...}` reads the item's own result; `{param.NAME}` is the segment its route
    # matched, a placeholder there staying one.
    upstream = UpstreamSettings(
        name="default",
        base_url="http://127.0.0.1:9",
        compensate=(
            RouteCompensation(
                match="PUT /users/{id}/name",
                undo={"method": "PUT", "path": "/users/{param.id}/name", "body": "{result.old}"},
            ),
        ),
    )
    settings = Settings(upstreams={"default": upstream})
    items = [
        {"requestId": "u", "path": "/users/1"},
        {"requestId": "n", "method": "PUT", "path": "/users/{resultOf(u).id}/name", "body": "x"},
    ]
    plan = prepare(items, {"atomic": True}, settings)
    undo = plan.items[1].compensation
    assert undo is not None
    assert [ref.text for ref in undo.path.refs] == ["{resultOf(u).id}"]
    assert undo.body.whole is not None and undo.body.whole.text == "{resultOf(n).old}"


@pytest.mark.parametrize(
    ("match", "undo", "why"),
    [
        ("/users", {"method": "DELETE", "path": "/x"}, "match is 'METHOD /path'"),
        ("POST /users", {"path": "/x"}, "with needs a method"),
        ("POST /users", {"method": "DELETE"}, "with needs a path"),
        ("POST /users", {"method": "DELETE", "path": "/u/{param.id}"}, "{param.id}"),
    ],
)
def test_a_route_compensation_that_cannot_work_stops_start_up(
    match: str, undo: dict[str, Any], why: str
) -> None:
    from gqlbatch.core.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(why)):
        RouteCompensation(match=match, undo=undo)


async def test_a_failed_compensation_is_reported_and_the_rest_still_run(api: Any) -> None:
    client, seen = api
    out = await run(
        client,
        [
            create("a", "x"),
            {
                "requestId": "b",
                "method": "POST",
                "path": "/posts",
                "body": {"title": "y"},
                "compensate": {"method": "DELETE", "path": "/posts/999999"},
            },
            {"requestId": "boom", "path": "/users/999"},
        ],
    )
    a, b, _ = out["items"]
    assert (b["rollback"]["state"], b["rollback"]["status"]) == ("ROLLBACK_FAILED", 404)
    assert a["rollback"]["state"] == "ROLLED_BACK"
    assert seen[-2:] == ["DELETE /posts/999999", "DELETE /posts/101"]


async def test_rest_door_reports_rollback(api: Any) -> None:
    client, _ = api
    resp = await client.post(
        "/batch",
        json={"atomic": True, "requests": [create("a", "x"), {"id": "boom", "url": "/users/999"}]},
    )
    body = await resp.json()
    assert body["rolledBack"] is True
    assert body["responses"][0]["rollback"]["state"] == "ROLLED_BACK"


SETTINGS = Settings.from_upstream_urls(["http://api.test"])


@pytest.mark.parametrize(
    ("items", "options", "field"),
    [
        ([{"path": "/a", "compensate": {"method": "DELETE", "path": "/a"}}], None, "compensate"),
        ([{"path": "/a", "compensate": {"path": "//evil"}}], {"atomic": True}, "compensate.path"),
        (
            [{"path": "/a", "compensate": {"path": "/a/{resultOf(nope).id}"}}],
            {"atomic": True},
            "compensate.path",
        ),
        ([{"path": "/a", "compensate": "DELETE /a"}], {"atomic": True}, "compensate"),
        ([{"path": "/a"}], {"atomic": True, "onError": "CONTINUE"}, "options.onError"),
        ([{"path": "/a"}], {"atomic": True, "mode": "BOGUS"}, "options.mode"),
        ([{"path": "/a"}], {"atomic": True, "mode": "PARALLEL"}, "options.mode"),
    ],
    ids=[
        "compensate-without-atomic",
        "escaping-compensation",
        "dangling-reference",
        "not-an-object",
        "continue-contradicts-atomic",
        "bogus-mode",
        "parallel-contradicts-atomic",
    ],
)
def test_bad_atomic_batches_are_refused(items: Any, options: Any, field: str) -> None:
    with pytest.raises(BatchRejected) as info:
        prepare(items, options, SETTINGS)
    assert field in [p.field for p in info.value.problems]


def test_a_compensation_may_read_its_own_item() -> None:
    plan = prepare(
        [
            {
                "requestId": "a",
                "method": "POST",
                "path": "/a",
                "compensate": {"path": "/a/{resultOf(a).id}"},
            }
        ],
        {"atomic": True},
        SETTINGS,
    )
    assert plan.items[0].compensation is not None
    assert plan.items[0].depends_on == ()
    assert plan.options.mode.value == "SEQUENTIAL"


async def test_an_atomicity_group_is_all_or_nothing_and_the_rest_is_not(
    service: FakeService, gateway: TestClient
) -> None:
    # An OData JSON batch, as its clients write it: atomicityGroup on the items of a change
    # set, dependsOn naming the group. The group's second write fails: its first is undone,
    # an item outside the group is unaffected, and the item after the group is skipped.
    gate = asyncio.Event()
    service.route("POST", "/orders", status=201, json={"id": 5})
    service.route("POST", "/lines", status=400, json={"error": "no stock"})
    service.route("DELETE", "/orders/5", status=204, body=b"")
    service.route("GET", "/elsewhere", json={"ok": True}, gate=gate)
    service.route("GET", "/after", json={})
    raw = b"""{"requests": [
      {"id": "1", "atomicityGroup": "g1", "method": "POST", "url": "orders", "body": {"n": 1},
       "compensate": {"method": "DELETE", "path": "/orders/{resultOf(1).id}"}},
      {"id": "2", "atomicityGroup": "g1", "method": "POST", "url": "lines", "body": {"sku": "A"},
       "compensate": {"method": "DELETE", "path": "/lines/{resultOf(2).id}"}},
      {"id": "3", "method": "GET", "url": "elsewhere"},
      {"id": "4", "dependsOn": ["g1"], "method": "GET", "url": "after"}
    ]}"""
    post = asyncio.create_task(
        gateway.post("/$batch", data=raw, headers={"Content-Type": "application/json"})
    )
    await service.received(3)  # the whole group ran while /elsewhere was held
    assert [line for line in service.lines if line.startswith("POST")] == [
        "POST /orders",
        "POST /lines",
    ]
    gate.set()
    resp = await post
    out = {r["id"]: r for r in (await resp.json())["responses"]}
    assert {k: r["state"] for k, r in out.items()} == {
        "1": "SUCCEEDED",
        "2": "FAILED",
        "3": "SUCCEEDED",
        "4": "SKIPPED",
    }
    assert out["1"]["rollback"]["state"] == "ROLLED_BACK"
    assert "rollback" not in out["3"]
    assert sorted(service.lines) == sorted(
        ["POST /orders", "POST /lines", "GET /elsewhere", "DELETE /orders/5"]
    )


async def test_a_group_that_succeeds_is_not_undone_and_compensate_needs_a_unit(
    service: FakeService, gateway: TestClient
) -> None:
    service.route("POST", "/a", status=201, json={"id": 1})
    service.route("POST", "/b", status=201, json={"id": 2})
    group = [
        {
            "id": "a",
            "atomicityGroup": "g",
            "method": "POST",
            "path": "/a",
            "compensate": {"method": "DELETE", "path": "/a/1"},
        },
        {
            "id": "b",
            "atomicityGroup": "g",
            "method": "POST",
            "path": "/b",
            "compensate": {"method": "DELETE", "path": "/b/2"},
        },
    ]
    resp = await gateway.post("/batch", json={"requests": group})
    body = await resp.json()
    assert [r["state"] for r in body["responses"]] == ["SUCCEEDED", "SUCCEEDED"]
    assert "rolledBack" not in body and service.lines == ["POST /a", "POST /b"]
    # compensate outside any group or atomic batch would never run: refused, as before.
    loose = [{"id": "x", "method": "POST", "path": "/a", "compensate": {"path": "/a/1"}}]
    refused = await gateway.post("/batch", json={"requests": loose})
    assert refused.status == 400
    # A write of a group that could not be undone refuses the batch (issue 27).
    group[1].pop("compensate")
    cannot = await (await gateway.post("/batch", json={"requests": group})).json()
    assert "atomicity group 'g' could not undo it" in cannot["error"]["problems"][0]["message"]
    # A group name is not also a requestId, and an item cannot wait on its own group.
    clash = [
        {"id": "g", "path": "/a"},
        {"id": "m", "atomicityGroup": "g", "path": "/b", "dependsOn": ["g"]},
    ]
    problems = (await (await gateway.post("/batch", json=clash)).json())["error"]["problems"]
    assert {p["field"] for p in problems} >= {"atomicityGroup"}
