"""The executor with a fake `fetch`: no HTTP, so scheduling is all that is tested."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gqlbatch import ErrorCode, Settings, State, prepare
from gqlbatch.core.errors import UpstreamTimeout
from gqlbatch.core.result import ItemResult
from gqlbatch.core.wire import Fetched, UpstreamCall, UpstreamResponse
from gqlbatch.execution.executor import Execution, Resumable, execute

SETTINGS = Settings.from_upstream_urls(["http://up.test"])


class FakeFetch:
    """Answers by path: a body (200), a status, an error, or waits on a barrier or gate."""

    def __init__(self, **scripts: Any) -> None:
        self.scripts = scripts
        self.calls: list[UpstreamCall] = []
        self.in_flight = 0
        self.peak = 0

    async def __call__(self, call: UpstreamCall) -> Fetched:
        self.calls.append(call)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            script = self.scripts.get(call.path.strip("/").replace("/", "_"), {})
            if "barrier" in script:
                async with asyncio.timeout(5):
                    await script["barrier"].wait()
            if "gate" in script:
                await script["gate"].wait()
            if "error" in script:
                raise script["error"]
            await asyncio.sleep(0)
            body = script.get("body", {"path": call.path})
            return Fetched(UpstreamResponse(script.get("status", 200), (), body))
        finally:
            self.in_flight -= 1

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self.calls]


async def run(
    items: list[dict[str, Any]],
    fetch: FakeFetch,
    options: Any = None,
    max_concurrency: int = 100,
    deadline_ms: int = 5000,
) -> Execution:
    plan = prepare(items, options, SETTINGS)
    return await execute(plan, fetch, max_concurrency=max_concurrency, deadline_ms=deadline_ms)


def states(execution: Execution) -> list[str]:
    return [r.state.value for r in execution.results]


async def test_independent_items_run_concurrently() -> None:
    # Each upstream handler waits until all three are in flight; run serially, this would hang.
    barrier = asyncio.Barrier(3)
    fetch = FakeFetch(a={"barrier": barrier}, b={"barrier": barrier}, c={"barrier": barrier})
    out = await run([{"path": "/a"}, {"path": "/b"}, {"path": "/c"}], fetch)
    assert states(out) == ["SUCCEEDED"] * 3
    assert fetch.peak == 3


async def test_item_starts_when_its_last_dependency_finishes_without_waves() -> None:
    # slow blocks on a gate; fast -> after_fast must complete while slow is still running.
    gate = asyncio.Event()
    fetch = FakeFetch(slow={"gate": gate})
    task = asyncio.create_task(
        run(
            [
                {"requestId": "slow", "path": "/slow"},
                {"requestId": "fast", "path": "/fast"},
                {"requestId": "after_fast", "path": "/after/{resultOf(fast).path}"},
            ],
            fetch,
        )
    )
    for _ in range(50):
        await asyncio.sleep(0)
        if any(p.startswith("/after") for p in fetch.paths):
            break
    assert any(p.startswith("/after/%2Ffast") for p in fetch.paths)
    gate.set()
    out = await task
    assert states(out) == ["SUCCEEDED"] * 3


async def test_results_come_back_in_client_order_not_completion_order() -> None:
    fetch = FakeFetch()
    out = await run(
        [
            {"requestId": "c", "path": "/c", "dependsOn": ["b"]},
            {"requestId": "b", "path": "/b", "dependsOn": ["a"]},
            {"requestId": "a", "path": "/a"},
        ],
        fetch,
    )
    assert [r.request_id for r in out.results] == ["c", "b", "a"]
    assert [r.index for r in out.results] == [0, 1, 2]
    assert fetch.paths == ["/a", "/b", "/c"]


async def test_failure_skips_dependents_transitively_and_siblings_succeed() -> None:
    fetch = FakeFetch(bad={"status": 500, "body": {"oops": True}})
    out = await run(
        [
            {"requestId": "bad", "path": "/bad"},
            {"requestId": "child", "path": "/child/{resultOf(bad).id}"},
            {"requestId": "grandchild", "path": "/g", "dependsOn": ["child"]},
            {"requestId": "sibling", "path": "/sibling"},
        ],
        fetch,
    )
    bad, child, grandchild, sibling = out.results
    assert (bad.state, bad.status, bad.body, bad.error.code) == (
        State.FAILED,
        500,
        {"oops": True},
        ErrorCode.UPSTREAM_STATUS,
    )
    assert "GET /bad answered 500" in bad.error.message
    assert (child.state, child.error.code, child.failed_dependency) == (
        State.SKIPPED,
        ErrorCode.FAILED_DEPENDENCY,
        "bad",
    )
    assert grandchild.failed_dependency == "child"
    assert "dependency 'bad' failed" in grandchild.error.message
    assert sibling.state is State.SUCCEEDED
    assert fetch.paths == ["/bad", "/sibling"]


async def test_item_error_is_a_value_in_its_slot() -> None:
    fetch = FakeFetch(slow={"error": UpstreamTimeout("GET /slow did not answer within 10 ms")})
    out = await run([{"path": "/slow"}, {"path": "/ok"}], fetch)
    assert out.results[0].error.code is ErrorCode.UPSTREAM_TIMEOUT
    assert out.results[0].attempts == 1
    assert out.results[1].state is State.SUCCEEDED


async def test_reference_not_found_fails_the_item_without_a_call() -> None:
    fetch = FakeFetch(user={"body": {"id": 1}})
    out = await run(
        [
            {"requestId": "user", "path": "/user"},
            {"requestId": "x", "path": "/x/{resultOf(user).profile.id}"},
        ],
        fetch,
    )
    x = out.results[1]
    assert (x.state, x.error.code, x.attempts) == (State.FAILED, ErrorCode.REFERENCE_NOT_FOUND, 0)
    assert "'user' result has no key 'profile' (keys: 'id')" in x.error.message
    assert fetch.paths == ["/user"]


async def test_substituted_values_cannot_add_path_segments() -> None:
    fetch = FakeFetch(a={"body": {"id": "../admin", "dot": "..", "enc": "%2e%2e"}})
    out = await run(
        [
            {"requestId": "a", "path": "/a"},
            {"path": "/users/{resultOf(a).id}"},
            {"path": "/users/{resultOf(a).dot}"},
            {"path": "/users/{resultOf(a).enc}"},
        ],
        fetch,
    )
    # "../admin" would be sent as "..%2Fadmin", which a server that decodes %2F reads as a
    # step up: refused like the dot segments themselves.
    assert [r.error.code for r in out.results[1:]] == [ErrorCode.FORBIDDEN_TARGET] * 3
    assert fetch.paths == ["/a"]


async def test_sequential_mode_runs_one_at_a_time_in_list_order() -> None:
    fetch = FakeFetch()
    out = await run(
        [{"path": "/a"}, {"path": "/b"}, {"path": "/c", "dependsOn": ["3"]}, {"path": "/d"}],
        fetch,
        {"mode": "SEQUENTIAL"},
    )
    assert states(out) == ["SUCCEEDED"] * 4
    assert fetch.paths == ["/a", "/b", "/d", "/c"]
    assert fetch.peak == 1


async def test_sequential_mode_does_not_skip_after_an_unrelated_failure() -> None:
    fetch = FakeFetch(a={"status": 404})
    out = await run([{"path": "/a"}, {"path": "/b"}], fetch, {"mode": "SEQUENTIAL"})
    assert states(out) == ["FAILED", "SUCCEEDED"]


async def test_on_error_stop_starts_nothing_new_after_a_failure() -> None:
    fetch = FakeFetch(a={"status": 500})
    out = await run(
        [
            {"requestId": "a", "path": "/a"},
            {"path": "/b", "dependsOn": ["a"]},
            {"path": "/c"},
            {"path": "/d"},
        ],
        fetch,
        {"mode": "SEQUENTIAL", "onError": "STOP"},
    )
    assert states(out) == ["FAILED", "SKIPPED", "CANCELLED", "CANCELLED"]
    assert out.results[2].error.code is ErrorCode.CANCELLED
    assert "item 'a' failed and onError is STOP" in out.results[2].error.message
    assert fetch.paths == ["/a"]


async def test_deadline_cancels_unfinished_items_and_keeps_finished_ones() -> None:
    never = asyncio.Event()
    fetch = FakeFetch(hang={"gate": never})
    out = await run(
        [
            {"path": "/ok"},
            {"requestId": "hang", "path": "/hang"},
            {"path": "/after", "dependsOn": ["hang"]},
        ],
        fetch,
        deadline_ms=50,
    )
    assert states(out) == ["SUCCEEDED", "CANCELLED", "CANCELLED"]
    assert out.results[0].body == {"path": "/ok"}
    assert {r.error.code for r in out.results[1:]} == {ErrorCode.TIMEOUT}
    assert "deadline of 50 ms" in out.results[1].error.message


async def test_concurrency_cap_limits_calls_in_flight() -> None:
    fetch = FakeFetch()
    out = await run([{"path": f"/p{i}"} for i in range(10)], fetch, max_concurrency=2)
    assert states(out) == ["SUCCEEDED"] * 10
    assert fetch.peak == 2


@pytest.mark.parametrize(
    "items",
    [
        [{"path": "/p", "forEach": list(range(6))}, {"path": "/q"}],
        [{"requestId": "l", "path": "/list"}, {"path": "/p/{item}", "forEach": "{resultOf(l)}"}],
    ],
    ids=["literal-forEach", "placeholder-forEach"],
)
async def test_concurrency_cap_holds_for_fan_outs(items: list[dict[str, Any]]) -> None:
    # The cap holds for a fan-out's elements too, whether its list is literal or comes from a
    # placeholder (not known before it runs).
    fetch = FakeFetch(list={"body": list(range(6))})
    out = await run(items, fetch, max_concurrency=2)
    assert states(out) == ["SUCCEEDED"] * 2
    assert len(fetch.calls) == 7 and fetch.peak == 2


async def test_a_bug_fails_its_item_and_is_logged_under_the_id_it_shows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # DESIGN §9: the siblings of an item that hit a bug keep their results, because their
    # writes may already have run; the bug itself is logged, with its traceback, once.
    fetch = FakeFetch(a={"error": RuntimeError("bug")})
    out = await run(
        [
            {"requestId": "a", "path": "/a"},
            {"path": "/b", "dependsOn": ["a"]},
            {"requestId": "c", "method": "POST", "path": "/c"},
        ],
        fetch,
    )
    assert states(out) == ["FAILED", "SKIPPED", "SUCCEEDED"]
    error = out.results[0].error
    assert error is not None and error.code is ErrorCode.INTERNAL_ERROR
    assert "bug" not in error.message  # the client sees an id, never the exception
    (record,) = [r for r in caplog.records if r.name == "gqlbatch.errors"]
    assert record.exc_info is not None and record.exc_info[1] is not None
    error_id = error.message.split("id ")[1].split()[0]
    assert error_id in record.getMessage() and str(record.exc_info[1]) == "bug"


async def test_critical_path_is_the_longest_chain_of_durations() -> None:
    fetch = FakeFetch()
    out = await run(
        [
            {"requestId": "a", "path": "/a"},
            {"requestId": "b", "path": "/b", "dependsOn": ["a"]},
            {"path": "/c"},
        ],
        fetch,
    )
    a, b, c = (r.duration_ms for r in out.results)
    assert out.critical_path_ms == pytest.approx(max(a + b, c))


async def test_a_resumable_run_keeps_settled_items_and_marks_each_write_before_sending() -> None:
    fetch = FakeFetch()
    plan = prepare(
        [
            {"requestId": "a", "path": "/a"},
            {"requestId": "w", "method": "POST", "path": "/w/{resultOf(a).n}"},
            {"requestId": "r", "path": "/r", "dependsOn": ["w"]},
            {"requestId": "each", "method": "DELETE", "path": "/d/{item}", "forEach": [1, 2]},
        ],
        None,
        SETTINGS,
    )
    kept = ItemResult(request_id="a", index=0, state=State.SUCCEEDED, status=200, body={"n": 7})
    marked: list[tuple[int, list[str]]] = []

    async def before_write(index: int) -> None:
        marked.append((index, fetch.paths))  # what had been sent when the mark was made

    told: list[str] = []
    execution = await execute(
        plan,
        fetch,
        max_concurrency=10,
        deadline_ms=5000,
        on_result=lambda r: told.append(r.request_id),
        resumable=Resumable({0: kept}, before_write),
    )
    assert execution.results[0] is kept and "a" not in told  # not run again, not told again
    assert "/a" not in fetch.paths and "/w/7" in fetch.paths  # its result still feeds w
    # Each write is marked before it is sent (each element of a forEach too); reads are not.
    assert sorted(index for index, _ in marked) == [1, 3, 3]
    first_sent = {index: sent for index, sent in reversed(marked)}
    assert "/w/7" not in first_sent[1]
    assert not [p for p in first_sent[3] if p.startswith("/d/")]
    assert sorted(told) == ["each", "r", "w"]


async def test_a_cancelled_execution_leaves_no_item_running() -> None:
    # A job's run is cancelled when its process stops. Its items must stop with it: an item
    # left running would settle later with what the stop did to its call, and report it.
    gate = asyncio.Event()
    fetch = FakeFetch(w={"gate": gate})
    told: list[str] = []
    plan = prepare([{"requestId": "w", "method": "POST", "path": "/w"}], None, SETTINGS)
    running = asyncio.create_task(
        execute(
            plan,
            fetch,
            max_concurrency=1,
            deadline_ms=5000,
            on_result=lambda r: told.append(r.request_id),
        )
    )
    while not fetch.in_flight:
        await asyncio.sleep(0)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert fetch.in_flight == 0  # the call was cancelled, not left waiting
    gate.set()
    await asyncio.sleep(0)
    assert told == []


async def test_a_bug_past_an_items_own_work_is_raised_and_stops_the_rest() -> None:
    # A listener that raises (on_result) is the batch's bug, not an item's failure: execute
    # raises it, and the item still waiting on its gate is cancelled, not left running.
    gate = asyncio.Event()
    fetch = FakeFetch(slow={"gate": gate})
    plan = prepare([{"path": "/fast"}, {"path": "/slow"}], None, SETTINGS)

    def listener(result: Any) -> None:
        raise RuntimeError(f"listener broke on {result.request_id}")

    with pytest.raises(RuntimeError, match="listener broke on 0"):
        await execute(plan, fetch, max_concurrency=10, deadline_ms=5000, on_result=listener)
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("gqlbatch:")] == []
