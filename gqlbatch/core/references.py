"""Placeholders checked against the answers they read (issue 14, "validation first"): a
placeholder that selects a field the referenced item's answer cannot have, by that item's
upstream's OpenAPI document (`{resultOf(user).nmae}` when User has `name`), refuses its batch.

Pure. Only the strings that can hold a placeholder are looked at: a body of a million plain
strings is one quick walk (issue 24).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from gqlbatch.core.errors import ErrorCode, Problem
from gqlbatch.core.openapi import Contract, Operation, escape_pointer, item_problem
from gqlbatch.core.placeholders import (
    Key,
    Ref,
    RefKind,
    Selector,
    Template,
    may_hold_placeholders,
)
from gqlbatch.core.plan import PlannedItem

__all__ = ["missing_field", "reference_problems"]


def reference_problems(
    items: Sequence[PlannedItem], contracts: Mapping[str, Contract]
) -> list[Problem]:
    """Placeholders that select a field the referenced item's answer cannot have, by that
    item's upstream's document: `{resultOf(user).nmae}` when User has `name`. Read from the
    planned items: their templates were parsed once, by the planner (`plan.build_plan`)."""
    by_id = {item.request_id: item.request for item in items}
    problems = []
    for item in items:
        for where, ref in _refs(item):
            target = by_id.get(ref.target) if ref.target is not None else None
            if ref.kind is not RefKind.RESULT or target is None or target.for_each is not None:
                continue
            contract = contracts.get(target.upstream)
            operation = contract.match(target.method.value, target.path) if contract else None
            if contract is None or operation is None:
                continue
            why = missing_field(contract, operation, ref.selectors)
            if why is not None:
                message = f"{ref.text or 'a placeholder'}: {why}"
                problems.append(
                    item_problem(item.request, ErrorCode.INVALID_REFERENCE, message, where)
                )
    return problems


def _refs(item: PlannedItem) -> Iterator[tuple[str, Ref]]:
    """Each placeholder of *item*, with the field it is in."""
    templates: list[tuple[str, Template]] = [("path", item.path)]
    templates += [(f"query.{name}", value) for name, value in item.query]
    templates += [(f"headers.{name}", value) for name, value in item.headers]
    for where, template in templates:
        for ref in template.refs:
            yield where, ref
    if isinstance(item.for_each, Ref):
        yield "forEach", item.for_each
    if may_hold_placeholders(item.request.body):
        yield from _body_refs(item.body)


def _body_refs(body: object) -> Iterator[tuple[str, Ref]]:
    """Each placeholder of a compiled body (its Templates), with its JSON pointer below
    `body`, in order. The pointers are written only for the containers walked."""
    stack: list[tuple[object, tuple[str, ...]]] = [(body, ("body",))]
    while stack:
        node, at = stack.pop()
        if isinstance(node, Template):
            for ref in node.refs:
                yield "/".join(at), ref
            continue
        inners = (
            [(escape_pointer(str(key)), inner) for key, inner in node.items()]
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        found = [
            (inner, (*at, str(key)))
            for key, inner in inners
            if isinstance(inner, (Template, dict, list))
        ]
        stack.extend(reversed(found))


def missing_field(
    contract: Contract, operation: Operation, selectors: Sequence[Selector]
) -> str | None:
    """Why *selectors* cannot select anything in *operation*'s success answer, such as
    "User has no field 'nmae' (did you mean 'name'?)"; None when they may.

    An object schema with `properties` is closed for this check unless its
    `additionalProperties` allows more (`true`, or a schema): an answer's documented fields
    are what a placeholder can rely on. `additionalProperties: false` closes it too (issue 27:
    any `additionalProperties` was read as open, so a typo passed where the schema said no).
    `oneOf`, `anyOf` and anything not understood are given the benefit of the doubt.
    """
    if operation.response_pointer is None:
        return None
    node, name = _follow(contract, {"$ref": "#" + operation.response_pointer}, "the answer")
    for selector in selectors:
        node, name = _merged(contract, node, name)
        if "oneOf" in node or "anyOf" in node:
            return None
        if isinstance(selector, Key):
            properties = node.get("properties")
            if not isinstance(properties, dict) or _open(node):
                return None
            if selector.name not in properties:
                return _no_field(name, selector.name, properties)
            node, name = _follow(contract, properties[selector.name], f"{name}.{selector.name}")
        elif node.get("type") == "array" and "items" in node:  # [n] or [*]
            node, name = _follow(contract, node["items"], f"{name}[]")
        else:
            return None
    return None


def _open(node: Mapping[str, Any]) -> bool:
    """Whether an object schema allows fields beyond its `properties`."""
    return node.get("additionalProperties", False) is not False


def _follow(contract: Contract, node: Any, name: str) -> tuple[dict[str, Any], str]:
    """*node* with its `$ref`s followed; named after the last component it went through."""
    for _ in range(32):
        if not isinstance(node, dict) or "$ref" not in node:
            break
        ref = str(node["$ref"])
        name = ref.rsplit("/", 1)[-1] if ref.startswith("#/components/schemas/") else name
        node = contract.node(ref.removeprefix("#"))
    return (node if isinstance(node, dict) else {}), name


def _merged(contract: Contract, node: dict[str, Any], name: str) -> tuple[dict[str, Any], str]:
    """An `allOf` as one schema: its parts' properties together."""
    if "allOf" not in node:
        return node, name
    merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
    properties = dict(merged.get("properties") or {})
    for part in node["allOf"]:
        resolved, _ = _merged(contract, *_follow(contract, part, name))
        properties.update(resolved.get("properties") or {})
        merged.update({k: v for k, v in resolved.items() if k not in ("properties", "allOf")})
    merged["properties"] = properties
    return merged, name


def _no_field(name: str, field: str, properties: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(field, list(properties), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{name} has no field {field!r}{hint}"
