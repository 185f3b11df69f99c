"""The GraphQL door's schema: built from its operations and types, with its extensions, and
what is exported of it (its possible types, its built-in names)."""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping

import strawberry
from strawberry.schema.config import StrawberryConfig

from gqlbatch.core.config import Settings
from gqlbatch.core.openapi import Contract
from gqlbatch.doors.graphql.answer_types import AnswerTypes
from gqlbatch.doors.graphql.documents import QueryLimits
from gqlbatch.doors.graphql.extensions import (
    GqlbatchSchema,
    ReleasingExecutionContext,
    RememberedNames,
    schema_extensions,
)
from gqlbatch.doors.graphql.operations import Mutation, Query, subscription
from gqlbatch.doors.graphql.results import Cancelled, Failed, Skipped, Succeeded
from gqlbatch.doors.graphql.typed_data import (
    compiled_data,
    read_field,
    succeeded_with_data,
    typed_classes,
)


def possible_types(schema: strawberry.Schema) -> dict[str, list[str]]:
    """Each interface and union of *schema*, with its member types: Apollo Client's
    `possibleTypes`, without which its cache drops fragments on `ItemResult` silently."""
    types = schema.introspect()["__schema"]["types"]
    return {
        t["name"]: [member["name"] for member in t["possibleTypes"]]
        for t in types
        if t["kind"] in ("INTERFACE", "UNION") and not t["name"].startswith("__")
    }


def cache_keys(schema: strawberry.Schema) -> dict[str, str | None]:
    """Each object type of *schema* but the roots, with the field a normalized cache keys it
    by: `id` where it has one, else null (an embedded value, kept inside its parent). urql's
    graphcache warns "Invalid key" for every type it finds without a `keys` entry."""
    found = schema.introspect()["__schema"]
    roots = {
        (found.get(kind) or {}).get("name")
        for kind in ("queryType", "mutationType", "subscriptionType")
    }
    return {
        t["name"]: "id" if any(f["name"] == "id" for f in t["fields"] or ()) else None
        for t in found["types"]
        if t["kind"] == "OBJECT" and not t["name"].startswith("__") and t["name"] not in roots
    }


def build_schema(
    limits: QueryLimits | None = None,
    max_operations: int = 10,
    answers: AnswerTypes | None = None,
    *,
    compiled: bool = True,
    trusted: frozenset[str] | None = None,
) -> strawberry.Schema:
    """The gqlbatch GraphQL schema, with *limits* on query depth, aliases and tokens, and up
    to *max_operations* operations per HTTP request (an array of them in one POST). With
    *answers*, Succeeded has `data`, typed by the upstreams' OpenAPI documents. `compiled`
    answers `batch` operations on the compiled path (`doors.graphql.compiled`); without it,
    graphql-core executes every operation, which is the reference the tests compare with.
    With *trusted* (SHA-256 digests), only those documents run, over HTTP and websockets."""
    succeeded: type = Succeeded
    if answers is not None and answers.members:
        succeeded = succeeded_with_data(answers, typed_classes(answers))
    return GqlbatchSchema(
        query=Query,
        mutation=Mutation,
        subscription=subscription(succeeded),
        types=[succeeded, Failed, Skipped, Cancelled],
        extensions=schema_extensions(
            limits or QueryLimits(),
            frozenset(o.name for o in answers.objects) if answers is not None else frozenset(),
            compiled=compiled,
            typed=None if answers is None or not answers.members else compiled_data(answers),
            trusted=trusted,
        ),
        execution_context_class=ReleasingExecutionContext,
        config=StrawberryConfig(
            name_converter=RememberedNames(),
            batching_config={"max_operations": max_operations},
            default_resolver=read_field,
        ),
    )


@functools.cache
def builtin_type_names() -> frozenset[str]:
    """The names gqlbatch's own schema takes: a generated type with one of them is renamed."""
    types = build_schema().introspect()["__schema"]["types"]
    return frozenset(t["name"] for t in types)


def answer_types(
    contracts: Mapping[str, Contract], documented_ids: Collection[str] = ()
) -> AnswerTypes:
    """The types of the answers *contracts* describe, named around gqlbatch's own; the
    upstreams of *documented_ids* keep their `id` fields' documented types."""
    return AnswerTypes(contracts, reserved=builtin_type_names(), documented_ids=documented_ids)


def documented_ids(settings: Settings) -> frozenset[str]:
    """The upstreams whose `id` fields keep their documented types (`id_type`)."""
    return frozenset(n for n, u in settings.upstreams.items() if u.id_type == "documented")
