"""The compiled path for `batch` results (issue 15) gives exactly what graphql-core gives.

Random selections on BatchResult (aliases, inline and named fragments on the result types and
on the unions that hold them, `__typename`, `item`, `body(select:)` right and wrong,
`elements`, `error`, `stats`) run through the schema twice: with the compiled path, and
without it, where graphql-core executes every field. Both write the same outcome (handed to
them as already run), and the two answers must be the same bytes, errors included. CI runs
it with a fixed seed (the "ci" hypothesis profile of conftest.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gqlbatch.doors.graphql.operations as schema_module
import gqlbatch.doors.graphql.writers as writers_module
from gqlbatch import Settings
from gqlbatch.core.errors import ErrorCode
from gqlbatch.core.openapi import Contract
from gqlbatch.core.result import (
    BatchOutcome,
    BatchStats,
    ElementResult,
    ErrorInfo,
    ItemResult,
    Rollback,
    RollbackState,
    Route,
    State,
)
from gqlbatch.core.wire import BodyEncoding, UpstreamResponse
from gqlbatch.doors.graphql.context import Context
from gqlbatch.doors.graphql.schema import answer_types, build_schema

OUTCOME = BatchOutcome(
    results=(
        ItemResult(
            request_id="a",
            index=0,
            state=State.SUCCEEDED,
            status=200,
            headers=(("Content-Type", "application/json"), ("ETag", '"v1"')),
            body={"id": 1, "name": "Ada", "tags": ["x", "y"], "team": {"name": "core"}},
            body_encoding=BodyEncoding.JSON,
            duration_ms=1.23456,
            started_ms=0.1,
            attempts=2,
            coalesced=True,
            bulk_call="GET /users?id=1&id=2",
            rollback=Rollback(RollbackState.ROLLED_BACK, "undone", 204),
        ),
        ItemResult(
            request_id="each",
            index=1,
            state=State.SUCCEEDED,
            status=207,
            body=[{"id": 1, "name": "Ada"}, {"error": "gone"}],
            body_encoding=BodyEncoding.JSON,
            duration_ms=3.0,
            started_ms=1.4,
            attempts=2,
            elements=(
                ElementResult(index=0, status=200, coalesced=True),
                ElementResult(
                    index=1,
                    status=404,
                    error=ErrorInfo(ErrorCode.UPSTREAM_STATUS, "GET /users/9 answered 404"),
                    bulk_call="GET /users?id=9",
                ),
            ),
        ),
        ItemResult(
            request_id="b",
            index=2,
            state=State.FAILED,
            status=404,
            body={"error": "no such user"},
            body_encoding=BodyEncoding.JSON,
            error=ErrorInfo(ErrorCode.UPSTREAM_STATUS, "GET /users/7 answered 404"),
            duration_ms=0.5,
            attempts=1,
        ),
        ItemResult(
            request_id="c",
            index=3,
            state=State.SKIPPED,
            error=ErrorInfo(ErrorCode.FAILED_DEPENDENCY, "not run: dependency 'b' failed"),
            failed_dependency="b",
            started_ms=0.6,
        ),
        ItemResult(
            request_id="d",
            index=4,
            state=State.CANCELLED,
            error=ErrorInfo(ErrorCode.TIMEOUT, "the batch deadline passed"),
            body="partial text",
            body_encoding=BodyEncoding.TEXT,
        ),
    ),
    stats=BatchStats(
        sub_requests=5,
        calls_requested=6,
        upstream_calls=3,
        calls_saved=3,
        saved_by_dedupe=2,
        saved_by_bulk=1,
        wall_ms=4.56789,
        critical_path_ms=3.2,
        response_bytes=512,
        retries=1,
    ),
)

REQUESTS = '[{requestId: "a", path: "/a"}]'
UNIONS = ["BatchEvent", "JobEvent"]
ABSTRACT = ["ItemResult", *UNIONS]
RESULT_TYPES = ["Succeeded", "Failed", "Skipped", "Cancelled", *ABSTRACT]
ITEM_LEAVES = [
    "requestId",
    "index",
    "state",
    "status",
    "bodyEncoding",
    "durationMs",
    "startedMs",
    "attempts",
    "coalesced",
    "bulkCall",
    "__typename",
]
ITEM_OBJECTS = {
    "error": ["code", "message", "__typename"],
    "headers": ["name", "value", "__typename"],
    "rollback": ["state", "status", "message", "__typename"],
    "elements": ["index", "status", "coalesced", "bulkCall", "__typename", "error { code }"],
}
STATS = [
    "subRequests",
    "callsRequested",
    "upstreamCalls",
    "callsSaved",
    "savedByDedupe",
    "savedByBulk",
    "wallMs",
    "criticalPathMs",
    "responseBytes",
    "retries",
    "__typename",
]
SELECTS = [
    None,
    '["id"]',
    '["name", "team.name", "nope"]',
    '["[0].name", "[*].id"]',
    '["tags[*]"]',
    '["a["]',  # does not parse: INVALID_INPUT at that field
    "[" + ", ".join(f'"f{i}"' for i in range(65)) + "]",  # over max_select_paths
    "[]",
]


def aliased(name: str) -> st.SearchStrategy[str]:
    # One alias per field name, so that two selections under one key never conflict.
    return st.sampled_from([name, f"{name.strip('_')}Alias: {name}"])


def item_field() -> st.SearchStrategy[str]:
    leaf = st.sampled_from(ITEM_LEAVES).flatmap(aliased)
    objects = st.sampled_from(sorted(ITEM_OBJECTS)).flatmap(
        lambda name: st.lists(st.sampled_from(ITEM_OBJECTS[name]), min_size=1, max_size=4).map(
            lambda inner: f"{name} {{ {' '.join(inner)} }}"
        )
    )
    body = st.sampled_from(range(len(SELECTS))).map(_body)
    skipped = st.just("... on Skipped { failedDependency }")
    return st.one_of(leaf, objects, body, skipped)


def _body(n: int) -> str:
    # Each `select` under its own key: one key with two argument lists does not validate.
    select = SELECTS[n]
    return "body" if select is None else f"body{n}: body(select: {select})"


def _fragment(type_name: str, selection: str) -> str:
    # A union has no fields of its own: its members' are reached through ItemResult.
    if type_name in UNIONS:
        return f"... on {type_name} {{ ... on ItemResult {{ {selection} }} }}"
    return f"... on {type_name} {{ {selection} }}"


def item_selection(depth: int = 2, types: list[str] = RESULT_TYPES) -> st.SearchStrategy[str]:
    fields = st.lists(item_field(), min_size=1, max_size=5)
    if depth == 0:
        return fields.map(" ".join)
    # Below a fragment on one result type, a fragment on another could never apply, which
    # does not validate: nested fragments are on the abstract types.
    fragment = st.tuples(st.sampled_from(types), item_selection(depth - 1, ABSTRACT)).map(
        lambda t: _fragment(*t)
    )
    return st.lists(st.one_of(item_field(), fragment), min_size=1, max_size=5).map(" ".join)


def batch_field() -> st.SearchStrategy[str]:
    items = item_selection().map(lambda s: f"items {{ {s} }}")
    item = st.tuples(st.sampled_from(["a", "b", "c", "d", "each", "zz"]), item_selection()).map(
        lambda t: f'item_{t[0]}: item(requestId: "{t[0]}") {{ {t[1]} }}'
    )
    stats = st.lists(st.sampled_from(STATS), min_size=1, max_size=4).map(
        lambda s: f"stats {{ {' '.join(s)} }}"
    )
    flags = st.sampled_from(["rolledBack", "replayed", "__typename", "flag: rolledBack"])
    return st.one_of(items, item, stats, flags)


DOCUMENTS = st.tuples(
    st.lists(batch_field(), min_size=1, max_size=5),
    st.sampled_from(RESULT_TYPES),
    item_selection(1, ABSTRACT),
    st.sampled_from(["batch", "screen: batch"]),
).map(
    lambda t: (
        f"mutation Doc {{ {t[3]}(requests: {REQUESTS}) {{ {' '.join(t[0])} ...Named }} }}\n"
        f"fragment Named on BatchResult {{ items {{ ...Item }} }}\n"
        f"fragment Item on {t[1]} {{ {_fragment('ItemResult', t[2]) if t[1] in UNIONS else t[2]} }}"
    )
)

COMPILED = build_schema()
REFERENCE = build_schema(compiled=False)


def answer(schema: Any, document: str, outcome: BatchOutcome) -> str:
    """The response's bytes, as the HTTP view writes them (data, then formatted errors)."""
    settings = Settings.from_upstream_urls(["http://127.0.0.1:9"])

    async def send(_call: Any) -> Any:
        raise AssertionError("nothing is sent: the outcome is handed over as already run")

    key = "screen" if "screen: batch" in document else "batch"
    context = Context(settings, send, finished={key: outcome})
    result = asyncio.run(schema.execute(document, context_value=context))
    errors = [e.formatted for e in result.errors or []]
    return json.dumps({"data": result.data, "errors": errors})


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
ERRORS = st.builds(ErrorInfo, st.sampled_from(list(ErrorCode)), st.text(max_size=12))
STATUSES = st.none() | st.integers(100, 599)
MS = st.floats(0, 1e6, allow_nan=False)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[Any, BodyEncoding]:
    encoding = draw(st.sampled_from(list(BodyEncoding)))
    if encoding is BodyEncoding.JSON:
        return draw(JSON_VALUES), encoding
    if encoding is BodyEncoding.EMPTY:
        return None, encoding
    return draw(st.text(max_size=12)), encoding  # TEXT, or BASE64's text


@st.composite
def item_results(draw: st.DrawFn, index: int) -> ItemResult:
    """An item's result in any state, as the engine could make it: a failed one with its
    error, a skipped one with the dependency it names, a forEach one with its elements."""
    state = draw(st.sampled_from(list(State)))
    body, encoding = draw(bodies())
    elements = draw(
        st.none()
        | st.lists(
            st.builds(
                ElementResult,
                index=st.just(0),
                status=STATUSES,
                error=st.none() | ERRORS,
                coalesced=st.booleans(),
                bulk_call=st.none() | st.text(max_size=8),
            ),
            max_size=3,
        ).map(lambda found: tuple(dataclasses.replace(e, index=n) for n, e in enumerate(found)))
    )
    return ItemResult(
        request_id=f"r{index}",
        index=index,
        state=state,
        status=draw(STATUSES),
        headers=tuple(
            draw(
                st.lists(
                    st.tuples(st.text(min_size=1, max_size=6), st.text(max_size=6)), max_size=2
                )
            )
        ),
        body=body,
        body_encoding=encoding,
        error=None if state is State.SUCCEEDED else draw(ERRORS),
        duration_ms=draw(MS),
        started_ms=draw(MS),
        attempts=draw(st.integers(0, 5)),
        coalesced=draw(st.booleans()),
        bulk_call=draw(st.none() | st.text(max_size=8)),
        failed_dependency="r0" if state is State.SKIPPED else None,
        elements=elements,
        rollback=draw(
            st.none()
            | st.builds(
                Rollback, st.sampled_from(list(RollbackState)), st.text(max_size=8), STATUSES
            )
        ),
    )


@st.composite
def outcomes(draw: st.DrawFn) -> BatchOutcome:
    count = draw(st.integers(1, 4))
    return BatchOutcome(
        results=tuple(draw(item_results(n)) for n in range(count)),
        stats=OUTCOME.stats,
        replayed=draw(st.booleans()),
    )


@given(DOCUMENTS, outcomes())
def test_the_compiled_path_gives_what_graphql_core_gives(
    document: str, outcome: BatchOutcome
) -> None:
    # Issue 26: generated documents over one fixed outcome left the outcomes' own variety
    # (states, codes, bodies, forEach elements) untested; both are generated now.
    assert answer(COMPILED, document, outcome) == answer(REFERENCE, document, outcome)


def test_the_fixed_outcome_still_reads_the_same() -> None:
    document = 'mutation { batch(requests: [{path: "/a"}]) { items { requestId state } } }'
    assert answer(COMPILED, document, OUTCOME) == answer(REFERENCE, document, OUTCOME)


def test_the_compiled_path_writes_without_graphql_cores_resolvers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Equal answers prove nothing if the compiled path never ran: count the conversion to
    # Strawberry values that only graphql-core's path makes.
    calls: list[BatchOutcome] = []
    convert = schema_module.to_batch_result
    monkeypatch.setattr(schema_module, "to_batch_result", lambda o: calls.append(o) or convert(o))
    document = 'mutation { batch(requests: [{path: "/a"}]) { items { status } } }'
    assert json.loads(answer(COMPILED, document, OUTCOME))["data"]["batch"]["items"][0] == {
        "status": 200
    }
    assert calls == []
    answer(REFERENCE, document, OUTCOME)
    assert calls == [OUTCOME]


def test_an_answer_it_cannot_write_is_left_to_graphql_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A null where the schema says non-null is never made by the engine; if it were, the
    # compiled writers stop and graphql-core writes the same outcome, with its error.
    broken = BatchOutcome(
        results=(ItemResult(request_id=None, index=0, state=State.SUCCEEDED),),  # type: ignore[arg-type]
        stats=OUTCOME.stats,
    )
    document = 'mutation { batch(requests: [{path: "/a"}]) { items { requestId } } }'
    compiled, reference = (answer(s, document, broken) for s in (COMPILED, REFERENCE))
    assert _without_error_ids(compiled) == _without_error_ids(reference)
    assert '"code": "INTERNAL_ERROR"' in compiled  # masked: graphql-core's TypeError is ours


def test_when_graphql_core_writes_instead_the_batch_is_not_run_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A writer that breaks (standing in for a bug) after the batch ran: graphql-core writes
    # the answer from the outcome it is handed, and the upstream saw one call, not two.
    def broken(item: ItemResult) -> Any:
        raise RuntimeError("a bug in a writer")

    monkeypatch.setitem(writers_module._ITEM_LEAVES, "status", broken)
    sent: list[Any] = []

    async def send(call: Any) -> UpstreamResponse:
        sent.append(call)
        return UpstreamResponse(200, (("Content-Type", "application/json"),), {"id": 1})

    schema = build_schema()  # a fresh compiler: its writers are built with the broken leaf
    context = Context(Settings.from_upstream_urls(["http://127.0.0.1:9"]), send)
    document = 'mutation { batch(requests: [{path: "/a"}]) { items { status body } } }'
    result = asyncio.run(schema.execute(document, context_value=context))
    assert result.errors is None
    assert result.data == {"batch": {"items": [{"status": 200, "body": {"id": 1}}]}}
    assert len(sent) == 1


def test_a_querys_batches_all_settle_before_graphql_core_writes_instead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A query's batch fields run together. When one's writer breaks, graphql-core must find
    # the other finished too, not start it a second time.
    # `b`'s call is held until `a`'s writer has broken: `b` is still running then.
    a_broke = asyncio.Event()

    def broken(item: ItemResult) -> Any:
        a_broke.set()
        raise RuntimeError("a bug in a writer")

    monkeypatch.setitem(writers_module._ITEM_LEAVES, "status", broken)
    sent: list[str] = []

    async def send(call: Any) -> UpstreamResponse:
        sent.append(call.path)
        if call.path == "/b":
            await a_broke.wait()
        return UpstreamResponse(200, (("Content-Type", "application/json"),), {"at": call.path})

    schema = build_schema()
    context = Context(Settings.from_upstream_urls(["http://127.0.0.1:9"]), send)
    document = """query {
      a: batch(requests: [{path: "/a"}]) { items { status } }
      b: batch(requests: [{path: "/b"}]) { items { body } }
    }"""
    result = asyncio.run(schema.execute(document, context_value=context))
    assert result.errors is None
    assert result.data == {
        "a": {"items": [{"status": 200}]},
        "b": {"items": [{"body": {"at": "/b"}}]},
    }
    assert sorted(sent) == ["/a", "/b"]


def test_variables_that_graphql_core_refuses_get_its_errors() -> None:
    document = "mutation($r: [SubRequestInput!]!) { batch(requests: $r) { items { status } } }"
    for variables in (
        {"r": [{"path": "/a", "method": "FETCH"}]},
        {"r": [{"path": 7}]},
        {"r": [{"nope": "/a"}]},
        {},
        {"r": [{"path": "/a", "timeoutMs": 2**40}]},
    ):
        compiled, reference = (
            asyncio.run(
                schema.execute(
                    document,
                    variable_values=variables,
                    context_value=Context(
                        Settings.from_upstream_urls(["http://127.0.0.1:9"]),
                        _never,
                        finished={"batch": OUTCOME},
                    ),
                )
            )
            for schema in (COMPILED, REFERENCE)
        )
        assert compiled.errors and reference.errors
        assert [e.formatted for e in compiled.errors] == [e.formatted for e in reference.errors]


def _without_error_ids(text: str) -> str:
    # An internal error's id is random per error: "Quote id 6b10c2814b02 ...".
    return re.sub(r"\b[0-9a-f]{12}\b", "<id>", text)


async def _never(_call: Any) -> Any:
    raise AssertionError("nothing is sent")


# ------------------------------------------------------------------------------------------
# Typed `data`: the types of tests/openapi/blog.yaml, on answers that keep to it and on some
# that do not (graphql-core then writes them, and says why).

BLOG = Path(__file__).parent / "openapi" / "blog.yaml"
TYPES = answer_types({"blog": Contract.from_text(BLOG.read_text(encoding="utf-8"), "blog")})
TYPED_COMPILED = build_schema(answers=TYPES)
TYPED_REFERENCE = build_schema(answers=TYPES, compiled=False)

ADA = {"id": 1, "name": "Ada", "role": "ADMIN", "big-id": 2**40, "@type": "person"}
ADA |= {"labels": {"team": "core"}, "address": {"city": "London", "status": "x"}}
GRACE = {"id": 2, "name": "Grace", "role": "reader", "email": "grace@example.com"}
POST = {"id": 7, "title": "Notes", "author": ADA, "editor": None, "tags": ["a"], "score": 2}
THREADS = [{"id": 1, "body": "first", "replies": [{"id": 2, "body": "re", "replies": []}]}]


def _answered(index: int, path: str, body: Any, **kw: Any) -> ItemResult:
    fields: dict[str, Any] = {"status": 200, "body_encoding": BodyEncoding.JSON} | kw
    route = Route("blog", "GET", path)
    return ItemResult(
        request_id=f"i{index}", index=index, state=State.SUCCEEDED, body=body, route=route, **fields
    )


def typed_outcome(*extra: ItemResult) -> BatchOutcome:
    elements = (
        ElementResult(index=0, status=200),
        ElementResult(index=1, status=404, error=ErrorInfo(ErrorCode.UPSTREAM_STATUS, "404")),
    )
    results = (
        _answered(0, "/users/1", ADA),
        _answered(1, "/users", [ADA, GRACE]),
        _answered(2, "/posts/7", POST),
        _answered(3, "/posts/7/comments", THREADS),
        _answered(
            4,
            "/users/1",
            [GRACE, {"error": "gone"}],
            elements=elements,
            status=207,
        ),
        _answered(5, "/version", "1.0"),
        _answered(6, "/nowhere", {"id": 1}),
        *extra,
    )
    return BatchOutcome(results=results, stats=OUTCOME.stats)


MEMBERS = {
    "User": ["id", "name", "email", "role", "big_id", "type", "labels", "address { city status }"],
    "UserList": ["items { id name role }", "items { email }"],
    "Post": ["id", "title", "score", "tags", "author { name role }", "editor { name }"],
    "CommentList": ["items { body replies { body replies { id } } }"],
    "UserEach": ["items { name }", "items { id email }"],
    "GetStatsResponse": ["users", "since"],
}
DATA = st.lists(
    st.sampled_from(sorted(MEMBERS)).flatmap(
        lambda member: st.lists(st.sampled_from(MEMBERS[member]), min_size=1, max_size=3).map(
            lambda fields: f"... on {member} {{ {' '.join(fields)} }}"
        )
    ),
    min_size=1,
    max_size=4,
).map(lambda fragments: f"data {{ __typename {' '.join(fragments)} }}")
TYPED_DOCUMENTS = st.tuples(DATA, st.sampled_from(["requestId", "status", "__typename"])).map(
    lambda t: (
        f"mutation Typed {{ batch(requests: {REQUESTS}) {{ items {{ {t[1]} "
        f"... on Succeeded {{ {t[0]} }} }} }} }}"
    )
)


@given(TYPED_DOCUMENTS)
def test_typed_data_on_the_compiled_path_is_what_graphql_core_gives(document: str) -> None:
    outcome = typed_outcome()
    assert answer(TYPED_COMPILED, document, outcome) == answer(TYPED_REFERENCE, document, outcome)


@pytest.mark.parametrize(
    "body",
    [
        {"id": 3, "role": "ADMIN"},  # no name: UPSTREAM_BAD_RESPONSE, where graphql-core puts it
        {"id": 3, "name": "Guest", "role": "guest"},  # not one of the document's roles
        {"id": 3.5, "name": "X", "role": "ADMIN"},  # not an ID (a string or a whole number)
    ],
)
def test_answers_that_break_their_document_are_written_by_graphql_core(body: Any) -> None:
    outcome = typed_outcome(_answered(7, "/users/3", body))
    document = (
        f"mutation Typed {{ batch(requests: {REQUESTS}) {{ items {{ requestId "
        "... on Succeeded { data { ... on User { id name role } } } } } }"
    )
    compiled = answer(TYPED_COMPILED, document, outcome)
    assert compiled == answer(TYPED_REFERENCE, document, outcome)
    assert '"errors": [{' in compiled
