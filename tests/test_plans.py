"""Plans kept for batches sent again and again (issue 15): a screen's repeated reads are
validated and planned once; nothing private is kept; a refused batch is never kept."""

from __future__ import annotations

from typing import Any

import pytest

import gqlbatch.execution.planning as planning
from gqlbatch import Settings, create_app
from gqlbatch.core.errors import BatchRejected
from gqlbatch.core.plan import Plan
from gqlbatch.doors.http import PLANS
from gqlbatch.execution.plans import MAX_ITEMS, MAX_KEY_CHARS, PlanCache
from tests.conftest import graphql_caller
from tests.fakes import FakeService

SETTINGS = Settings.from_upstream_urls(["http://127.0.0.1:9"], max_items=5000, max_fanout=5000)
SCREEN = [
    {"requestId": "u", "path": "/users/1"},
    {"path": "/posts", "query": {"u": "{resultOf(u).id}"}},
]


def make(items: Any, read_only: bool = False) -> Any:
    made: list[Plan] = []

    def planned() -> Plan:
        made.append(plan := planning.prepare(items, None, SETTINGS, read_only=read_only))
        return plan

    return planned, made


def test_a_batch_sent_again_is_planned_once() -> None:
    cache = PlanCache()
    first, made = make(SCREEN)
    plan = cache.plan(SCREEN, None, False, first)
    again, made_again = make([dict(i) for i in SCREEN])  # equal, not the same objects
    assert cache.plan([dict(i) for i in SCREEN], None, False, again) is plan
    assert (len(made), len(made_again)) == (1, 0)
    read_only, made_read_only = make(SCREEN, read_only=True)
    assert cache.plan(SCREEN, None, True, read_only) is not plan  # Query.batch's own plan
    assert len(made_read_only) == 1


@pytest.mark.parametrize(
    "item",
    [
        {"method": "POST", "path": "/posts", "body": {"title": "private"}},
        {"path": "/me", "headers": [{"name": "Authorization", "value": "Bearer secret"}]},
        {"method": "POST", "path": "/a", "atomicityGroup": "g", "compensate": {"path": "/a/1"}},
        {"path": "/x" * MAX_KEY_CHARS},
    ],
)
def test_a_batch_with_a_body_headers_a_compensation_or_too_big_is_not_kept(item: Any) -> None:
    cache = PlanCache()
    planned, made = make([item])
    cache.plan([item], None, False, planned)
    cache.plan([item], None, False, planned)
    assert len(made) == 2 and len(cache) == 0


def test_a_refused_batch_is_not_kept_and_is_refused_again() -> None:
    cache = PlanCache()
    bad = [{"path": "/a", "dependsOn": ["nobody"]}]
    for _ in range(2):
        with pytest.raises(BatchRejected):
            cache.plan(bad, None, False, make(bad)[0])
    assert len(cache) == 0


def test_a_large_batch_is_planned_as_it_comes() -> None:
    cache = PlanCache()
    items = [{"path": f"/users/{n}"} for n in range(MAX_ITEMS + 1)]
    cache.plan(items, None, False, make(items)[0])
    assert len(cache) == 0


def test_the_cache_is_bounded() -> None:
    cache = PlanCache(kept=2)
    for n in range(3):
        items = [{"path": f"/users/{n}"}]
        cache.plan(items, None, False, make(items)[0])
    assert len(cache) == 2


async def test_a_screen_sent_twice_is_planned_once_by_the_server(
    aiohttp_client: Any, service: FakeService, upstream_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.route("GET", "/users/1", json={"id": 1})
    service.route("GET", "/posts", json=[])
    planned: list[object] = []
    prepare = planning.prepare
    monkeypatch.setattr(planning, "prepare", lambda *a, **k: planned.append(a) or prepare(*a, **k))
    app = create_app(Settings.from_upstream_urls([upstream_url]))
    graphql = graphql_caller(await aiohttp_client(app))
    query = "mutation($r: [SubRequestInput!]!) { batch(requests: $r) { items { status } } }"
    for _ in range(2):
        answer = await graphql(query, {"r": SCREEN})
        assert answer["data"]["batch"]["items"] == [{"status": 200}, {"status": 200}]
    assert len(planned) == 1 and len(app[PLANS]) == 1
    assert len(service.calls) == 4  # the plan is kept, never the answers
    # The same screen for another user: planned again, its second item known from the first.
    service.route("GET", "/users/2", json={"id": 2})
    other = [{"requestId": "u", "path": "/users/2"}, SCREEN[1]]
    answer = await graphql(query, {"r": other})
    assert answer["data"]["batch"]["items"] == [{"status": 200}, {"status": 200}]
    assert len(planned) == 2 and len(app[PLANS]) == 2 and len(app[PLANS].items) == 3
    assert [c.path for c in service.calls[-2:]] == ["/users/2", "/posts"]
    assert service.calls[-1].query == [("u", "2")]


def prepared(cache: PlanCache, items: Any, read_only: bool = False) -> Plan:
    def planned() -> Plan:
        return planning.prepare(items, None, SETTINGS, read_only=read_only, known=cache.items)

    plan: Plan = cache.plan(items, None, read_only, planned)
    return plan


def test_a_batch_that_changed_a_little_parses_only_what_changed() -> None:
    # The same screen for another user: its plan is not kept, but the items it shares with
    # the first, at the same places, are the very objects parsed then.
    cache = PlanCache()
    first = prepared(cache, SCREEN)
    other = prepared(cache, [{"requestId": "u", "path": "/users/2"}, dict(SCREEN[1])])
    assert other is not first
    assert other.items[1].request is first.items[1].request
    assert other.items[0].request is not first.items[0].request
    assert other.items[0].request.path == "/users/2"
    # An item is known at its own place only: the parsed item holds its index.
    moved = prepared(cache, [{"path": "/x"}, dict(SCREEN[0])])
    assert [i.request.index for i in moved.items] == [0, 1]
    assert moved.items[1].request is not first.items[0].request


@pytest.mark.parametrize(
    "item",
    [
        {"method": "POST", "path": "/posts", "body": {"title": "private"}},
        {"path": "/me", "headers": {"Authorization": "Bearer secret"}},
        {"path": "/x" * 300},
    ],
)
def test_an_item_with_a_body_headers_or_too_long_is_never_kept(item: Any) -> None:
    cache = PlanCache()
    prepared(cache, [item, {"path": "/kept"}])
    assert len(cache.items) == 1  # /kept only


def test_a_kept_item_is_checked_again_by_a_read_only_batch() -> None:
    # A POST parsed for a mutation's batch is still refused in Query.batch, and an item that
    # was refused is never kept: it is refused again, the same way.
    cache = PlanCache()
    post = {"method": "POST", "path": "/posts"}
    prepared(cache, [post])
    with pytest.raises(BatchRejected) as refused:
        prepared(cache, [post], read_only=True)
    assert [p.code.value for p in refused.value.problems] == ["METHOD_NOT_ALLOWED"]
    for _ in range(2):
        with pytest.raises(BatchRejected) as again:
            prepared(cache, [{"path": "/a/../b"}, {"path": "/ok"}])
        assert [p.code.value for p in again.value.problems] == ["FORBIDDEN_TARGET"]
    assert len(cache.items) == 2  # the POST (as a mutation's) and /ok


def test_parsed_items_are_bounded() -> None:
    cache = PlanCache(items_kept=3)
    for n in range(10):
        prepared(cache, [{"path": f"/users/{n}"}])
    assert len(cache.items) == 3
