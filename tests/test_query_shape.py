"""The query-shape rule: Strawberry's depth and alias counts, computed without expanding
fragments, so that no document can make validation exponential."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from graphql import FragmentDefinitionNode, OperationDefinitionNode, parse
from hypothesis import given, settings
from hypothesis import strategies as st
from strawberry.extensions.max_aliases import count_fields_with_alias
from strawberry.extensions.query_depth_limiter import determine_depth

from gqlbatch.doors.graphql.query_shape import document_shapes

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from attacks import fragment_tower


@pytest.mark.timeout(10)
def test_a_fragment_tower_is_measured_without_expanding_it() -> None:
    # Expanded, this selects the aliased leaf 10^8 times; walked path by path it would not
    # finish within the timeout.
    shapes = document_shapes(parse(fragment_tower(9, 10, leaf="a: requestId")))
    assert shapes["Tower"].aliases == 10**8
    assert shapes["Tower"].depth == 2


async def test_the_650_byte_tower_is_refused_at_once(gateway: TestClient, service: Any) -> None:
    query = fragment_tower(7, 10, leaf="x: requestId")
    assert len(query) < 700
    resp = await gateway.post("/graphql", json={"query": query})
    body = await resp.json()
    assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert "1000000 aliases found" in body["errors"][0]["message"]
    assert service.calls == []


# Small random documents: fragments A..D, each selecting fields (maybe aliased, maybe
# introspection, maybe nested) and spreading any fragment, itself included. The counting
# functions do not care whether the fields exist, so the documents need not validate.
NAMES = ["A", "B", "C", "D"]
LEAF = st.sampled_from(["requestId", "r: requestId", "__typename", "t: __typename"])
SPREAD = st.sampled_from(NAMES).map(lambda name: f"...{name}")


def _selection(depth: int) -> st.SearchStrategy[str]:
    if depth == 0:
        return LEAF | SPREAD
    inner = st.lists(_selection(depth - 1), min_size=1, max_size=3).map(" ".join)
    nested = st.tuples(st.sampled_from(["error", "e: error", "__type"]), inner).map(
        lambda parts: f"{parts[0]} {{ {parts[1]} }}"
    )
    return LEAF | SPREAD | nested


BODY = st.lists(_selection(2), min_size=1, max_size=3).map(" ".join)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(top=BODY, bodies=st.lists(BODY, min_size=4, max_size=4))
def test_shapes_equal_strawberrys_counts(top: str, bodies: list[str]) -> None:
    if _has_cycle(dict(zip(NAMES, bodies, strict=True))):
        return  # NoFragmentCyclesRule refuses it, whatever the counts
    text = f"query Q {{ batch(requests: []) {{ items {{ {top} }} }} }}" + "".join(
        f" fragment {name} on ItemResult {{ {body} }}"
        for name, body in zip(NAMES, bodies, strict=True)
    )
    ast = parse(text)
    fragments = {d.name.value: d for d in ast.definitions if isinstance(d, FragmentDefinitionNode)}
    (operation,) = [d for d in ast.definitions if isinstance(d, OperationDefinitionNode)]
    expected_depth = determine_depth(operation, fragments, 0, 10**9, None, "Q", None)  # type: ignore[arg-type]
    expected_aliases = count_fields_with_alias(operation, fragments)
    shape = document_shapes(ast)["Q"]
    assert (shape.depth, shape.aliases) == (expected_depth, expected_aliases)


def _has_cycle(bodies: dict[str, str]) -> bool:
    def reaches(start: str, seen: frozenset[str]) -> bool:
        spreads = [n for n in NAMES if f"...{n}" in bodies[start]]
        return any(n in seen or reaches(n, seen | {n}) for n in spreads)

    return any(reaches(name, frozenset({name})) for name in NAMES)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "query { " + " ".join(["batch(requests: []) { replayed }"] * 17) + " }",
            "'batch' is selected 17 times in one selection set; at most 16 "
            "(alias the ones that differ)",
        ),
        (
            "query { batch(requests: []) { items { "
            + " ".join(f"...F{i}" for i in range(33))
            + " } } } "
            + " ".join(f"fragment F{i} on ItemResult {{ requestId }}" for i in range(33)),
            "33 fragment spreads in one selection set; at most 32",
        ),
        (
            "query { batch(requests: []) { items { ...A ...A ...A } } } "
            "fragment A on ItemResult { ...B ...B ...B ...B ...B ...B ...B ...B ...B ...B } "
            "fragment B on ItemResult { ...C ...C ...C ...C ...C ...C ...C ...C ...C ...C } "
            "fragment C on ItemResult { requestId status state durationMs attempts coalesced "
            "index bulkCall }",
            "the document selects 2402 fields as its fragments expand; at most 2000",
        ),
    ],
    ids=["repeated-field", "fragment-spreads", "expanded-fields"],
)
async def test_documents_too_costly_to_validate_are_refused_first(
    query: str, message: str, gateway: TestClient, service: Any
) -> None:
    resp = await gateway.post("/graphql", json={"query": query})
    (error,) = (await resp.json())["errors"]
    assert (error["message"], error["extensions"]["code"]) == (message, "QUERY_TOO_COMPLEX")


async def test_validation_work_is_budgeted(gateway: TestClient) -> None:
    # Within every limit above, the same field selected under one parent with fragments
    # spread in each copy still costs graphql-core's overlap rule work that grows with the
    # square of the copies: it stops at VALIDATION_BUDGET, refusing the document.
    spreads = " ".join(f"...E{i}" for i in range(32))
    fragments = " ".join(f"fragment E{i} on ElementResult {{ status index }}" for i in range(32))
    copies = " ".join(f"elements {{ {spreads} }}" for _ in range(8))
    query = f"query {{ batch(requests: []) {{ items {{ {copies} }} }} }} {fragments}"
    resp = await gateway.post("/graphql", json={"query": query})
    (error,) = (await resp.json())["errors"]
    assert (error["message"], error["extensions"]["code"]) == (
        "Validation aborted.",
        "QUERY_TOO_COMPLEX",
    )


def test_a_document_is_walked_once_while_it_is_remembered() -> None:
    from graphql import parse

    from gqlbatch.doors.graphql.documents import QueryLimits, ShapeChecks

    checks = ShapeChecks(QueryLimits(max_aliases=1))
    text = "{ batch(requests: []) { a: replayed b: replayed } }"
    first = checks.problems(text, parse(text))
    assert [e.message for e in first] == ["2 aliases found. Allowed: 1"]
    # The same text is answered from memory: a document that would pass is not even read.
    again = checks.problems(text, parse("{ __typename }"))
    assert [e.message for e in again] == [e.message for e in first] and again is not first
