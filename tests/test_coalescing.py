"""Few upstream calls per screen: bulk routes, forEach fan-out, and in-flight sharing, end to
end through /graphql to a real sample API that records every request it serves."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gqlbatch import Settings, create_app
from gqlbatch.core.upstream_settings import UpstreamSettings
from gqlbatch.ops.cli import demo_settings
from gqlbatch.ops.demo import calls, sample_api
from tests.conftest import GraphQL, graphql_caller
from tests.fakes import FakeService

BATCH = """
mutation Run($requests: [SubRequestInput!]!) {
  batch(requests: $requests) {
    items {
      requestId state status body coalesced bulkCall
      error { code message }
      elements { index status coalesced bulkCall error { code message } }
    }
    stats { subRequests callsRequested upstreamCalls callsSaved savedByDedupe savedByBulk }
  }
}
"""

# The screen of DESIGN §12, written naively: 22 sub-requests.
SCREEN = [
    {"requestId": "user", "path": "/users/1"},
    {"requestId": "posts", "path": "/posts", "query": {"userId": "{resultOf(user).id}"}},
    *(
        {"requestId": f"author{i}", "path": f"/users/{{resultOf(posts)[{i}].userId}}"}
        for i in range(10)
    ),
    *(
        {
            "requestId": f"comments{i}",
            "path": "/comments",
            "query": {"postId": f"{{resultOf(posts)[{i}].id}}"},
        }
        for i in range(10)
    ),
]


@pytest.fixture
async def gateway_for(aiohttp_client: Any, aiohttp_server: Any) -> Any:
    async def make(*, bulk: bool = True, **options: Any) -> tuple[GraphQL, list[str]]:
        app = sample_api()
        server = await aiohttp_server(app, host="127.0.0.1")
        settings = demo_settings(str(server.make_url("")).rstrip("/"), {}, bulk=bulk)
        if options:
            settings = Settings(upstreams=settings.upstreams, **options)
        client: TestClient = await aiohttp_client(create_app(settings))
        return graphql_caller(client), calls(app)

    return make


async def run(graphql: GraphQL, requests: list[dict[str, Any]]) -> dict[str, Any]:
    result = await graphql(BATCH, {"requests": requests})
    assert "errors" not in result, result
    return result["data"]["batch"]


async def test_lookups_ready_together_become_one_call(gateway_for: Any) -> None:
    graphql, seen = await gateway_for()
    out = await run(graphql, [{"path": "/users/2"}, {"path": "/users/3"}, {"path": "/users/999"}])
    # The plural answer has no row for 999: that lookup is then sent alone, so its item
    # carries the upstream's own 404 and body, as if it had never been merged.
    assert seen == ["GET /users?id=2&id=3&id=999", "GET /users/999"]
    two, three, missing = out["items"]
    assert (two["body"]["name"], three["body"]["name"]) == ("Grace", "Alan")
    assert two["bulkCall"] == "GET /users?id=2&id=3&id=999"
    assert (missing["state"], missing["status"], missing["error"]["code"]) == (
        "FAILED",
        404,
        "UPSTREAM_STATUS",
    )
    assert missing["body"] == {"error": "no user 999"} and missing["bulkCall"] is None
    assert "GET /users/999 answered 404" in missing["error"]["message"]
    stats = out["stats"]
    assert (stats["upstreamCalls"], stats["savedByBulk"], stats["callsSaved"]) == (2, 1, 1)


async def test_merged_items_look_as_if_fetched_alone(gateway_for: Any) -> None:
    merged, _ = await gateway_for()
    alone, _ = await gateway_for(bulk=False)
    requests = [
        {"path": "/users/2"},
        {"path": "/users/3"},
        {"path": "/posts/4"},
        {"path": "/posts/5"},
        {"path": "/comments", "query": {"postId": 1}},
        {"path": "/comments", "query": {"postId": 2}},
    ]
    a = await run(merged, requests)
    b = await run(alone, requests)
    assert [(i["status"], i["body"]) for i in a["items"]] == [
        (i["status"], i["body"]) for i in b["items"]
    ]
    assert a["stats"]["upstreamCalls"] == 3 and b["stats"]["upstreamCalls"] == 6


async def test_the_same_query_in_another_order_is_the_same_read(gateway_for: Any) -> None:
    graphql, seen = await gateway_for(bulk=False)
    out = await run(
        graphql,
        [
            {"path": "/comments", "query": {"postId": 1, "b": "x"}},
            {"path": "/comments", "query": {"b": "x", "postId": 1}},
            {"path": "/comments", "query": {"postId": 1}},
        ],
    )
    # Sent in name order, once: the second item reads the first one's answer.
    assert sorted(seen) == ["GET /comments?b=x&postId=1", "GET /comments?postId=1"]
    assert out["stats"]["savedByDedupe"] == 1
    assert [i["coalesced"] for i in out["items"]] == [False, True, False]


async def test_one_to_many_groups_rows_by_key(gateway_for: Any) -> None:
    graphql, seen = await gateway_for()
    out = await run(graphql, [{"path": "/comments", "query": {"postId": p}} for p in (1, 2, 500)])
    assert seen == ["GET /comments?postId=1&postId=2&postId=500"]
    first, second, none = (i["body"] for i in out["items"])
    assert {c["postId"] for c in first} == {1} and len(first) == 3
    assert {c["postId"] for c in second} == {2}
    assert none == []


async def test_max_keys_limits_each_plural_call(gateway_for: Any, aiohttp_server: Any) -> None:
    graphql, seen = await gateway_for()
    # demo.toml leaves max_keys at 100; 150 distinct lookups need two plural calls. The demo
    # has 100 posts: the 50 keys neither answer has are each fetched alone, for their 404s.
    out = await run(graphql, [{"forEach": list(range(1, 151)), "path": "/posts/{item}"}])
    plural = [s for s in seen if "?" in s]
    assert sorted(len(s.split("id=")) - 1 for s in plural) == [50, 100]
    assert sorted(s for s in seen if "?" not in s) == sorted(
        f"GET /posts/{n}" for n in range(101, 151)
    )
    body = out["items"][0]["body"]
    assert [p["id"] for p in body[:100]] == list(range(1, 101))
    assert body[100:] == [{"error": f"no post {n}"} for n in range(101, 151)]


async def test_screen_makes_few_calls_with_bulk_and_one_per_resource_without(
    gateway_for: Any,
) -> None:
    graphql, seen = await gateway_for()
    out = await run(graphql, SCREEN)
    assert all(i["state"] == "SUCCEEDED" for i in out["items"])
    assert len(seen) <= 4
    assert out["stats"] == {
        "subRequests": 22,
        "callsRequested": 22,
        "upstreamCalls": len(seen),
        "callsSaved": 22 - len(seen),
        "savedByDedupe": 10,
        "savedByBulk": 9,
    }

    naive, naive_seen = await gateway_for(bulk=False)
    plain = await run(naive, SCREEN)
    distinct = {"/users/1", "/posts?userId=1"} | {
        f"/comments?postId={p['id']}" for p in plain["items"][1]["body"]
    }
    assert sorted(s.split(" ", 1)[1] for s in naive_seen) == sorted(distinct)
    assert [i["body"] for i in plain["items"]] == [i["body"] for i in out["items"]]


async def test_for_each_fans_out_with_item_and_index(gateway_for: Any) -> None:
    graphql, seen = await gateway_for()
    out = await run(
        graphql,
        [
            {"requestId": "posts", "path": "/posts", "query": {"userId": 3}},
            {
                "requestId": "authors",
                "forEach": "{resultOf(posts)[*].userId}",
                "path": "/users/{item}",
            },
            {
                "requestId": "comments",
                "forEach": "{resultOf(posts)[*]}",
                "path": "/comments",
                "query": {"postId": "{item.id}"},
                "headers": [{"name": "X-Index", "value": "{index}"}],
            },
        ],
    )
    posts, authors, comments = out["items"]
    assert (authors["status"], len(authors["body"])) == (200, 10)
    assert {a["name"] for a in authors["body"]} == {"Alan"}
    assert [e["coalesced"] for e in authors["elements"]] == [False] + [True] * 9
    assert [c[0]["postId"] for c in comments["body"]] == [p["id"] for p in posts["body"]]
    assert [e["index"] for e in comments["elements"]] == list(range(10))
    # Element calls differ by X-Index, so each is its own plural group of one: sent as written.
    assert len(seen) == 1 + 1 + 10


async def test_for_each_repeats_share_a_read_and_its_failure_but_never_a_write(
    gateway_for: Any,
) -> None:
    # Repeated elements are answered from the batch's cache once their first is sent: a failed
    # read fails each repeat the same way; a write is sent once per element, however alike.
    graphql, seen = await gateway_for(bulk=False)
    out = await run(
        graphql,
        [
            {"requestId": "missing", "forEach": [999, 1, 999, 999], "path": "/users/{item}"},
            {
                "requestId": "writes",
                "forEach": [1, 1],
                "method": "POST",
                "path": "/posts",
                "body": {"title": "same"},
            },
        ],
    )
    missing, writes = out["items"]
    assert [e["status"] for e in missing["elements"]] == [404, 200, 404, 404]
    assert [e["coalesced"] for e in missing["elements"]] == [False, False, True, True]
    assert missing["body"][3] == missing["body"][0] == {"error": "no user 999"}
    assert [e["status"] for e in writes["elements"]] == [201, 201]
    assert writes["body"][0]["id"] != writes["body"][1]["id"]
    assert sorted(seen) == ["GET /users/1", "GET /users/999", "POST /posts", "POST /posts"]
    assert out["stats"]["callsRequested"] == 6 and out["stats"]["savedByDedupe"] == 2


async def test_for_each_elements_merge_into_bulk_calls(gateway_for: Any) -> None:
    graphql, seen = await gateway_for()
    out = await run(
        graphql,
        [
            {"requestId": "ids", "forEach": [2, 3, 4], "path": "/users/{item}"},
        ],
    )
    assert seen == ["GET /users?id=2&id=3&id=4"]
    assert [u["id"] for u in out["items"][0]["body"]] == [2, 3, 4]
    assert {e["bulkCall"] for e in out["items"][0]["elements"]} == {"GET /users?id=2&id=3&id=4"}


async def test_for_each_with_a_failing_element_is_207(gateway_for: Any) -> None:
    graphql, _ = await gateway_for()
    out = await run(
        graphql,
        [
            {"requestId": "u", "forEach": [1, 999, "x/y"], "path": "/users/{item}"},
            {"requestId": "after", "path": "/users/{resultOf(u)[0].id}"},
        ],
    )
    fanned, after = out["items"]
    assert (fanned["state"], fanned["status"]) == ("SUCCEEDED", 207)
    assert [e["status"] for e in fanned["elements"]] == [200, 404, 404]
    assert fanned["elements"][1]["error"]["code"] == "UPSTREAM_STATUS"
    assert fanned["body"][0]["name"] == "Ada"
    assert fanned["body"][1] == {"error": "no user 999"}  # the upstream's own 404 body
    assert after["state"] == "SUCCEEDED"


async def test_for_each_over_an_empty_list_succeeds_with_no_calls(gateway_for: Any) -> None:
    graphql, seen = await gateway_for()
    out = await run(
        graphql,
        [
            {"requestId": "none", "path": "/posts", "query": {"userId": 999}},
            {"forEach": "{resultOf(none)[*].id}", "path": "/posts/{item}"},
        ],
    )
    assert (out["items"][1]["status"], out["items"][1]["body"]) == (200, [])
    assert out["items"][1]["elements"] == []
    assert seen == ["GET /posts?userId=999"]


async def test_for_each_over_something_that_is_not_a_list(gateway_for: Any) -> None:
    graphql, _ = await gateway_for()
    out = await run(
        graphql,
        [
            {"requestId": "u", "path": "/users/1"},
            {"forEach": "{resultOf(u).name}", "path": "/x/{item}"},
        ],
    )
    error = out["items"][1]["error"]
    assert error["code"] == "REFERENCE_NOT_FOUND"
    assert "gave str, not a list" in error["message"]


async def test_fan_out_cap_rejects_a_literal_list_before_anything_runs(gateway_for: Any) -> None:
    graphql, seen = await gateway_for(max_fanout=5)
    result = await graphql(
        BATCH,
        {"requests": [{"path": "/users/1"}, {"forEach": list(range(5)), "path": "/posts/{item}"}]},
    )
    problem = result["errors"][0]["extensions"]["problems"][0]
    assert problem["code"] == "BATCH_TOO_LARGE"
    assert "asks for 6 upstream calls, more than max_fanout (5)" in problem["message"]
    assert seen == []


async def test_fan_out_cap_stops_a_list_known_only_at_run_time(gateway_for: Any) -> None:
    graphql, seen = await gateway_for(max_fanout=5)
    out = await run(
        graphql,
        [
            {"requestId": "posts", "path": "/posts", "query": {"userId": 1}},
            {"forEach": "{resultOf(posts)[*].id}", "path": "/posts/{item}"},
        ],
    )
    fanned = out["items"][1]
    assert (fanned["state"], fanned["error"]["code"]) == ("FAILED", "BATCH_TOO_LARGE")
    assert (
        "forEach over 10 elements is more than the 4 upstream calls left"
        in fanned["error"]["message"]
    )
    assert seen == ["GET /posts?userId=1"]


async def test_item_and_index_outside_for_each_are_rejected(gateway_for: Any) -> None:
    graphql, _ = await gateway_for()
    result = await graphql(
        BATCH,
        {
            "requests": [
                {"path": "/users/{item}"},
                {"forEach": "{item}", "path": "/users/1"},
                {"forEach": "posts are {resultOf(0)}", "path": "/users/1"},
                {"forEach": 3, "path": "/users/1"},
            ]
        },
    )
    problems = result["errors"][0]["extensions"]["problems"]
    assert [(p["index"], p["code"], p["field"]) for p in problems] == [
        (3, "INVALID_INPUT", "forEach"),
        (0, "INVALID_REFERENCE", "path"),
        (1, "INVALID_REFERENCE", "forEach"),
        (2, "INVALID_REFERENCE", "forEach"),
    ]


async def test_star_selector_fans_in_to_text_and_to_typed_lists(gateway_for: Any) -> None:
    graphql, seen = await gateway_for()
    out = await run(
        graphql,
        [
            {"requestId": "posts", "path": "/posts", "query": {"userId": 2}},
            {"path": "/comments", "query": {"postId": "{resultOf(posts)[*].id}"}},
            {"method": "POST", "path": "/posts", "body": {"related": "{resultOf(posts)[*].id}"}},
        ],
    )
    ids = [p["id"] for p in out["items"][0]["body"]]
    assert "GET /comments?postId=" + ",".join(map(str, ids)) in seen
    assert len(out["items"][1]["body"]) == 30
    assert out["items"][2]["body"]["related"] == ids


async def test_concurrent_batches_share_in_flight_reads_only_with_equal_credentials(
    aiohttp_client: Any, upstream_url: str, service: FakeService
) -> None:
    gate = asyncio.Event()
    service.route("GET", "/me", gate=gate, json={"me": True})
    shared = UpstreamSettings(name="api", base_url=upstream_url, share_inflight=True)
    client = await aiohttp_client(create_app(Settings(upstreams={"api": shared})))
    graphql = graphql_caller(client)

    async def batch(token: str) -> dict[str, Any]:
        return await run_with(graphql, token)

    batches = [asyncio.create_task(batch(t)) for t in ("alice", "alice", "bob", "alice")]
    await service.received(2)  # alice's one call and bob's one call are in flight
    await asyncio.sleep(0.05)  # give a third call the chance to be (wrongly) made
    gate.set()
    results = await asyncio.gather(*batches)
    assert sorted(c.headers["Authorization"] for c in service.calls) == ["alice", "bob"]
    assert all(r["items"][0]["body"] == {"me": True} for r in results)


async def test_without_share_inflight_each_batch_makes_its_own_call(
    gateway: TestClient, service: FakeService
) -> None:
    gate = asyncio.Event()
    service.route("GET", "/me", gate=gate, json={})
    graphql = graphql_caller(gateway)
    batches = [asyncio.create_task(run_with(graphql, "alice")) for _ in range(2)]
    await service.received(2)
    gate.set()
    await asyncio.gather(*batches)
    assert len(service.calls) == 2


async def run_with(graphql: GraphQL, token: str) -> dict[str, Any]:
    result = await graphql(BATCH, {"requests": [{"path": "/me"}]}, headers={"Authorization": token})
    return result["data"]["batch"]
