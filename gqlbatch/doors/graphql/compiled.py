"""A compiled path for `batch` (issue 15). An operation's selection on `BatchResult` is fixed,
so it is compiled once per document into writers that put each item's selected fields,
aliases and fragments included, straight into the answer: no resolver call, no Info, no
Strawberry object per field, and no Strawberry conversion of each `SubRequestInput`.

`extensions.CompiledBatches` runs it from the `on_execute` hook, Strawberry's public way to
answer an operation before graphql-core executes it. graphql-core's public functions coerce the
variables and arguments (`get_variable_values`, `get_argument_values`), against a schema
built from the Strawberry schema's own SDL.

What it does not compile is left to graphql-core, which stays the reference: directives,
typed `data`, root fields other than `batch`, and any variable that does not coerce (its
errors are graphql-core's own). It must give exactly what graphql-core gives;
tests/test_compiled.py compares the two on random selections, byte for byte.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLField,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    Undefined,
    VariableNode,
    get_argument_values,
    get_operation_ast,
    get_variable_values,
    located_error,
    print_ast,
)
from graphql.language import Visitor, visit

from gqlbatch.core.errors import BatchRejected
from gqlbatch.core.kept import Kept
from gqlbatch.core.result import BatchOutcome
from gqlbatch.doors.graphql.coercion import Refused, VariableCoercers
from gqlbatch.doors.graphql.documents import CACHE_CHARS, CACHE_SIZE
from gqlbatch.doors.graphql.writers import (
    Anomaly,
    Errors,
    Shapes,
    TypedData,
    Unsupported,
    Writer,
    located,
)
from gqlbatch.execution import metrics

__all__ = [
    "Anomaly",
    "CompiledOperation",
    "Compiler",
    "TypedData",
    "Unsupported",
    "rejection",
]


RunBatch = Callable[[str, Mapping[str, Any], bool], Awaitable[BatchOutcome]]
"""Runs one `batch` field: its response key, its coerced arguments, whether read-only."""


@dataclasses.dataclass(frozen=True, slots=True)
class RootField:
    key: str
    nodes: tuple[FieldNode, ...]
    field: GraphQLField
    write: Writer
    variables: Mapping[str, str] | None
    """Each argument as the variable that alone gives it (`requests: $r`), when all of them
    are so: the fast coercion then serves."""


class CompiledOperation:
    """One operation of a document, compiled: its `batch` fields and their writers."""

    def __init__(
        self,
        schema: GraphQLSchema,
        operation: OperationDefinitionNode,
        roots: tuple[RootField, ...],
    ) -> None:
        self._schema = schema
        self._operation = operation
        self._roots = roots
        self.read_only = operation.operation is OperationType.QUERY
        self._fast = _fast_coercers(schema, operation, roots)

    def variables(self, inputs: Mapping[str, Any] | None) -> Any:
        """The coerced variables; None when graphql-core would refuse them (it then does).

        Each variable that alone gives a `batch` argument of its own type is coerced by a
        coercer compiled for that type, which gives what `get_variable_values` gives; a value
        it does not take (anything graphql-core would refuse or change) is left to
        `get_variable_values`, whose errors are the reference."""
        inputs = inputs or {}
        if self._fast is not None:
            try:
                return _Fast(self._fast.coerce(inputs))
            except Refused:
                pass
        coerced = get_variable_values(
            self._schema, self._operation.variable_definitions or (), dict(inputs)
        )
        return None if isinstance(coerced, list) else coerced

    async def run(self, variables: Any, run_batch: RunBatch) -> tuple[dict[str, Any], Errors]:
        """Run each `batch` field and write its answer: `data` and `errors`, as graphql-core
        would give them. A mutation's batches run one after another, a query's together."""
        errors: Errors = []
        if self.read_only:
            # Every batch settles before an Anomaly is raised: graphql-core, writing instead,
            # must find each one finished, never start one again.
            settled = await asyncio.gather(
                *(self._field(root, variables, run_batch, errors) for root in self._roots),
                return_exceptions=True,
            )
            anomaly = next((v for v in settled if isinstance(v, BaseException)), None)
            if anomaly is not None:
                raise anomaly
            values = list(settled)
        else:
            values = [await self._field(root, variables, run_batch, errors) for root in self._roots]
        return {root.key: value for root, value in zip(self._roots, values, strict=True)}, errors

    async def _field(
        self, root: RootField, variables: Any, run_batch: RunBatch, errors: Errors
    ) -> Any:
        try:
            args = _arguments(root, variables)
        except GraphQLError as exc:  # never once validated; graphql-core is to say it
            raise Anomaly(str(exc)) from exc
        try:
            outcome = await run_batch(root.key, args, self.read_only)
        except BatchRejected as exc:
            errors.append(located(rejection(exc), root.nodes, (root.key,)))
            return None
        except Exception as exc:  # a bug: as graphql-core locates it, for MaskInternalErrors
            errors.append(located_error(exc, list(root.nodes), [root.key]))
            return None
        try:
            return root.write(outcome, (root.key,), errors)
        except Exception as exc:
            raise Anomaly(f"{root.key}: {exc!r}") from exc


class _Fast(dict[str, Any]):
    """Variables coerced by the compiled coercers: the ones the client sent, by name."""


def _arguments(root: RootField, variables: Any) -> dict[str, Any]:
    if isinstance(variables, _Fast):
        assert root.variables is not None
        return {
            arg: variables[var]
            for arg, var in root.variables.items()
            if variables[var] is not Undefined  # not sent: the argument is left out
        }
    return get_argument_values(root.field, root.nodes[0], variables)


def _fast_coercers(
    schema: GraphQLSchema, operation: OperationDefinitionNode, roots: tuple[RootField, ...]
) -> VariableCoercers | None:
    """Compiled coercers for the variables, when each one alone gives `batch` arguments of
    its own type and has no default; None otherwise."""
    wanted: dict[str, str] = {}  # variable: the type its arguments have
    for root in roots:
        if root.variables is None:
            return None
        for arg, var in root.variables.items():
            if wanted.setdefault(var, str(root.field.args[arg].type)) != wanted[var]:
                return None
    definitions = operation.variable_definitions or ()
    for definition in definitions:
        name = definition.variable.name.value
        if definition.default_value is not None or name not in wanted:
            return None
        if print_ast(definition.type) != wanted[name]:
            return None
    return VariableCoercers(schema, definitions)


def rejection(exc: BatchRejected) -> GraphQLError:
    """The GraphQL error for a rejected batch: `extensions.code` and every problem. Every
    refusal a client is sent, through either door, is made here once, and counted here."""
    metrics.refused(exc.code.value)
    problems = [p.to_json() for p in exc.problems]
    extensions: dict[str, Any] = {"code": exc.code.value, "problems": problems}
    if exc.retry_after_s is not None:
        extensions["retryAfter"] = exc.retry_after_s
    return GraphQLError(str(exc), extensions=extensions)


class Compiler:
    """Compiles operations against one schema, and remembers them by document text."""

    def __init__(
        self, schema: GraphQLSchema, max_select_paths: int, typed: TypedData | None = None
    ) -> None:
        self._schema = schema
        self._max_select_paths = max_select_paths
        self._typed = typed
        # By document text and operation name, bounded as the documents are: a compiled
        # operation holds its document's nodes.
        self._kept: Kept[tuple[str, str | None], CompiledOperation | None] = Kept(
            CACHE_SIZE, max_weight=CACHE_CHARS
        )

    def compiled(
        self, query: str, document: DocumentNode, operation_name: str | None
    ) -> CompiledOperation | None:
        """The compiled operation, or None when graphql-core is to execute it."""
        return self._kept.recall(
            (query, operation_name), lambda: self._compiled(document, operation_name), len(query)
        )

    def _compiled(
        self, document: DocumentNode, operation_name: str | None
    ) -> CompiledOperation | None:
        try:
            return self._compile(document, operation_name)
        except Unsupported:
            return None

    def _compile(self, document: DocumentNode, operation_name: str | None) -> CompiledOperation:
        operation = get_operation_ast(document, operation_name)
        if operation is None or operation.operation is OperationType.SUBSCRIPTION:
            raise Unsupported
        if _has_directives(document):
            raise Unsupported
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        root_type = self._schema.get_root_type(operation.operation)
        assert root_type is not None  # validation found the operation's root
        shapes = Shapes(self._schema, fragments, self._max_select_paths, self._typed)
        collected = shapes.collect(root_type, [operation.selection_set])
        roots = []
        for key, nodes in collected.items():
            if nodes[0].name.value != "batch":
                raise Unsupported
            field = root_type.fields["batch"]
            write = shapes.batch_result(nodes)
            variables = _argument_variables(nodes[0])
            roots.append(RootField(key, tuple(nodes), field, write, variables))
        return CompiledOperation(self._schema, operation, tuple(roots))


def _argument_variables(node: FieldNode) -> dict[str, str] | None:
    """Each argument of *node* as the variable that is all of it; None if one is not."""
    found = {}
    for argument in node.arguments or ():
        if not isinstance(argument.value, VariableNode):
            return None
        found[argument.name.value] = argument.value.name.value
    return found


def _has_directives(document: DocumentNode) -> bool:
    found: list[bool] = []

    class Finder(Visitor):
        def enter_directive(self, *_: Any) -> None:
            found.append(True)

    visit(document, Finder())
    return bool(found)
