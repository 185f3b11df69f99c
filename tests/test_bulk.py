"""Bulk routes, pure: grouping calls into plural calls and splitting the answer back."""

from __future__ import annotations

import pytest

from gqlbatch.core.errors import UpstreamBadResponse
from gqlbatch.core.upstream_settings import BulkRoute
from gqlbatch.core.wire import UpstreamCall, UpstreamResponse
from gqlbatch.upstreams.bulk import BulkRoutes, split_response

USERS = BulkRoute(match="/users/{id}")
COMMENTS = BulkRoute(match="/comments?postId={id}", many=True, max_keys=2)
TAGS = BulkRoute(match="/tags/{id}", param="ids", key_field="slug", style="comma")
ROUTES = BulkRoutes({"api": [USERS, COMMENTS, TAGS]})


def get(
    path: str, *query: tuple[str, str], headers: tuple[tuple[str, str], ...] = ()
) -> UpstreamCall:
    return UpstreamCall("api", "GET", path, query=query, headers=headers)


def test_lookups_on_one_route_become_one_plural_call() -> None:
    calls = [get("/users/1"), get("/users/2"), get("/users/%33"), get("/posts/1")]
    groups, singles = ROUTES.group(calls)
    assert singles == [get("/posts/1")]
    (group,) = groups
    assert group.keys == ("1", "2", "3")
    assert group.call == UpstreamCall(
        "api", "GET", "/users", query=(("id", "1"), ("id", "2"), ("id", "3"))
    )


def test_a_lone_lookup_goes_as_written() -> None:
    groups, singles = ROUTES.group([get("/users/1"), get("/comments", ("postId", "9"))])
    assert groups == [] and len(singles) == 2


def test_different_credentials_or_parameters_never_share_a_plural_call() -> None:
    a = (("Authorization", "A"),)
    b = (("Authorization", "B"),)
    calls = [
        get("/users/1", headers=a),
        get("/users/2", headers=a),
        get("/users/3", headers=b),
        get("/users/4", ("fields", "name"), headers=b),
    ]
    groups, singles = ROUTES.group(calls)
    assert [g.keys for g in groups] == [("1", "2")]
    assert groups[0].call.headers == a
    assert len(singles) == 2


def test_other_query_parameters_ride_along() -> None:
    calls = [
        get("/comments", ("postId", "1"), ("sort", "new")),
        get("/comments", ("postId", "2"), ("sort", "new")),
    ]
    (group,), _ = ROUTES.group(calls)
    assert group.call.query == (("sort", "new"), ("postId", "1"), ("postId", "2"))


def test_max_keys_splits_into_several_calls() -> None:
    calls = [get("/comments", ("postId", str(i))) for i in range(5)]
    groups, singles = ROUTES.group(calls)
    assert [g.keys for g in groups] == [("0", "1"), ("2", "3"), ("4",)]
    assert singles == []


def test_comma_style_and_custom_param() -> None:
    (group,), _ = ROUTES.group([get("/tags/a"), get("/tags/b")])
    assert (group.call.path, group.call.query) == ("/tags", (("ids", "a,b"),))


def test_writes_and_other_upstreams_are_never_grouped() -> None:
    post = UpstreamCall("api", "POST", "/users/1", body=b"{}")
    other = UpstreamCall("other", "GET", "/users/1")
    groups, singles = ROUTES.group([post, post, other, UpstreamCall("other", "GET", "/users/2")])
    assert groups == [] and len(singles) == 4


def response(body: object, status: int = 200) -> UpstreamResponse:
    return UpstreamResponse(
        status,
        (("Content-Type", "application/json"), ("Content-Length", "99"), ("X-Total", "2")),
        body,
    )


def test_one_to_one_split_leaves_a_missing_key_to_be_fetched_alone() -> None:
    (group,), _ = ROUTES.group([get("/users/1"), get("/users/2"), get("/users/3")])
    parts = split_response(group, response([{"id": 2, "n": "b"}, {"id": 1, "n": "a"}]))
    one, two = parts["1"], parts["2"]
    assert one is not None and two is not None
    assert one.body == {"id": 1, "n": "a"} and two.body == {"id": 2, "n": "b"}
    assert one.headers == (("Content-Type", "application/json"), ("X-Total", "2"))
    assert parts["3"] is None  # only the upstream knows its answer: the loader asks it alone


def test_one_to_many_groups_rows_and_an_absent_key_gets_an_empty_list() -> None:
    (group, _), _ = ROUTES.group([get("/comments", ("postId", str(i))) for i in (1, 2, 3)])
    parts = split_response(group, response([{"id": 10, "postId": 1}, {"id": 11, "postId": 1}]))
    assert parts["1"].body == [{"id": 10, "postId": 1}, {"id": 11, "postId": 1}]
    assert parts["2"].body == [] and parts["2"].status == 200


def test_custom_key_field() -> None:
    (group,), _ = ROUTES.group([get("/tags/a"), get("/tags/b")])
    parts = split_response(group, response([{"slug": "b"}, {"slug": "a"}]))
    assert parts["a"].body == {"slug": "a"}


def test_a_failed_plural_call_fails_every_key_the_same_way() -> None:
    (group,), _ = ROUTES.group([get("/users/1"), get("/users/2")])
    failed = response({"error": "down"}, status=503)
    assert split_response(group, failed) == {"1": failed, "2": failed}


def test_a_plural_answer_that_is_not_a_list_is_a_bad_response() -> None:
    (group,), _ = ROUTES.group([get("/users/1"), get("/users/2")])
    with pytest.raises(UpstreamBadResponse, match="answered dict, expected a JSON list"):
        split_response(group, response({"data": []}))
