"""The GraphQL schema's extensions: internal errors masked behind an id, query limits with
their own error code (tagged in `GqlbatchSchema.process_errors`), and the parse and validation
caches. Imports strawberry, as `schema.py`
does; nothing here knows about batches.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import strawberry
from graphql import GraphQLError
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gqlbatch.errors import ErrorCode
from gqlbatch.query_shape import LiteralRangeRule, shape_rule

__all__ = [
    "CACHE_SIZE",
    "GqlbatchSchema",
    "QueryLimits",
    "ReleasingExecutionContext",
    "schema_extensions",
]

log = logging.getLogger("gqlbatch.errors")

CACHE_SIZE = 256
"""Documents kept parsed and validated (LRU): clients send a few documents, varying variables."""

# The messages of our query-shape rule (Strawberry's wording), graphql-core's token limit, and
# graphql-core's guards against documents and values nested past what it can walk (checked
# with graphql-core 3.3.2; tests/test_limits.py pins each one).
_LIMIT_MESSAGES = re.compile(
    r"exceeds maximum operation depth of \d+"
    r"|\d+ aliases found\. Allowed: \d+"
    r"|Document contains more than \d+ tokens"
    r"|nested too deeply"
    r"|Maximum introspection depth exceeded"
    r"|Validation aborted"
    r"|error limit reached"
    r"|is out of range"
    r"|an integer literal has more than \d+ digits"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryLimits:
    """How big a GraphQL document may be (DESIGN §9)."""

    max_depth: int = 12
    max_aliases: int = 50
    max_tokens: int = 20_000
    introspection: bool = True
    """False refuses `__schema` and `__type` (DESIGN §9: off for production if wanted)."""


def schema_extensions(limits: QueryLimits) -> list[Callable[[], SchemaExtension]]:
    """Extension factories, so that each operation gets fresh instances (Strawberry shares an
    extension *instance* between concurrent operations)."""
    # Each limiter instance makes a new validation rule *class*, and ValidationCache keys its
    # cache on the rule classes: a limiter built per request made every request miss the cache
    # and validate the whole document again (about 4 ms per batch here). The rule classes are
    # therefore made once, and each request gets a fresh extension that holds the same ones.
    rules: list[type[ASTValidationRule]] = [
        shape_rule(max_depth=limits.max_depth, max_aliases=limits.max_aliases),
        LiteralRangeRule,
    ]
    if not limits.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return [
        MaskInternalErrors,
        lambda: AddValidationRules(rules),
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
        # Clients send the same few documents with different variables: caching the parsed
        # and validated documents (bounded, LRU) skips most of the per-request GraphQL work.
        lambda: ParserCache(maxsize=CACHE_SIZE),
        lambda: ValidationCache(maxsize=CACHE_SIZE),
    ]


def is_internal(error: GraphQLError) -> bool:
    """A bug: anything raised while resolving that is not our own GraphQLError."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


class MaskInternalErrors(MaskErrors):
    """Replaces an internal error's message with an id, and logs the traceback under that id."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=is_internal)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        error_id = uuid.uuid4().hex[:12]
        log.error("internal error %s", error_id, exc_info=error.original_error)
        return GraphQLError(
            f"Internal error. Quote id {error_id} to find it in the server logs.",
            nodes=error.nodes,
            path=error.path,
            extensions={"code": ErrorCode.INTERNAL_ERROR.value, "errorId": error_id},
        )


class ReleasingExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, which lets go of itself once its response is built.

    graphql-core's ExecutionContext holds `async_helpers`, whose bound methods hold the
    context: a reference cycle, so the request's variables (bulk bodies, up to
    max_request_bytes) and everything the context reaches outlived the request until a full
    collection. Dropping the helpers when the response is built lets reference counting free
    it all at once.
    """

    def build_response(self, data: dict[str, Any] | None) -> Any:
        response = super().build_response(data)
        self.async_helpers = None  # type: ignore[assignment]
        return response


class GqlbatchSchema(strawberry.Schema):
    """Strawberry's schema, logging only what is the server's fault."""

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # Strawberry calls this for every error, on every path, before the extensions see the
        # result. A client's mistake (a rejected batch, an invalid query) is not a server
        # error, and internal errors are logged once, with their id, by MaskInternalErrors.
        # It is also the one place that sees a token-limit error: ParserCache raises it from
        # inside its parse hook, which skips the other extensions' exit hooks.
        for error in errors:
            if _LIMIT_MESSAGES.search(error.message):
                error.extensions = {
                    **(error.extensions or {}),
                    "code": ErrorCode.QUERY_TOO_COMPLEX.value,
                }
            if not is_internal(error):
                log.debug("client error: %s", error.message)
