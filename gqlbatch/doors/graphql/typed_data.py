"""`Succeeded.data`: the typed answers of upstreams with an OpenAPI document, as Strawberry
types made from `answer_types` (issue 14)."""

from __future__ import annotations

import enum
import functools
import operator
from collections.abc import Mapping
from keyword import iskeyword
from typing import Annotated, Any, cast

import strawberry
from strawberry.scalars import JSON

from gqlbatch.core.result import (
    ItemResult,
)
from gqlbatch.doors.graphql.answer_types import AnswerTypes, ListOf, Member, Shape
from gqlbatch.doors.graphql.answer_types import Field as AnswerField
from gqlbatch.doors.graphql.compiled import TypedData
from gqlbatch.doors.graphql.results import Succeeded


class _Answer(dict[str, Any]):
    """An answer given a type for `data`: a copy of its JSON object (or `{"items": list}`)
    that carries the name of its member type, which a plain dict cannot."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str, value: Mapping[str, Any]) -> None:
        super().__init__(value)
        self.type_name = type_name


_SCALAR_TYPES: dict[str, Any] = {
    "String": str,
    "Int": int,
    "Float": float,
    "Boolean": bool,
    "JSON": JSON,
    "ID": strawberry.ID,
}


def read_field(source: Any, name: str) -> Any:
    """The schema's default resolver. A generated type's value is the upstream's JSON object
    (a dict); gqlbatch's own values are objects with attributes."""
    if isinstance(source, dict):
        return source.get(name)
    return getattr(source, name)


def typed_classes(types: AnswerTypes) -> dict[str, type]:
    """A Strawberry type for each object and enum type of *types*, by name. The classes are
    made first and given their fields after, so that fields can name each other in cycles
    (`Comment.replies`); Strawberry reads the annotations when the schema is built."""
    named: dict[str, Any] = dict(_SCALAR_TYPES)
    for kind in types.enums:
        values = enum.Enum(kind.name, [(value, value) for value in kind.values])  # type: ignore[misc]
        named[kind.name] = strawberry.enum(values, name=kind.name, description=kind.description)
    classes = {
        spec.name: type(
            spec.name, (), {"__annotations__": {}, "is_type_of": _is_type_of(spec.name)}
        )
        for spec in types.objects
    }
    named.update(classes)
    for spec in types.objects:
        cls = classes[spec.name]
        for index, field in enumerate(spec.fields):
            _add_field(cls, index, field, _annotation(field.shape, named))
        strawberry.type(cls, name=spec.name, description=spec.description)
    return classes


def _is_type_of(name: str) -> classmethod[Any, Any, bool]:
    """The `is_type_of` of the generated type *name*, which Strawberry's union (TypedBody)
    asks of each member in turn: an `_Answer` is of the type it names. Any other value of a
    generated type is a nested object (`Post.author`), which graphql-core asks too: it is the
    type its field declares.

    Strawberry's documented way to a union member for values that are not instances of its
    types. With 100 resources, typing an answer costs (benchmarks/openapi.py) what the
    decisions.md entry "TypedBody's members" says.
    """

    def is_type_of(cls: type, value: Any, info: Any) -> bool:
        return not isinstance(value, _Answer) or value.type_name == name

    return classmethod(is_type_of)


def union_of(name: str, classes: tuple[type, ...], description: str) -> Any:
    """The union type *name* of *classes*, which are known only when the schema is built (a
    union of one class is that class, which Strawberry still makes a union)."""
    members = functools.reduce(operator.or_, classes)
    return Annotated[members, strawberry.union(name, description=description)]


def _annotation(shape: Shape, named: Mapping[str, Any]) -> Any:
    inner = list[_annotation(shape.of, named)] if isinstance(shape, ListOf) else named[shape.name]  # type: ignore[misc]
    return inner | None if shape.nullable else inner


def _add_field(cls: type, index: int, field: AnswerField, annotation: Any) -> None:
    # A key that is a plain Python name is read by `read_field`, at no cost beyond a getattr;
    # another (`@type`, `class`, `big-id`) has a resolver of its own.
    key = field.key
    if key == field.name and key.isidentifier() and not iskeyword(key) and key[0] != "_":
        cls.__annotations__[key] = annotation
        setattr(cls, key, strawberry.field(name=field.name, description=field.description))
        return

    def read(root: Any) -> Any:
        return root.get(key) if isinstance(root, dict) else None

    python = f"_key_{index}"
    cls.__annotations__[python] = annotation
    setattr(
        cls,
        python,
        strawberry.field(
            read, name=field.name, description=field.description, graphql_type=annotation
        ),
    )


def succeeded_with_data(types: AnswerTypes, classes: Mapping[str, type]) -> type:
    """Succeeded with `data`: the answer as the type its operation's document gives it."""
    members = tuple(classes[name] for name in types.members)
    typed_body = union_of(
        "TypedBody", members, "An answer as the type its upstream's OpenAPI document gives it."
    )

    def data(root: Any) -> Any:
        return _typed(types, cast(ItemResult, root))

    field = strawberry.field(
        data,
        graphql_type=typed_body | None,
        description="The body as the type its upstream's OpenAPI document gives this "
        "operation's answer with this status; null when no operation matches, that status "
        "has no object or array schema, or the body is not the JSON the schema describes. "
        "An array answer is a ...List with `items`; a forEach item's is an ...Each whose "
        "`items` hold each element's, null where an element failed.",
    )
    succeeded = type("Succeeded", (Succeeded,), {"data": field})
    return strawberry.type(succeeded, description=Succeeded.__strawberry_definition__.description)  # type: ignore[attr-defined]


def compiled_data(types: AnswerTypes) -> TypedData:
    """What the compiled path needs to write `data` as this schema's resolvers do."""
    keys = {o.name: {f.name: f.key for f in o.fields} for o in types.objects}
    return TypedData(answer=functools.partial(_typed_value, types), keys=keys)


def _typed(types: AnswerTypes, item: ItemResult) -> _Answer | None:
    """The item's `data` for Strawberry: its answer, marked with its member type."""
    found = _typed_value(types, item)
    return None if found is None else _Answer(*found)


def _typed_value(types: AnswerTypes, item: ItemResult) -> tuple[str, dict[str, Any]] | None:
    """The member type of the item's answer, and the JSON object its fields read; None when
    `data` is null. Nothing is copied: only the union's own value needs a type name."""
    if item.route is None or item.status is None:
        return None
    if item.elements is not None:
        return _each_value(types, item)
    member = types.member(*item.route, item.status)
    if member is None:
        return None
    value = _member_value(member, item.body)
    return None if value is None else (member.type_name, value)


def _each_value(types: AnswerTypes, item: ItemResult) -> tuple[str, dict[str, Any]] | None:
    """A forEach item's answers: each element's slot as `data` would be for it alone."""
    assert item.route is not None and item.elements is not None and isinstance(item.body, list)
    status = next((e.status for e in item.elements if e.error is None and e.status), None)
    member = types.member(*item.route, status) if status is not None else None
    if member is None:
        return None
    slots = [
        None if element.error is not None else _member_value(member, body)
        for element, body in zip(item.elements, item.body, strict=True)
    ]
    return types.each[member.type_name], {"items": slots}


def _member_value(member: Member, body: Any) -> dict[str, Any] | None:
    """*body* as the object *member*'s fields read; None when it is not the JSON its schema
    describes."""
    if member.wraps_list:
        return {"items": body} if isinstance(body, list) else None
    return body if isinstance(body, dict) else None
