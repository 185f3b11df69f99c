"""parse_batch and the planner's checks, through `prepare`: every problem, before anything runs.

The "abuse" section is the hostile-input table: each input gets exactly its error code.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from gqlbatch import BatchRejected, ErrorCode, Settings, prepare
from gqlbatch.core.request import Mode, OnError
from gqlbatch.core.wire import Method

SETTINGS = Settings.from_upstream_urls(["http://users.test"], max_items=5)
TWO = Settings.from_upstream_urls(["users=http://users.test", "orders=http://orders.test"])


def rejection(
    items: Any, options: Any = None, settings: Settings = SETTINGS, read_only: bool = False
) -> BatchRejected:
    with pytest.raises(BatchRejected) as info:
        prepare(items, options, settings, read_only=read_only)
    return info.value


def test_defaults_fill_in_id_method_and_upstream() -> None:
    plan = prepare(
        [{"path": "/users/1"}, {"requestId": "b", "method": "post", "path": "/u"}], None, SETTINGS
    )
    first, second = (p.request for p in plan.items)
    assert (first.request_id, first.method, first.upstream) == ("0", Method.GET, "default")
    assert (second.request_id, second.method) == ("b", Method.POST)
    assert plan.options.mode is Mode.PARALLEL and plan.options.on_error is OnError.CONTINUE


def test_query_in_path_and_query_object_merge_and_lists_repeat() -> None:
    plan = prepare(
        [{"path": "/users?a=1", "query": {"id": [1, 2], "on": True, "skip": None}}], None, SETTINGS
    )
    assert plan.items[0].request.query == (("a", "1"), ("id", "1"), ("id", "2"), ("on", "true"))


def test_headers_accept_a_list_or_an_object() -> None:
    plan = prepare(
        [
            {"path": "/a", "headers": [{"name": "X-A", "value": "1"}]},
            {"path": "/b", "headers": {"X-B": "2"}},
        ],
        None,
        SETTINGS,
    )
    assert [p.request.headers for p in plan.items] == [(("X-A", "1"),), (("X-B", "2"),)]


def test_every_problem_is_listed_at_once() -> None:
    exc = rejection(
        [
            {"requestId": "a", "path": "/a", "dependsOn": ["b"]},
            {"requestId": "b", "path": "/b/{resultOf(a).id}"},
            {"requestId": "a", "path": "/c"},
            {"requestId": "d", "path": "/d", "dependsOn": ["ghost"]},
            {"requestId": "e", "path": "users"},
        ]
    )
    assert sorted((p.code, p.index, p.field) for p in exc.problems) == sorted(
        [
            (ErrorCode.DEPENDENCY_CYCLE, 0, "dependsOn"),
            (ErrorCode.DUPLICATE_REQUEST_ID, 2, "requestId"),
            (ErrorCode.UNKNOWN_DEPENDENCY, 3, "dependsOn"),
            (ErrorCode.FORBIDDEN_TARGET, 4, "path"),
        ]
    )
    assert exc.code is ErrorCode.INVALID_INPUT


def test_cycle_is_reported_with_its_path() -> None:
    exc = rejection(
        [
            {"requestId": "a", "path": "/a", "dependsOn": ["c"]},
            {"requestId": "b", "path": "/b/{resultOf(a).id}"},
            {"requestId": "c", "path": "/c", "dependsOn": ["b"]},
        ]
    )
    (problem,) = exc.problems
    assert problem.code is ErrorCode.DEPENDENCY_CYCLE
    assert exc.code is ErrorCode.DEPENDENCY_CYCLE
    cycle = problem.message.split(": ", 1)[1].split(" -> ")
    assert cycle[0] == cycle[-1] and sorted(cycle[:-1]) == ["a", "b", "c"]
    # Read as "depends on": each id's successor in the message is one of its dependencies.
    deps = {"a": {"c"}, "b": {"a"}, "c": {"b"}}
    assert all(nxt in deps[cur] for cur, nxt in pairwise(cycle))


def test_self_dependency_is_a_cycle() -> None:
    exc = rejection([{"requestId": "a", "path": "/a/{resultOf(a).id}"}])
    assert exc.problems[0].message.endswith("a -> a")


def test_placeholder_to_unknown_id_and_forEach_words_outside_forEach() -> None:
    exc = rejection(
        [{"path": "/x", "query": {"q": "{resultOf(nope).id}"}, "body": {"i": "{item.id}"}}]
    )
    assert [(p.code, p.field) for p in exc.problems] == [
        (ErrorCode.INVALID_REFERENCE, "query.q"),
        (ErrorCode.INVALID_REFERENCE, "body"),
    ]
    assert "'nope', which is not a requestId in this batch (known: '0')" in exc.problems[0].message


def test_placeholder_dependencies_are_implicit_edges() -> None:
    plan = prepare(
        [
            {"requestId": "c", "path": "/c/{resultOf(a).id}", "headers": {"X": "{statusOf(b)}"}},
            {"requestId": "a", "path": "/a"},
            {"requestId": "b", "path": "/b", "body": {"x": "{headerOf(a, Location)}"}},
        ],
        None,
        SETTINGS,
    )
    assert [p.depends_on for p in plan.items] == [("a", "b"), (), ("a",)]
    assert [plan.items[i].request_id for i in plan.order] == ["a", "b", "c"]


def test_independent_items_keep_the_client_order() -> None:
    plan = prepare([{"requestId": r, "path": "/x"} for r in ("z", "a", "m")], None, SETTINGS)
    assert plan.order == (0, 1, 2)


def test_limit_rejects_before_looking_at_items() -> None:
    exc = rejection([{"path": "/a"}] * 6)
    assert [p.code for p in exc.problems] == [ErrorCode.BATCH_TOO_LARGE]
    assert "at most 5 requests, this one has 6" in str(exc)


def test_read_only_batch_allows_only_get_and_head() -> None:
    exc = rejection(
        [{"path": "/a", "method": "HEAD"}, {"path": "/b", "method": "DELETE"}], read_only=True
    )
    assert [(p.code, p.index) for p in exc.problems] == [(ErrorCode.METHOD_NOT_ALLOWED, 1)]


def test_several_upstreams_need_a_name() -> None:
    exc = rejection(
        [
            {"path": "/a"},
            {"path": "/b", "upstream": "orders"},
            {"path": "/c", "upstream": "billing"},
        ],
        settings=TWO,
    )
    assert [(p.code, p.index) for p in exc.problems] == [
        (ErrorCode.UNKNOWN_UPSTREAM, 0),
        (ErrorCode.UNKNOWN_UPSTREAM, 2),
    ]
    assert "known: orders, users" in exc.problems[1].message


def test_bad_options_are_problems_too() -> None:
    exc = rejection([{"path": "/a"}], {"mode": "WAVES", "timeoutMs": -1, "extra": 1})
    assert [p.field for p in exc.problems] == ["options.extra", "options.mode", "options.timeoutMs"]


def test_problem_str_says_where() -> None:
    exc = rejection([{"requestId": "x", "path": "nope"}])
    assert str(exc.problems[0]).startswith("item 0 ('x') path: path must start with '/'")


# --------------------------------------------------------------------------------------------
# Abuse: hostile input. Every row is rejected whole with exactly this code.

HOSTILE: list[tuple[str, Any, ErrorCode]] = [
    ("not-a-list", {"path": "/a"}, ErrorCode.INVALID_INPUT),
    ("empty", [], ErrorCode.INVALID_INPUT),
    ("item-not-object", ["GET /a"], ErrorCode.INVALID_INPUT),
    ("unknown-field", [{"path": "/a", "url": "/b"}], ErrorCode.INVALID_INPUT),
    ("no-path", [{"method": "GET"}], ErrorCode.INVALID_INPUT),
    ("bad-method", [{"path": "/a", "method": "TRACE"}], ErrorCode.INVALID_INPUT),
    ("id-with-space", [{"requestId": "a b", "path": "/a"}], ErrorCode.INVALID_INPUT),
    ("query-object", [{"path": "/a", "query": {"q": {"x": 1}}}], ErrorCode.INVALID_INPUT),
    ("headers-number", [{"path": "/a", "headers": {"X": 1}}], ErrorCode.INVALID_INPUT),
    ("timeout-zero", [{"path": "/a", "timeoutMs": 0}], ErrorCode.INVALID_INPUT),
    (
        "duplicate-id",
        [{"requestId": "a", "path": "/a"}, {"requestId": "a", "path": "/b"}],
        ErrorCode.DUPLICATE_REQUEST_ID,
    ),
    (
        "default-id-clash",
        [{"path": "/a"}, {"requestId": "0", "path": "/b"}],
        ErrorCode.DUPLICATE_REQUEST_ID,
    ),
    ("unknown-dependency", [{"path": "/a", "dependsOn": ["z"]}], ErrorCode.UNKNOWN_DEPENDENCY),
    (
        "cycle",
        [
            {"requestId": "a", "path": "/a", "dependsOn": ["b"]},
            {"requestId": "b", "path": "/b", "dependsOn": ["a"]},
        ],
        ErrorCode.DEPENDENCY_CYCLE,
    ),
    ("unclosed-placeholder", [{"path": "/a/{resultOf(a"}], ErrorCode.INVALID_REFERENCE),
    ("dangling-placeholder", [{"path": "/a/{resultOf(zz).id}"}], ErrorCode.INVALID_REFERENCE),
    (
        "bad-body-placeholder",
        [{"path": "/a", "body": ["{statusOf(0)x}"]}],
        ErrorCode.INVALID_REFERENCE,
    ),
    ("unknown-upstream", [{"path": "/a", "upstream": "evil"}], ErrorCode.UNKNOWN_UPSTREAM),
    ("absolute-url", [{"path": "http://evil.test/x"}], ErrorCode.FORBIDDEN_TARGET),
    ("scheme-relative", [{"path": "//evil.test/x"}], ErrorCode.FORBIDDEN_TARGET),
    ("backslash", [{"path": "/\\evil.test"}], ErrorCode.FORBIDDEN_TARGET),
    ("dotdot", [{"path": "/api/../admin"}], ErrorCode.FORBIDDEN_TARGET),
    ("dotdot-encoded", [{"path": "/api/%2e%2e/admin"}], ErrorCode.FORBIDDEN_TARGET),
    ("dotdot-double-encoded", [{"path": "/api/%252e%252e/admin"}], ErrorCode.FORBIDDEN_TARGET),
    ("dot-fullwidth", [{"path": "/api/\uff0e\uff0e/admin"}], ErrorCode.FORBIDDEN_TARGET),
    ("crlf-in-path", [{"path": "/a\r\nHost: evil"}], ErrorCode.FORBIDDEN_TARGET),
    ("crlf-encoded", [{"path": "/a%0d%0aHost:%20evil"}], ErrorCode.FORBIDDEN_TARGET),
    ("nul-in-path", [{"path": "/a\x00b"}], ErrorCode.FORBIDDEN_TARGET),
    ("fragment", [{"path": "/a#frag"}], ErrorCode.FORBIDDEN_TARGET),
    ("host-header", [{"path": "/a", "headers": {"Host": "evil.test"}}], ErrorCode.FORBIDDEN_TARGET),
    (
        "hop-by-hop",
        [{"path": "/a", "headers": {"Connection": "close"}}],
        ErrorCode.FORBIDDEN_TARGET,
    ),
    (
        "content-length",
        [{"path": "/a", "headers": {"Content-Length": "0"}}],
        ErrorCode.FORBIDDEN_TARGET,
    ),
    (
        "crlf-header-value",
        [{"path": "/a", "headers": {"X-A": "1\r\nX-B: 2"}}],
        ErrorCode.FORBIDDEN_TARGET,
    ),
    ("bad-header-name", [{"path": "/a", "headers": {"X A": "1"}}], ErrorCode.FORBIDDEN_TARGET),
    ("nested-batch", [{"path": "/batch"}], ErrorCode.NESTED_BATCH),
    ("nested-graphql", [{"path": "/graphql", "method": "POST"}], ErrorCode.NESTED_BATCH),
]


@pytest.mark.parametrize(
    ("items", "code"), [(i, c) for _, i, c in HOSTILE], ids=[name for name, _, _ in HOSTILE]
)
def test_hostile_input_is_rejected_with_its_code(items: Any, code: ErrorCode) -> None:
    exc = rejection(items)
    assert {p.code for p in exc.problems} == {code}, exc.problems
    assert all(p.message for p in exc.problems)
