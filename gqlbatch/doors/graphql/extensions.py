"""The GraphQL schema's extensions: internal errors masked behind an id, query limits with
their own error code (tagged in `GqlbatchSchema.process_errors`), and the hooks that parse and
validate each document once (`doors.graphql.documents`). Imports strawberry, as `schema.py`
does; nothing here knows about batches.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import strawberry
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from graphql import build_schema as build_graphql_schema
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from graphql.validation.rules import overlapping_fields_can_be_merged
from strawberry.extensions import MaskErrors, SchemaExtension, ValidationCache
from strawberry.schema.name_converter import HasGraphQLName, NameConverter
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import ExecutionContext

from gqlbatch.core.errors import ErrorCode, mask_internal
from gqlbatch.core.result import BatchOutcome
from gqlbatch.doors.graphql.batches import compiled_outcome
from gqlbatch.doors.graphql.compiled import Anomaly, CompiledOperation, Compiler, TypedData
from gqlbatch.doors.graphql.context import Context
from gqlbatch.doors.graphql.documents import (
    LIBRARY_LIMITS,
    VALIDATION_BUDGET,
    CheckedDocuments,
    KnownErrors,
    QueryLimits,
    ShapeChecks,
)
from gqlbatch.doors.graphql.query_shape import LiteralRangeRule
from gqlbatch.execution.planning import request_budget

__all__ = [
    "CompiledBatches",
    "CompiledOperationHooks",
    "GqlbatchSchema",
    "MaskInternalErrors",
    "OperationHooks",
    "OperationSetup",
    "ReleasingExecutionContext",
    "schema_extensions",
]

log = logging.getLogger("gqlbatch.errors")


def schema_extensions(
    limits: QueryLimits,
    answer_types: frozenset[str] = frozenset(),
    compiled: bool = False,
    typed: TypedData | None = None,
    trusted: frozenset[str] | None = None,
) -> list[Callable[[], SchemaExtension]]:
    """The schema's extensions, masking and gqlbatch's hooks, as factories, so that each
    operation gets fresh instances (Strawberry shares an extension *instance* between
    concurrent operations). *answer_types*
    are the types generated from upstreams' OpenAPI documents; with *compiled*, operations
    made of `batch` fields take the compiled path. With *trusted* (SHA-256 digests), no other
    document runs, whatever brought it (HTTP or a websocket)."""
    # Each limiter instance makes a new validation rule *class*, and ValidationCache keys its
    # cache on the rule classes: a limiter built per request made every request miss the cache
    # and validate the whole document again (about 4 ms per batch here). The rule classes are
    # therefore made once, and each request gets a fresh extension that holds the same ones.
    rules: list[type[ASTValidationRule]] = [LiteralRangeRule]
    if not limits.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    # Read by graphql-core's rule when it starts on a document; the same for every schema.
    overlapping_fields_can_be_merged.MAX_COMPLEXITY_BUDGET = VALIDATION_BUDGET
    parts = _Parts(
        OperationSetup(tuple(rules), limits.max_tokens),
        # Clients send the same few documents with different variables: caching the parsed
        # and validated documents (bounded, LRU) skips most of the per-request GraphQL work.
        CheckedDocuments(ShapeChecks(limits), KnownErrors(), trusted),
    )

    def masking() -> SchemaExtension:
        return MaskInternalErrors(answer_types)

    if not compiled:
        return [masking, lambda: OperationHooks(parts)]
    batches = CompiledBatches(_SchemaCompiler(limits.max_select_paths, typed))
    return [masking, lambda: CompiledOperationHooks(parts, batches)]


class _SchemaCompiler:
    """One schema's compiler, made from the schema's own SDL when the schema is (see
    GqlbatchSchema): Strawberry has no public way to its graphql-core schema, and the SDL is
    public and the same."""

    def __init__(self, max_select_paths: int, typed: TypedData | None) -> None:
        self._max_select_paths = max_select_paths
        self._typed = typed
        self._compiler: Compiler | None = None

    def get(self, schema: Any) -> Compiler:
        if self._compiler is None:
            sdl = build_graphql_schema(schema.as_str())
            self._compiler = Compiler(sdl, self._max_select_paths, self._typed)
        return self._compiler


class CompiledBatches:
    """Answers an operation made of `batch` fields on the compiled path (`doors.graphql.compiled`)
    before graphql-core executes it, from the `on_execute` hook: Strawberry skips execution
    when the hook has set the result. Anything the compiler leaves out, graphql-core executes
    as before."""

    def __init__(self, compilers: _SchemaCompiler) -> None:
        self._compilers = compilers

    def prepare(self, schema: Any) -> None:
        """Build the compiler's schema now: from the SDL of 400 generated types it took 180 ms,
        which the first request would otherwise wait for."""
        self._compilers.get(schema)

    async def answer(self, execution: ExecutionContext) -> None:
        """Set *execution*'s result, when the compiled path can answer it."""
        context = execution.context
        document = execution.graphql_document
        if isinstance(context, Context) and execution.query and document is not None:
            compiler = self._compilers.get(execution.schema)
            compiled = compiler.compiled(execution.query, document, execution.operation_name)
            variables = compiled.variables(execution.variables) if compiled else None
            if compiled is not None and variables is not None:
                await self._answer(execution, compiled, variables, context)

    async def _answer(
        self,
        execution: ExecutionContext,
        compiled: CompiledOperation,
        variables: Any,
        context: Context,
    ) -> None:
        finished: dict[str, BatchOutcome] = {}

        async def run(key: str, args: Mapping[str, Any], read_only: bool) -> BatchOutcome:
            finished[key] = outcome = await compiled_outcome(context, key, args, read_only)
            return outcome

        try:
            data, errors = await compiled.run(variables, run)
        except Anomaly:
            # graphql-core writes the answer, from the batches that ran: none runs twice.
            execution.context = replace(context, finished=finished)
            return
        execution.result = GraphQLExecutionResult(data, errors or None)


class OperationSetup:
    """What each operation starts with: the token limit its parse observes, our validation
    rules beside graphql-core's, and a request budget when its context has none.
    (`MaxTokensLimiter` and `AddValidationRules`, Strawberry's extensions for the first two,
    are each one of these lines.)

    The budget: over HTTP the budget belongs to the request, made with its context. A
    websocket connection has one context for all its operations (Strawberry asks for it once),
    and one budget for the connection ran out after `max_items` items and refused every later
    operation; its context has none (see BatchView.get_context), so each operation is a request
    here.
    """

    def __init__(self, rules: tuple[type[ASTValidationRule], ...], max_tokens: int) -> None:
        self._rules = rules
        self._max_tokens = max_tokens

    def start(self, execution: ExecutionContext) -> None:
        """Set *execution* up, before it is parsed."""
        execution.parse_options["max_tokens"] = self._max_tokens
        execution.validation_rules = execution.validation_rules + self._rules
        context = execution.context
        if isinstance(context, Context) and context.budget is None:
            execution.context = replace(context, budget=request_budget(context.settings))


def is_internal(error: GraphQLError) -> bool:
    """A bug: anything raised while resolving that is not our own GraphQLError."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


# graphql-core's words when a resolver gives null for a non-null field; it raises a TypeError.
_NULL_IN_NON_NULL = re.compile(r"Cannot return null for non-nullable field (\w+)\.(\w+)\.")


class MaskInternalErrors(MaskErrors):
    """Strawberry's MaskErrors, for internal errors only: each one's message is replaced by
    an id, and its traceback logged under that id.

    One error that graphql-core raises as a TypeError is not ours: a null in a field that an
    upstream's OpenAPI document requires (*answer_types* are the types made from them). The
    upstream broke its document; that error says so, with UPSTREAM_BAD_RESPONSE.
    """

    def __init__(self, answer_types: frozenset[str] = frozenset()) -> None:
        super().__init__(should_mask_error=is_internal)
        self._answer_types = answer_types

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        missing = _NULL_IN_NON_NULL.match(str(error.original_error))
        if missing is not None and missing[1] == "Subscription":
            # A subscription executed as a plain request: graphql-core completes its field
            # with the stream its resolver returned (which is never iterated: nothing ran).
            return GraphQLError(
                "a subscription streams: send it over a websocket (graphql-transport-ws or "
                'graphql-ws), or as a stream (Accept: multipart/mixed;subscriptionSpec="1.0"), '
                "not as a plain request",
                nodes=error.nodes,
                path=error.path,
                extensions={"code": ErrorCode.INVALID_INPUT.value},
            )
        if missing is not None and missing[1] in self._answer_types:
            return GraphQLError(
                f"the upstream's answer has no {missing[2]!r}, which {missing[1]} requires "
                "by its OpenAPI document; the item's body holds the answer as it came",
                nodes=error.nodes,
                path=error.path,
                extensions={"code": ErrorCode.UPSTREAM_BAD_RESPONSE.value},
            )
        masked = mask_internal(error.original_error, "in a GraphQL resolver")
        return GraphQLError(
            masked.message,
            nodes=error.nodes,
            path=error.path,
            extensions={"code": ErrorCode.INTERNAL_ERROR.value, "errorId": masked.error_id},
        )


@dataclass(frozen=True, slots=True)
class _Parts:
    setup: OperationSetup
    documents: CheckedDocuments


class OperationHooks(ValidationCache):
    """gqlbatch's schema extension beside the masking: each hook hands the operation to the
    part that owns that step (setup, documents; `CompiledOperationHooks` adds the compiled
    path).

    One extension rather than one per part: for every operation, Strawberry looks for each
    hook on each extension and builds a context manager for each hook it finds. Four
    extensions cost 90k instructions more per operation than one (a one-item batch: 2.32M to
    2.23M, callgrind).

    A `ValidationCache` for its `on_validate`, which runs Strawberry's own validation (the
    only public way to it), as `CheckedDocuments` needs when a text is new. Its own cache is
    off (size 0): `CheckedDocuments` keeps the errors by text, bounded by their weight, and a
    second cache of the same validations held 256 more parsed documents, whatever their size.
    """

    def __init__(self, parts: _Parts) -> None:
        super().__init__(maxsize=0)
        self._parts = parts

    def synchronous(self) -> OperationHooks:
        """This extension, for an operation executed synchronously (no async hook)."""
        return self

    def on_operation(self) -> Iterator[None]:
        self._parts.setup.start(self.execution_context)
        yield

    def on_parse(self) -> Iterator[None]:
        self._parts.documents.parse(self.execution_context)
        yield

    def on_validate(self) -> Iterator[None]:
        self._parts.documents.validate(self.execution_context, self._strawberry_validation)
        yield

    def _strawberry_validation(self) -> list[GraphQLError]:
        # Strawberry's own hook, run to its yield: it sets the errors it found before it.
        for _ in super().on_validate():
            break
        return list(self.execution_context.pre_execution_errors or ())


class CompiledOperationHooks(OperationHooks):
    """`OperationHooks`, and the compiled path from `on_execute` (`CompiledBatches`)."""

    def __init__(self, parts: _Parts, compiled: CompiledBatches) -> None:
        super().__init__(parts)
        self._compiled = compiled

    def prepare(self, schema: Any) -> None:
        """Get the compiled path ready for *schema*, as it is built."""
        self._compiled.prepare(schema)

    def synchronous(self) -> OperationHooks:
        # A sync execution (`introspect()`) has no batch to run, and Strawberry refuses an
        # async hook there.
        return OperationHooks(self._parts)

    async def on_execute(self) -> AsyncIterator[None]:
        await self._compiled.answer(self.execution_context)
        yield


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


class RememberedNames(NameConverter):
    """Strawberry's default naming, each name worked out once.

    Strawberry names every field of an input value each time it converts one: camel-casing
    the twelve fields of each sub-request of each batch. The names never change, so each is
    kept after its first use (one entry per declared field or argument name).
    """

    def __init__(self) -> None:
        super().__init__()
        self._names: dict[str, str] = {}

    def get_graphql_name(self, obj: HasGraphQLName) -> str:
        if obj.graphql_name is not None:
            return obj.graphql_name
        assert obj.python_name
        name = self._names.get(obj.python_name)
        if name is None:
            name = self._names[obj.python_name] = self.apply_naming_config(obj.python_name)
        return name


class GqlbatchSchema(strawberry.Schema):
    """Strawberry's schema, logging only what is the server's fault, and running queries and
    mutations over the legacy `graphql-ws` websocket protocol."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for extension in self.get_extensions():
            if isinstance(extension, CompiledOperationHooks):
                extension.prepare(self)

    async def subscribe(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> Any:
        # Only Strawberry's handler of the legacy `graphql-ws` protocol calls this: that
        # protocol (gql's default, Apollo's subscriptions-transport-ws) sends queries and
        # mutations as "start" messages too, and `subscribe` refuses all but subscriptions,
        # which reached clients as INTERNAL_ERROR. `stream` runs any operation: one result,
        # then complete. graphql-transport-ws already goes through `stream`.
        return await self.stream(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            operation_extensions,
        )

    def get_extensions(self, sync: bool = False) -> list[SchemaExtension]:
        # The compiled path awaits batches; a sync execution (`introspect()`) has none to run,
        # and Strawberry refuses an async hook there. Strawberry picks its own directives
        # extension by `sync` the same way.
        extensions = super().get_extensions(sync)
        if not sync:
            return extensions
        return [e.synchronous() if isinstance(e, OperationHooks) else e for e in extensions]

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # Strawberry calls this for every error, on every path, before the extensions see the
        # result. A client's mistake (a rejected batch, an invalid query) is not a server
        # error, and internal errors are logged once, with their id, by MaskInternalErrors.
        # It is also the one place that sees a token-limit error: CheckedDocuments raises it
        # from inside the parse hook, which skips the operation hook's exit.
        for error in errors:
            if LIBRARY_LIMITS.search(error.message):
                error.extensions = {
                    **(error.extensions or {}),
                    "code": ErrorCode.QUERY_TOO_COMPLEX.value,
                }
            if not is_internal(error):
                log.debug("client error: %s", error.message)
