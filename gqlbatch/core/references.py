"""Placeholders checked against the answers they read (issue 14, "validation first"): a
placeholder that selects a field the referenced item's answer cannot have, by that item's
upstream's OpenAPI document (`{resultOf(user).nmae}` when User has `name`), refuses its batch.

Pure. Only the strings that can hold a placeholder are looked at: a body of a million plain
strings is one quick walk (issue 24).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from gqlbatch.core.errors import ErrorCode, Problem
from gqlbatch.core.openapi import Contract, escape_pointer, item_problem
from gqlbatch.core.placeholders import (
    Ref,
    RefKind,
    TemplateSyntaxError,
    may_hold_placeholders,
    parse_template,
)
from gqlbatch.core.request import SubRequest

__all__ = ["reference_problems"]


def reference_problems(
    items: Sequence[SubRequest], contracts: Mapping[str, Contract]
) -> list[Problem]:
    """Placeholders that select a field the referenced item's answer cannot have, by that
    item's upstream's document: `{resultOf(user).nmae}` when User has `name`."""
    by_id = {item.request_id: item for item in items}
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
            why = contract.missing_field(operation, ref.selectors)
            if why is not None:
                message = f"{ref.text or 'a placeholder'}: {why}"
                problems.append(item_problem(item, ErrorCode.INVALID_REFERENCE, message, where))
    return problems


def _refs(item: SubRequest) -> Iterator[tuple[str, Ref]]:
    """Each placeholder of *item*, with the field it is in."""
    texts: list[tuple[str, str]] = [("path", item.path)]
    texts += [(f"query.{name}", value) for name, value in item.query]
    texts += [(f"headers.{name}", value) for name, value in item.headers]
    if isinstance(item.for_each, str):
        texts.append(("forEach", item.for_each))
    if may_hold_placeholders(item.body):
        texts += list(_strings(item.body, "body"))
    for where, text in texts:
        try:
            refs = parse_template(text).refs
        except TemplateSyntaxError:
            continue  # the planner reports it
        for ref in refs:
            yield where, ref


def _strings(value: object, where: str) -> Iterator[tuple[str, str]]:
    """Each string of *value* that may hold a placeholder (one with a `{`, or the bare
    `resultOf(` form), with its JSON pointer below *where*, in order. The pointers are
    written only for those: a body of a million plain strings is one quick walk."""
    stack: list[tuple[object, tuple[str, ...]]] = [(value, (where,))]
    while stack:
        node, at = stack.pop()
        if isinstance(node, str):
            yield "/".join(at), node
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
            if (type(inner) is str and ("{" in inner or inner.startswith("resultOf(")))
            or isinstance(inner, (dict, list))
        ]
        stack.extend(reversed(found))
