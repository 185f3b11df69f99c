"""The GraphQL types an upstream's OpenAPI document gives its answers (issue 14, typed `data`).
Pure: this module says which types there are and which one an answer is;
`doors.graphql.schema` makes them Strawberry types.

- Each object schema an answer can hold becomes an object type: a component schema is named
  after its component, an inline one after where it is (`PostAuthor`, `GetStatsResponse`).
  With documents from several upstreams, every name begins with its upstream's
  (`BlogUser`); a name that gqlbatch's own schema uses gets that prefix too.
- An answer that is an array becomes `<Element>List { items: [...] }`: a union member must be
  an object type.
- `string`, `integer`, `number` and `boolean` are String, Int, Float and Boolean; an `integer`
  with `format: int64` is JSON, since GraphQL's Int stops at 32 bits. An enum of strings that
  are all GraphQL names is an enum (a value such as "in-progress" would come out renamed, so
  such an enum stays a String).
- A field is non-null when the schema requires it and does not allow null (`nullable: true`
  in 3.0, `"null"` among its types in 3.1).
- `allOf` merges its parts. A `oneOf` or `anyOf` whose only alternatives are one schema and
  null is that schema, nullable. Anything else (other unions, maps given only by
  `additionalProperties`, an object without properties, a schema with no type) is JSON, field
  by field: a document never stops start-up here.
- A `writeOnly` property is never in an answer and has no field.
- A field named `id` whose schema is a string or an integer is an `ID` (issue 27: Relay,
  Apollo and urql key their normalized caches by it, and Relay refuses an `Int` id), unless
  its upstream says `id_type = "documented"`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gqlbatch.core.openapi import Contract, Operation, escape_pointer

__all__ = ["AnswerTypes", "EnumType", "Field", "ListOf", "Member", "Named", "ObjectType", "Shape"]

SCALARS = frozenset({"String", "Int", "Float", "Boolean", "JSON", "ID"})
"""The names a `Named` shape may have besides the object and enum types."""

_SCALAR_OF = {"string": "String", "integer": "Int", "number": "Float", "boolean": "Boolean"}
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
_NOT_NAME = re.compile(r"[^_0-9A-Za-z]")
_ENUM_VALUE = re.compile(r"[A-Za-z][_0-9A-Za-z]*")
_NOT_ENUM_VALUES = frozenset({"true", "false", "null", "mro"})  # GraphQL's and Python's Enum's
_COMPONENT = "/components/schemas/"


@dataclass(frozen=True, slots=True)
class Named:
    """A scalar (`SCALARS`), an object type or an enum, by name."""

    name: str
    nullable: bool = True


@dataclass(frozen=True, slots=True)
class ListOf:
    """A list of *of*."""

    of: Shape
    nullable: bool = True


Shape = Named | ListOf


@dataclass(frozen=True, slots=True)
class Field:
    """One field of an object type: its GraphQL name, and the JSON key it reads."""

    name: str
    key: str
    shape: Shape
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectType:
    name: str
    fields: tuple[Field, ...]
    description: str | None = None


@dataclass(frozen=True, slots=True)
class EnumType:
    name: str
    values: tuple[str, ...]
    """Each value is its own GraphQL name: an answer's value comes out as it went in."""
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Member:
    """What an answer's `data` is: an object type, or a list wrapper whose `items` it fills."""

    type_name: str
    wraps_list: bool = False


class AnswerTypes:
    """The object and enum types of the answers of every upstream with a document, and which
    of them each documented answer is."""

    def __init__(
        self,
        contracts: Mapping[str, Contract],
        reserved: Collection[str] = (),
        documented_ids: Collection[str] = (),
    ) -> None:
        """*documented_ids*: the upstreams whose `id` fields keep their documented type."""
        namer = _Namer(reserved)
        several = len(contracts) > 1
        self._contracts = dict(contracts)
        self._members: dict[tuple[str, str, str], dict[str, Member]] = {}
        for upstream, contract in sorted(contracts.items()):
            prefix = _pascal(upstream) if several else ""
            reader = _Reader(
                contract,
                namer,
                prefix,
                clash_prefix=_pascal(upstream),
                ids_are_ids=upstream not in documented_ids,
            )
            for operation in contract.operations:
                answers = dict(reader.members(operation))
                if answers:
                    self._members[(upstream, operation.method, operation.template)] = answers
        plain = sorted(
            {m.type_name for answers in self._members.values() for m in answers.values()}
        )
        self.each: dict[str, str] = {name: _each(namer, name) for name in plain}
        """For each type an answer can be, the type of a forEach item's answers of it:
        `<Type>Each { items: [Type] }`, null where an element failed."""
        self.objects: tuple[ObjectType, ...] = tuple(namer.objects.values())
        self.enums: tuple[EnumType, ...] = tuple(namer.enums.values())
        self.members: tuple[str, ...] = tuple(sorted([*plain, *self.each.values()]))
        """The types `data` can be: the members of the `TypedBody` union."""

    def member(self, upstream: str, method: str, path: str, status: int) -> Member | None:
        """The type of an answer with *status* to *method* *path* on *upstream*; None when no
        operation matches, or its document gives that status no object or array schema."""
        contract = self._contracts.get(upstream)
        operation = contract.match(method, path) if contract is not None else None
        if operation is None:
            return None
        answers = self._members.get((upstream, operation.method, operation.template))
        if answers is None:
            return None
        code = str(status)
        return answers.get(code) or answers.get(f"{code[0]}XX") or answers.get("DEFAULT")


def _each(namer: _Namer, member: str) -> str:
    name = namer.claim(member + "Each")
    items = Field("items", "items", ListOf(Named(member), nullable=False))
    description = f"A forEach item's answers, each a {member}; null where an element failed."
    namer.objects[name] = ObjectType(name, (items,), description)
    return name


class _Namer:
    """Hands out unique type names, and keeps the types they name."""

    def __init__(self, reserved: Collection[str]) -> None:
        self._taken = set(reserved) | SCALARS
        self.objects: dict[str, ObjectType] = {}
        self.enums: dict[str, EnumType] = {}
        self.lists: dict[Shape, str] = {}
        """The list wrapper of each element shape."""

    def is_free(self, name: str) -> bool:
        return name not in self._taken

    def claim(self, wanted: str) -> str:
        name, n = wanted, 1
        while name in self._taken:
            n += 1
            name = f"{wanted}{n}"
        self._taken.add(name)
        return name


class _Reader:
    """Reads one document's answer schemas into types, each schema once (by its place in the
    document, so that `Comment.replies: [Comment]` is a cycle, not a recursion)."""

    def __init__(
        self,
        contract: Contract,
        namer: _Namer,
        prefix: str,
        clash_prefix: str,
        *,
        ids_are_ids: bool = True,
    ) -> None:
        self.ids_are_ids = ids_are_ids
        self._contract = contract
        self._namer = namer
        self._prefix = prefix
        self._clash_prefix = clash_prefix
        self._named: dict[str, Shape] = {}
        self._nullable_key = "nullable" if not contract.version.startswith("3.1") else None

    def members(self, operation: Operation) -> Iterator[tuple[str, Member]]:
        """Each success status of *operation* whose answer is an object or an array."""
        for status, pointer in operation.answers:
            if status[0] not in "123" and status != "DEFAULT":
                continue
            shape = self._shape(pointer, _answer_name(operation))
            member = self._member(shape)
            if member is not None:
                yield status, member

    def _member(self, shape: Shape) -> Member | None:
        if isinstance(shape, ListOf):
            name = self._namer.lists.get(shape.of)
            if name is None:
                name = self._namer.lists[shape.of] = self._namer.claim(_list_name(shape.of))
                items = Field("items", "items", ListOf(shape.of, nullable=False))
                description = f"An answer that is a list of {_shown(shape.of)}."
                self._namer.objects[name] = ObjectType(name, (items,), description)
            return Member(name, wraps_list=True)
        if shape.name in self._namer.objects:
            return Member(shape.name)
        return None

    def _shape(self, pointer: str, hint: str) -> Shape:
        """The shape of the schema at *pointer*, named after *hint* when it is an inline type."""
        node = self._contract.node(pointer)
        if not isinstance(node, dict):
            return Named("JSON")
        if "$ref" in node:
            target = str(node["$ref"])
            if not target.startswith("#/"):
                return Named("JSON")  # another file: openapi-spec-validator would have said
            pointer = target[1:]
            return self._shape(pointer, _component_name(pointer) or hint)
        if pointer in self._named:
            return self._named[pointer]
        nullable = self._nullable(node)
        for key in ("oneOf", "anyOf"):
            if key in node:
                return self._one_of(node[key], pointer, key, hint, nullable)
        if "allOf" in node:
            return self._all_of(node, pointer, hint, nullable)
        types = [t for t in _types(node) if t != "null"]
        if "enum" in node:
            return self._enum(node, pointer, hint, types, nullable)
        if types == ["array"] or (not types and "items" in node):
            if "items" not in node:
                return ListOf(Named("JSON"), nullable)
            return ListOf(self._shape(pointer + "/items", hint + "Item"), nullable)
        if types in (["object"], []) and isinstance(node.get("properties"), dict):
            return self._object(pointer, hint, [(pointer, node)], nullable)
        if len(types) == 1 and types[0] in _SCALAR_OF:
            int64 = types[0] == "integer" and node.get("format") == "int64"
            return Named("JSON" if int64 else _SCALAR_OF[types[0]], nullable)
        return Named("JSON", nullable)

    def _nullable(self, node: Mapping[str, Any]) -> bool:
        if self._nullable_key is not None and node.get(self._nullable_key) is True:
            return True
        enum = node.get("enum")
        return "null" in _types(node) or (isinstance(enum, list) and None in enum)

    def _one_of(self, parts: Any, pointer: str, key: str, hint: str, nullable: bool) -> Shape:
        if not isinstance(parts, list):
            return Named("JSON", nullable)
        nulls = [i for i, p in enumerate(parts) if isinstance(p, dict) and _types(p) == ["null"]]
        others = [i for i in range(len(parts)) if i not in nulls]
        if len(others) != 1:
            return Named("JSON", nullable)
        shape = self._shape(f"{pointer}/{key}/{others[0]}", hint)
        return _with_nullable(shape, nullable or bool(nulls))

    def _all_of(self, node: Mapping[str, Any], pointer: str, hint: str, nullable: bool) -> Shape:
        parts = node["allOf"]
        if not isinstance(parts, list):
            return Named("JSON", nullable)
        if len(parts) == 1 and "properties" not in node:  # a $ref with a description beside it
            return _with_nullable(self._shape(f"{pointer}/allOf/0", hint), nullable)
        pieces = [(pointer, node), *self._pieces(pointer, {pointer})]
        return self._object(pointer, hint, pieces, nullable)

    def _pieces(self, pointer: str, seen: set[str]) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """The parts of the `allOf` at *pointer*, with their own parts, `$ref`s followed."""
        parts = self._contract.node(pointer).get("allOf") or []
        for index in range(len(parts)):
            part_pointer = self._followed(f"{pointer}/allOf/{index}")
            part = self._contract.node(part_pointer)
            if isinstance(part, dict) and part_pointer not in seen:
                seen.add(part_pointer)
                yield part_pointer, part
                if "allOf" in part:
                    yield from self._pieces(part_pointer, seen)

    def _followed(self, pointer: str) -> str:
        for _ in range(32):
            node = self._contract.node(pointer)
            if not isinstance(node, dict) or not str(node.get("$ref", "")).startswith("#/"):
                break
            pointer = str(node["$ref"])[1:]
        return pointer

    def _enum(
        self, node: Mapping[str, Any], pointer: str, hint: str, types: list[str], nullable: bool
    ) -> Shape:
        values = [v for v in node["enum"] or () if v is not None]
        named = all(
            isinstance(v, str) and _ENUM_VALUE.fullmatch(v) and v not in _NOT_ENUM_VALUES
            for v in values
        )
        if not values or not named or len(set(values)) != len(values):
            scalar = _SCALAR_OF.get(types[0]) if len(types) == 1 else None
            return Named(scalar or "JSON", nullable)
        name = self._type_name(hint)
        self._named[pointer] = Named(name, nullable)
        self._namer.enums[name] = EnumType(name, tuple(values), _description(node))
        return Named(name, nullable)

    def _object(
        self,
        pointer: str,
        hint: str,
        pieces: list[tuple[str, Mapping[str, Any]]],
        nullable: bool,
    ) -> Shape:
        name = self._type_name(hint)
        shape = Named(name, nullable)
        self._named[pointer] = shape  # before the fields: they may lead back here
        fields = tuple(self._fields(name, pieces))
        if not fields:
            self._named[pointer] = Named("JSON", nullable)
            return Named("JSON", nullable)
        self._namer.objects[name] = ObjectType(name, fields, _description(pieces[0][1]))
        return shape

    def _fields(self, owner: str, pieces: list[tuple[str, Mapping[str, Any]]]) -> Iterator[Field]:
        required = {r for _, piece in pieces for r in piece.get("required") or ()}
        seen: dict[str, str] = {}  # GraphQL name: JSON key
        for piece_pointer, piece in pieces:
            for key, schema in (piece.get("properties") or {}).items():
                if key in seen.values() or not isinstance(schema, dict):
                    continue
                if schema.get("writeOnly") is True:
                    continue
                at = f"{piece_pointer}/properties/{escape_pointer(key)}"
                shape = self._shape(at, owner + _pascal(key))
                if key not in required:
                    shape = _with_nullable(shape, True)
                if key == "id" and self.ids_are_ids:
                    shape = _as_id(shape, schema)
                name = _field_name(key, seen)
                seen[name] = key
                yield Field(name, key, shape, _description(self._contract.node(at)))

    def _type_name(self, hint: str) -> str:
        wanted = _graphql_name(self._prefix + hint)
        if not self._prefix and not self._namer.is_free(wanted):
            wanted = _graphql_name(self._clash_prefix + hint)  # `Header`: gqlbatch has one
        return self._namer.claim(wanted)


def _types(node: Mapping[str, Any]) -> list[str]:
    kind = node.get("type")
    if isinstance(kind, str):
        return [kind]
    return [t for t in kind if isinstance(t, str)] if isinstance(kind, list) else []


def _as_id(shape: Shape, schema: Mapping[str, Any]) -> Shape:
    """An `id` field's shape as GraphQL's ID, when the document makes it a string or an
    integer (an int64 one, JSON elsewhere, is an ID too: ID is text)."""
    int64 = [t for t in _types(schema) if t != "null"] == ["integer"]
    if isinstance(shape, Named) and (shape.name in ("String", "Int") or int64):
        return Named("ID", shape.nullable)
    return shape


def _with_nullable(shape: Shape, nullable: bool) -> Shape:
    if shape.nullable == nullable:
        return shape
    if isinstance(shape, ListOf):
        return ListOf(shape.of, nullable)
    return Named(shape.name, nullable)


def _field_name(key: str, seen: Mapping[str, str]) -> str:
    name = _graphql_name(key)
    wanted, n = name, 1
    while name in seen:
        n += 1
        name = f"{wanted}_{n}"
    return name


def _graphql_name(text: str) -> str:
    """*text* as a GraphQL name: other characters become `_`, and it never begins with a
    digit or with the `__` that introspection keeps for itself."""
    if _NAME.fullmatch(text) and not text.startswith("__"):
        return text
    name = _NOT_NAME.sub("_", text).lstrip("_") or "field"
    return name if not name[0].isdigit() else f"_{name}"


def _pascal(text: str) -> str:
    words = [w for w in _NOT_NAME.sub(" ", text).replace("_", " ").split() if w]
    return "".join(w[0].upper() + w[1:] for w in words)


def _component_name(pointer: str) -> str | None:
    if not pointer.startswith(_COMPONENT) or "/" in pointer[len(_COMPONENT) :]:
        return None
    return pointer[len(_COMPONENT) :].replace("~1", "/").replace("~0", "~")


def _answer_name(operation: Operation) -> str:
    """The name of an inline answer type: from its operationId, else its method and path."""
    if operation.operation_id:
        return _pascal(operation.operation_id) + "Response"
    words = [w for w in operation.template.split("/") if w and not w.startswith("{")]
    return _pascal(" ".join([operation.method.lower(), *words])) + "Response"


def _list_name(of: Shape) -> str:
    return (_list_name(of.of) if isinstance(of, ListOf) else of.name) + "List"


def _shown(shape: Shape) -> str:
    return f"[{_shown(shape.of)}]" if isinstance(shape, ListOf) else shape.name


def _description(node: Any) -> str | None:
    if not isinstance(node, dict):
        return None
    text = node.get("description") or node.get("title")
    return str(text) if text else None
