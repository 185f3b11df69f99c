"""The compiled path's writers (`compiled`): for each field an operation selects on
`BatchResult`, its items, their errors, elements and typed `data`, a function that reads the
engine's value and writes the answer's JSON value, as graphql-core would write it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    SelectionSetNode,
    VariableNode,
    get_argument_values,
    get_named_type,
    is_non_null_type,
)

from gqlbatch.core.errors import ErrorCode
from gqlbatch.core.evaluation import project
from gqlbatch.core.placeholders import TemplateSyntaxError, parse_selectors
from gqlbatch.core.result import BatchOutcome, ItemResult, State

__all__ = [
    "TYPE_NAMES",
    "Anomaly",
    "Errors",
    "Path",
    "Shapes",
    "TypedData",
    "Unsupported",
    "Writer",
    "located",
]


TYPE_NAMES: dict[State, str] = {
    State.SUCCEEDED: "Succeeded",
    State.FAILED: "Failed",
    State.SKIPPED: "Skipped",
    State.CANCELLED: "Cancelled",
}

Path = tuple[str | int, ...]
Errors = list[GraphQLError]
Writer = Callable[[Any, Path, Errors], Any]


class Unsupported(Exception):
    """Something this compiler leaves to graphql-core."""


class Anomaly(Exception):
    """A value the writers do not expect (a null in a non-null field, a leaf that does not
    serialize): the batch has run, and graphql-core is to write its answer instead."""


@dataclasses.dataclass(frozen=True, slots=True)
class TypedData:
    """What the compiled path needs of typed `data` (`doors.graphql.schema` makes it)."""

    answer: Callable[[ItemResult], tuple[str, Mapping[str, Any]] | None]
    """The member type of the item's answer and the JSON object its fields read; None when
    `data` is null."""
    keys: Mapping[str, Mapping[str, str]]
    """Each generated type's fields: GraphQL name to the JSON key it reads."""


def located(error: GraphQLError, nodes: Sequence[FieldNode], path: Path) -> GraphQLError:
    """*error* where graphql-core puts it: at every node of its field, and its path."""
    return GraphQLError(
        error.message, nodes=list(nodes), path=list(path), extensions=error.extensions
    )


class Shapes:
    """Collects fields as graphql-core does (CollectFields: first appearance orders them,
    fragments apply by type condition, each fragment once) and builds their writers."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        max_select_paths: int,
        typed: TypedData | None,
    ) -> None:
        self._schema = schema
        self._fragments = fragments
        self._max_select_paths = max_select_paths
        self._typed = typed

    def collect(
        self, object_type: GraphQLObjectType, selection_sets: Sequence[SelectionSetNode | None]
    ) -> dict[str, list[FieldNode]]:
        fields: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()
        for selection_set in selection_sets:
            if selection_set is not None:
                self._visit(object_type, selection_set, fields, visited)
        return fields

    def _visit(
        self,
        object_type: GraphQLObjectType,
        selection_set: SelectionSetNode,
        fields: dict[str, list[FieldNode]],
        visited: set[str],
    ) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                fields.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is None or self._applies(condition.name.value, object_type):
                    self._visit(object_type, selection.selection_set, fields, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in visited:
                    continue
                visited.add(name)
                fragment = self._fragments[name]
                if self._applies(fragment.type_condition.name.value, object_type):
                    self._visit(object_type, fragment.selection_set, fields, visited)

    def _applies(self, condition: str, object_type: GraphQLObjectType) -> bool:
        found = self._schema.get_type(condition)
        if found is object_type:
            return True
        if isinstance(found, GraphQLObjectType) or found is None:
            return False
        return self._schema.is_sub_type(found, object_type)  # type: ignore[arg-type]

    def _subfields(self, object_type: GraphQLObjectType, nodes: list[FieldNode]) -> Any:
        return self.collect(object_type, [n.selection_set for n in nodes])

    # ----------------------------------------------------------------------------------------
    # Writers, one per field

    def batch_result(self, nodes: list[FieldNode]) -> Writer:
        result_type = self._object("BatchResult")
        parts: list[tuple[str, Writer]] = []
        for key, fields in self._subfields(result_type, nodes).items():
            name = fields[0].name.value
            if name == "items":
                parts.append((key, self._items(fields, key)))
            elif name == "item":
                parts.append((key, self._item(fields, key)))
            elif name == "stats":
                parts.append((key, self._plain_object("BatchStats", fields, _stats_value)))
            elif name == "__typename":
                parts.append((key, _constant("BatchResult")))
            elif name in ("rolledBack", "replayed"):
                parts.append((key, self._leaf(result_type, name, _outcome_attribute(name))))
            else:
                raise Unsupported
        return _object_writer(parts)

    def _items(self, nodes: list[FieldNode], key: str) -> Writer:
        by_state = self._item_writers(nodes)

        def write(outcome: BatchOutcome, path: Path, errors: Errors) -> list[Any]:
            return [
                by_state[item.state](item, (*path, key, index), errors)
                for index, item in enumerate(outcome.results)
            ]

        return write

    def _item(self, nodes: list[FieldNode], key: str) -> Writer:
        by_state = self._item_writers(nodes)
        node = nodes[0]
        if any(isinstance(a.value, VariableNode) for a in node.arguments or ()):
            raise Unsupported  # a rare form; graphql-core reads it
        field = self._object("BatchResult").fields["item"]
        wanted = str(get_argument_values(field, node)["requestId"])

        def write(outcome: BatchOutcome, path: Path, errors: Errors) -> Any:
            found = next((i for i in outcome.results if i.request_id == wanted), None)
            return None if found is None else by_state[found.state](found, (*path, key), errors)

        return write

    def _item_writers(self, nodes: list[FieldNode]) -> dict[State, Writer]:
        return {state: self._result(self._object(t), nodes) for state, t in TYPE_NAMES.items()}

    def _result(self, result_type: GraphQLObjectType, nodes: list[FieldNode]) -> Writer:
        """One concrete result type's writer: Succeeded, Failed, Skipped or Cancelled."""
        parts: list[tuple[str, Writer]] = []
        for key, fields in self._subfields(result_type, nodes).items():
            name = fields[0].name.value
            if name == "__typename":
                parts.append((key, _constant(result_type.name)))
            elif name == "body":
                parts.append((key, self._body(fields)))
            elif name == "headers":
                parts.append((key, self._headers(fields)))
            elif name == "error":
                parts.append((key, self._optional("ItemError", fields, _attribute("error"))))
            elif name == "elements":
                elements = self._plain_object("ElementResult", fields, _element_value)
                parts.append((key, _optional_list(_attribute("elements"), elements)))
            elif name == "rollback":
                parts.append((key, self._optional("Rollback", fields, _attribute("rollback"))))
            elif name in _ITEM_LEAVES:
                parts.append((key, self._leaf(result_type, name, _ITEM_LEAVES[name])))
            elif name == "data" and self._typed is not None:
                parts.append((key, self._data(fields, self._typed)))
            else:
                raise Unsupported  # anything added later
        return _object_writer(parts)

    def _data(self, nodes: list[FieldNode], typed: TypedData) -> Writer:
        """Succeeded's `data`: the member the item's answer is, written by its own fields."""
        union = get_named_type(self._object("Succeeded").fields["data"].type)
        assert isinstance(union, GraphQLUnionType)
        members = {m.name: self._answer_object(m, nodes, typed) for m in union.types}
        answer_of = typed.answer

        def write(item: ItemResult, path: Path, errors: Errors) -> Any:
            found = answer_of(item)
            return None if found is None else members[found[0]](found[1], path, errors)

        return write

    def _answer_object(
        self, object_type: GraphQLObjectType, nodes: list[FieldNode], typed: TypedData
    ) -> Writer:
        """A generated type's writer: each field read from the answer's JSON by its key."""
        keys = typed.keys[object_type.name]
        parts: list[tuple[str, Writer]] = []
        for key, fields in self._subfields(object_type, nodes).items():
            name = fields[0].name.value
            if name == "__typename":
                parts.append((key, _constant(object_type.name)))
                continue
            json_key = keys[name]
            field_type = object_type.fields[name].type
            value = self._answer_value(field_type, fields, typed)
            parts.append((key, _json_field(json_key, value)))
        return _object_writer(parts)

    def _answer_value(self, field_type: Any, nodes: list[FieldNode], typed: TypedData) -> Writer:
        """A value of *field_type* in an answer; any value graphql-core would not complete as
        is (a null where one is required, a value that does not serialize) is an Anomaly."""
        required = isinstance(field_type, GraphQLNonNull)
        inner_type = field_type.of_type if required else field_type
        if isinstance(inner_type, GraphQLList):
            inner = self._answer_value(inner_type.of_type, nodes, typed)
            return _answer_part(lambda v, p, e: [inner(x, p, e) for x in v], required, list)
        if isinstance(inner_type, GraphQLObjectType):
            return _answer_part(self._answer_object(inner_type, nodes, typed), required, dict)
        assert isinstance(inner_type, GraphQLLeafType)
        serialize = inner_type.serialize  # what does not serialize is an Anomaly, a level up
        return _answer_part(lambda v, p, e: serialize(v), required)

    def _body(self, nodes: list[FieldNode]) -> Writer:
        node = nodes[0]  # the others have the same arguments: validation says so
        if any(isinstance(a.value, VariableNode) for a in node.arguments or ()):
            raise Unsupported
        field = self._object("Succeeded").fields["body"]
        select = get_argument_values(field, node).get("select")
        if not select:
            return lambda item, path, errors: item.body
        try:
            paths = tuple(parse_selectors(s) for s in select)
            problem = (
                None
                if len(select) <= self._max_select_paths
                else GraphQLError(
                    f"body(select:) names {len(select)} paths; at most {self._max_select_paths} "
                    "(max_select_paths)",
                    extensions={"code": ErrorCode.QUERY_TOO_COMPLEX},
                )
            )
        except TemplateSyntaxError as exc:
            problem = GraphQLError(str(exc), extensions={"code": ErrorCode.INVALID_INPUT})
        if problem is not None:
            key = node.alias.value if node.alias else node.name.value

            def refuse(item: ItemResult, path: Path, errors: Errors) -> None:
                errors.append(located(problem, nodes, (*path, key)))

            return refuse
        return lambda item, path, errors: project(item.body, paths)

    def _leaf(self, owner: GraphQLObjectType, name: str, read: Callable[[Any], Any]) -> Writer:
        field_type = owner.fields[name].type
        leaf = get_named_type(field_type)
        assert isinstance(leaf, GraphQLLeafType)
        serialize = leaf.serialize
        required = is_non_null_type(field_type)

        def write(value: Any, path: Path, errors: Errors) -> Any:
            found = read(value)
            if found is not None:
                return serialize(found)
            if required:  # never from the engine: graphql-core is to say what it says
                raise Anomaly(f"{owner.name}.{name} is null")
            return None

        return write

    def _plain_object(
        self, type_name: str, nodes: list[FieldNode], read: Callable[[Any, str], Any]
    ) -> Writer:
        """An object of leaves only (BatchStats, ElementResult, Header), read from its value
        by field name; ElementResult's `error` is the one object below it."""
        object_type = self._object(type_name)
        parts: list[tuple[str, Writer]] = []
        for key, fields in self._subfields(object_type, nodes).items():
            name = fields[0].name.value
            if name == "__typename":
                parts.append((key, _constant(type_name)))
            elif name == "error":
                parts.append((key, self._optional("ItemError", fields, _attribute("error"))))
            else:
                parts.append((key, self._leaf(object_type, name, _reading(read, name))))
        return _object_writer(parts)

    def _optional(
        self, type_name: str, nodes: list[FieldNode], read: Callable[[Any], Any]
    ) -> Writer:
        inner = self._plain_object(type_name, nodes, _named_attribute)

        def write(value: Any, path: Path, errors: Errors) -> Any:
            found = read(value)
            return None if found is None else inner(found, path, errors)

        return write

    def _headers(self, nodes: list[FieldNode]) -> Writer:
        inner = self._plain_object("Header", nodes, _header_value)
        return lambda item, path, errors: [inner(v, path, errors) for v in item.headers]

    def _object(self, name: str) -> GraphQLObjectType:
        found = self._schema.get_type(name)
        assert isinstance(found, GraphQLObjectType), name
        return found


def _json_field(key: str, value: Writer) -> Writer:
    return lambda source, path, errors: value(source.get(key), path, errors)


def _answer_part(write_one: Writer, required: bool, kind: type = object) -> Writer:
    """A value in an answer: null where the schema allows it, else *write_one*'s, if it is a
    *kind*; anything else is an Anomaly, which graphql-core then writes with its error."""

    def write(value: Any, path: Path, errors: Errors) -> Any:
        if value is None:
            if required:
                raise Anomaly(f"a null where the document requires a {kind.__name__}")
            return None
        if not isinstance(value, kind):
            raise Anomaly(f"not a {kind.__name__}")
        return write_one(value, path, errors)

    return write


def _object_writer(parts: list[tuple[str, Writer]]) -> Writer:
    frozen = tuple(parts)

    def write(value: Any, path: Path, errors: Errors) -> dict[str, Any]:
        return {key: part(value, path, errors) for key, part in frozen}

    return write


def _optional_list(read: Callable[[Any], Any], inner: Writer) -> Writer:
    def write(value: Any, path: Path, errors: Errors) -> Any:
        found = read(value)
        return None if found is None else [inner(v, path, errors) for v in found]

    return write


def _constant(value: str) -> Writer:
    return lambda _value, _path, _errors: value


def _attribute(name: str) -> Callable[[Any], Any]:
    return lambda value: getattr(value, name)


def _named_attribute(value: Any, name: str) -> Any:
    return getattr(value, _PYTHON_NAMES.get(name, name))


def _reading(read: Callable[[Any, str], Any], name: str) -> Callable[[Any], Any]:
    return lambda value: read(value, name)


def _outcome_attribute(name: str) -> Callable[[BatchOutcome], Any]:
    python = _PYTHON_NAMES[name]
    return lambda outcome: getattr(outcome, python)


def _stats_value(outcome: BatchOutcome, name: str) -> Any:
    value = getattr(outcome.stats, _PYTHON_NAMES[name])
    return round(value, 3) if name in ("wallMs", "criticalPathMs") else value


def _element_value(element: Any, name: str) -> Any:
    return getattr(element, _PYTHON_NAMES.get(name, name))


def _header_value(header: tuple[str, str], name: str) -> str:
    return header[0] if name == "name" else header[1]


_PYTHON_NAMES = {
    "rolledBack": "rolled_back",
    "replayed": "replayed",
    "subRequests": "sub_requests",
    "callsRequested": "calls_requested",
    "upstreamCalls": "upstream_calls",
    "callsSaved": "calls_saved",
    "savedByDedupe": "saved_by_dedupe",
    "savedByBulk": "saved_by_bulk",
    "wallMs": "wall_ms",
    "criticalPathMs": "critical_path_ms",
    "responseBytes": "response_bytes",
    "retries": "retries",
    "bulkCall": "bulk_call",
}

_ITEM_LEAVES: dict[str, Callable[[ItemResult], Any]] = {
    "requestId": lambda item: item.request_id,
    "index": lambda item: item.index,
    "state": lambda item: item.state,
    "status": lambda item: item.status,
    "bodyEncoding": lambda item: item.body_encoding,
    "durationMs": lambda item: round(item.duration_ms, 3),
    "startedMs": lambda item: round(item.started_ms, 3),
    "attempts": lambda item: item.attempts,
    "coalesced": lambda item: item.coalesced,
    "bulkCall": lambda item: item.bulk_call,
    "failedDependency": lambda item: item.failed_dependency,
}
