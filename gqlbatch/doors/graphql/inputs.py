"""The GraphQL door's input types, and the engine's plain values made from them; the engine's
enums, as the schema names them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import strawberry
from strawberry import UNSET
from strawberry.scalars import JSON
from strawberry.schema.name_converter import NameConverter

from gqlbatch.core.errors import ErrorCode
from gqlbatch.core.request import Mode, OnError
from gqlbatch.core.result import (
    State,
)
from gqlbatch.core.wire import BodyEncoding, Method

# Our enums, used as-is: strawberry.enum registers each (under the name given, or its class
# name) and returns the same class, so the annotations below name the engine's enums.
strawberry.enum(ErrorCode, description="Every error code gqlbatch reports.")
strawberry.enum(Method, name="HttpMethod", description="A sub-request's method.")
strawberry.enum(Mode, name="BatchMode", description="How items are scheduled.")
strawberry.enum(OnError, description="What a failure does to items not started.")
strawberry.enum(State, name="ItemState", description="Where an item ended.")
strawberry.enum(BodyEncoding, description="How `body` carries the upstream body.")


@strawberry.input(description="A header to send with one sub-request.")
class HeaderInput:
    name: str
    value: str


@strawberry.input(
    description="The request that undoes a sub-request in an atomic batch; its placeholders "
    "may read every result of the batch, its own item's included."
)
class CompensationInput:
    path: str
    method: Method = Method.DELETE
    query: JSON | None = UNSET
    headers: list[HeaderInput] | None = UNSET
    body: JSON | None = UNSET


# The optional input fields default to UNSET, not None: the schema then publishes no `= null`
# default, so graphql-core leaves a field the client did not send out of the value, and
# Strawberry converts only the fields that were sent. With `= None`, every sub-request arrived
# with all twelve fields and converting them cost more than running the item (perf-log).
@strawberry.input(description="One REST call of a batch.")
class SubRequestInput:
    path: str = strawberry.field(
        description="Below the upstream's base URL; starts with '/'. Placeholders allowed."
    )
    request_id: strawberry.ID | None = strawberry.field(
        default=UNSET, description="Unique in the batch; defaults to the item's index."
    )
    method: Method = Method.GET
    query: JSON | None = strawberry.field(
        default=UNSET, description="Parameters as an object; a list value repeats the parameter."
    )
    headers: list[HeaderInput] | None = UNSET
    body: JSON | None = strawberry.field(default=UNSET, description="Any JSON; sent as JSON.")
    depends_on: list[strawberry.ID] | None = strawberry.field(
        default=UNSET, description="Items that must succeed first, beside those resultOf names."
    )
    upstream: str | None = strawberry.field(
        default=UNSET, description="A configured upstream; optional when there is only one."
    )
    timeout_ms: int | None = UNSET
    compensate: CompensationInput | None = strawberry.field(
        default=UNSET,
        description="For atomic batches and atomicity groups: how to undo this request.",
    )
    idempotency_key: str | None = strawberry.field(
        default=UNSET,
        description="Sent as Idempotency-Key; lets a POST or PATCH be retried safely.",
    )
    atomicity_group: str | None = strawberry.field(
        default=UNSET,
        description="OData's atomicity group: the items of a group run one at a time in list "
        "order, stop at the group's first failure, and then have their compensate requests "
        "run, newest first; other items are unaffected. dependsOn may name a group.",
    )
    for_each: JSON | None = strawberry.field(
        default=UNSET,
        description="Fan out: one call per element of a list, such as "
        "'{resultOf(posts)[*].userId}' or a literal JSON list. The other fields may use "
        "{item}, {item.field} and {index}.",
    )


@strawberry.input(description="How to run a batch.")
class BatchOptionsInput:
    mode: Mode | None = strawberry.field(default=UNSET, description="PARALLEL by default.")
    on_error: OnError | None = strawberry.field(default=UNSET, description="CONTINUE by default.")
    max_concurrency: int | None = UNSET
    timeout_ms: int | None = strawberry.field(
        default=UNSET, description="A deadline for the whole batch, in milliseconds."
    )
    atomic: bool | None = strawberry.field(
        default=UNSET,
        description="All or nothing: one item at a time in dependency order, stop at the "
        "first failure, then run each succeeded item's compensate request, newest first. "
        "False by default, unless the server's configuration says otherwise.",
    )


def _graphql_names(cls: type) -> tuple[tuple[str, str], ...]:
    # (Python name, GraphQL name) of each field, as the schema names them: default naming.
    names = NameConverter()
    return tuple(
        (field.python_name, names.from_field(field))
        for field in cls.__strawberry_definition__.fields  # type: ignore[attr-defined]
    )


_INPUT_NAMES = {
    cls: _graphql_names(cls)
    for cls in (SubRequestInput, CompensationInput, HeaderInput, BatchOptionsInput)
}


def plain_input(value: Any) -> Any:
    """An input value in the plain form the engine reads, which is what the REST door sends: an
    input object becomes a mapping keyed by its GraphQL names, without the fields left null.
    Scalars, enums and JSON values stay as they are (a JSON list is not copied)."""
    names = _INPUT_NAMES.get(type(value))
    if names is not None:
        return {
            graphql: plain_input(field)
            for python, graphql in names
            if (field := getattr(value, python)) is not None and field is not UNSET
        }
    if type(value) is list and value and type(value[0]) in _INPUT_NAMES:
        return [plain_input(v) for v in value]
    return value


def without_nulls(value: Mapping[str, Any]) -> dict[str, Any]:
    # An input object as `plain_input` gives it: the fields left null are left out. The one
    # input object inside another is `compensate`; JSON values keep their nulls.
    return {
        k: without_nulls(v) if k == "compensate" else v for k, v in value.items() if v is not None
    }
