"""Plans kept for batches sent again and again (issue 15): a screen's repeated reads are
validated and planned once; nothing private is kept; a refused batch is never kept."""

from __future__ import annotations

from typing import Any

import pytest

import gqlbatch.execution.engine as engine
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
        made.append(plan := engine.prepare(items, None, SETTINGS, read_only=read_only))
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
    prepare = engine.prepare
    monkeypatch.setattr(engine, "prepare", lambda *a, **k: planned.append(a) or prepare(*a, **k))
    app = create_app(Settings.from_upstream_urls([upstream_url]))
    graphql = graphql_caller(await aiohttp_client(app))
    query = "mutation($r: [SubRequestInput!]!) { batch(requests: $r) { items { status } } }"
    for _ in range(2):
        answer = await graphql(query, {"r": SCREEN})
        assert answer["data"]["batch"]["items"] == [{"status": 200}, {"status": 200}]
    assert len(planned) == 1 and len(app[PLANS]) == 1
    assert len(service.calls) == 4  # the plan is kept, never the answers
