"""The compiled coercers of doors/graphql/coercion.py against graphql-core's `get_variable_values`,
on random `[SubRequestInput!]!` values, valid and not: whatever they take, they give what
graphql-core gives; whatever graphql-core refuses, they refuse (the caller then asks
graphql-core, whose errors are the reference)."""

from __future__ import annotations

from typing import Any

import graphql
from hypothesis import given
from hypothesis import strategies as st

from gqlbatch.doors.graphql.coercion import Refused, VariableCoercers
from gqlbatch.doors.graphql.schema import build_schema

SCHEMA = graphql.build_schema(build_schema().as_str())
OPERATION = graphql.parse(
    "mutation($r: [SubRequestInput!]!, $o: BatchOptionsInput) "
    "{ batch(requests: $r, options: $o) { items { status } } }"
).definitions[0]
assert isinstance(OPERATION, graphql.OperationDefinitionNode)
DEFINITIONS = OPERATION.variable_definitions

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
ID = st.text(max_size=4) | st.integers(-5, 5) | st.floats(allow_nan=False) | st.none()
HEADER = st.fixed_dictionaries({"name": st.text(max_size=4), "value": st.text(max_size=4)})
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "requestId": ID,
    "method": st.sampled_from(["GET", "POST", "DELETE", "FETCH", "get", None, 1]),
    "query": JSON,
    "headers": st.lists(HEADER, max_size=2) | HEADER | st.none() | st.just([{"name": "x"}]),
    "body": JSON,
    "dependsOn": st.lists(ID, max_size=2) | ID,
    "upstream": st.text(max_size=3) | st.none() | st.integers(),
    "timeoutMs": st.integers(-(2**33), 2**33) | st.none() | st.just(1.0) | st.just(1.5),
    "compensate": st.none() | st.fixed_dictionaries({"path": st.text(max_size=3)}) | JSON,
    "idempotencyKey": st.text(max_size=3) | st.none(),
    "atomicityGroup": st.text(max_size=3) | st.none(),
    "forEach": JSON,
    "nope": st.just(1),  # not a field: refused
}
ITEM = st.fixed_dictionaries(
    {"path": st.text(max_size=4) | st.none() | st.integers()},
    optional=FIELDS,
)
ITEM_OR_NOT = ITEM | st.fixed_dictionaries({}, optional=FIELDS) | JSON
OPTIONS = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "mode": st.sampled_from(["PARALLEL", "SEQUENTIAL", "EVERYTHING"]),
        "maxConcurrency": st.integers(-1, 5) | st.text(max_size=2),
        "atomic": st.booleans() | st.integers(0, 1),
        "timeoutMs": st.integers(0, 2**32),
    },
)
VARIABLES = st.fixed_dictionaries(
    {"r": st.lists(ITEM, max_size=3) | st.lists(ITEM_OR_NOT, max_size=3) | ITEM | JSON},
    optional={"o": OPTIONS},
)


@given(VARIABLES)
def test_the_compiled_coercers_give_what_graphql_core_gives(variables: dict[str, Any]) -> None:
    reference = graphql.get_variable_values(SCHEMA, DEFINITIONS, variables)
    try:
        coerced = VariableCoercers(SCHEMA, DEFINITIONS).coerce(variables)
    except Refused:
        return  # graphql-core is asked instead, whatever it says
    assert not isinstance(reference, list), f"graphql-core refused it: {reference}"
    expected = {name: reference.coerced.get(name, graphql.Undefined) for name in ("r", "o")}
    assert coerced == expected


def test_a_required_variable_not_sent_is_refused() -> None:
    try:
        VariableCoercers(SCHEMA, DEFINITIONS).coerce({})
    except Refused:
        return
    raise AssertionError("graphql-core refuses a missing $r; so must the coercers")


VALID_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "requestId": st.text(max_size=4) | st.integers(-5, 5),
    "method": st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
    "query": JSON,
    "headers": st.lists(HEADER, max_size=2) | HEADER,
    "body": JSON,
    "dependsOn": st.lists(st.text(max_size=3), max_size=2) | st.text(max_size=3),
    "upstream": st.text(max_size=3),
    "timeoutMs": st.integers(-(2**31), 2**31 - 1),
    "compensate": st.fixed_dictionaries(
        {"path": st.text(max_size=3)}, optional={"method": st.just("DELETE"), "body": JSON}
    ),
    "idempotencyKey": st.text(max_size=3),
    "atomicityGroup": st.text(max_size=3),
    "forEach": JSON,
}
VALID = st.lists(
    st.fixed_dictionaries({"path": st.text(max_size=4)}, optional=VALID_FIELDS), max_size=4
)


@given(VALID)
def test_every_valid_batch_is_taken_and_coerced_as_graphql_core_does(
    requests: list[dict[str, Any]],
) -> None:
    reference = graphql.get_variable_values(SCHEMA, DEFINITIONS, {"r": requests})
    assert not isinstance(reference, list), reference
    coerced = VariableCoercers(SCHEMA, DEFINITIONS).coerce({"r": requests})
    assert coerced == {"r": reference.coerced["r"], "o": graphql.Undefined}
