"""How deep and how aliased a GraphQL document is, in time linear in the document.

Strawberry's QueryDepthLimiter and MaxAliasesLimiter expand every fragment spread where it
stands, so fragments that each spread the next one ten times, seven levels deep, made them walk
ten million paths: a 650-byte query held the event loop for 46 s. Here each fragment is measured
once, and a spread adds its fragment's memoized measure (its depth below the spread, its aliases
times one), so the work is one pass over the document whatever it expands to. The counts are
the same as Strawberry's: a field with a selection set adds one level, introspection fields
(`__schema`, `__typename`, ...) add none, and aliases count as the operation would expand them.

Imports graphql-core only; `extensions.py` installs the rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FloatValueNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VisitorAction,
)
from graphql.language import BREAK

__all__ = ["MAX_INT_DIGITS", "LiteralRangeRule", "Shape", "document_shapes", "shape_rule"]

MAX_INT_DIGITS = 4000
"""Below CPython's own 4,300-digit limit on int() from text."""


@dataclass(frozen=True, slots=True)
class Shape:
    """An operation's depth (fields with selections on its deepest path) and its aliases."""

    depth: int
    aliases: int


@dataclass(frozen=True, slots=True)
class _Local:
    """What one definition holds without following spreads: its own depth and aliases, and
    each spread with the depth it stands at."""

    depth: int
    aliases: int
    spreads: tuple[tuple[str, int | None], ...]


def document_shapes(document: DocumentNode) -> dict[str, Shape]:
    """The shape of each operation of *document*, by name ("" for an anonymous one)."""
    fragments = {
        d.name.value: _local(d.selection_set)
        for d in document.definitions
        if isinstance(d, FragmentDefinitionNode)
    }
    expanded = _expand_fragments(fragments)
    shapes: dict[str, Shape] = {}
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            name = definition.name.value if definition.name else ""
            shapes[name] = _with_spreads(_local(definition.selection_set), expanded)
    return shapes


def shape_rule(*, max_depth: int, max_aliases: int) -> type[ValidationRule]:
    """A validation rule class that refuses operations past *max_depth* or documents past
    *max_aliases* (all operations together), with Strawberry's messages. Make it once: the
    validation cache keys on rule classes."""

    class QueryShapeRule(ValidationRule):
        def enter_document(self, node: DocumentNode, *_args: object) -> VisitorAction:
            _report(self.context, node, max_depth, max_aliases)
            return BREAK  # measured whole: nothing to visit node by node

    return QueryShapeRule


def _report(context: ValidationContext, document: DocumentNode, depth: int, aliases: int) -> None:
    shapes = document_shapes(document)
    for name, shape in shapes.items():
        if shape.depth > depth:
            label = name or "anonymous"
            context.report_error(
                GraphQLError(f"'{label}' exceeds maximum operation depth of {depth}")
            )
    total = sum(shape.aliases for shape in shapes.values())
    if total > aliases:
        context.report_error(GraphQLError(f"{total} aliases found. Allowed: {aliases}"))


def _local(selection_set: SelectionSetNode) -> _Local:
    # An explicit stack: the parser bounds nesting, but not the stack this walk would need.
    # Below an introspection field depth is not counted (None) but aliases still are.
    deepest = aliases = 0
    spreads: list[tuple[str, int | None]] = []
    stack: list[tuple[SelectionSetNode, int | None]] = [(selection_set, 0)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth or 0)
        for selection in current.selections:
            if isinstance(selection, FragmentSpreadNode):
                spreads.append((selection.name.value, depth))
                continue
            below = depth
            if isinstance(selection, FieldNode):
                aliases += selection.alias is not None
                introspection = selection.name.value.startswith("__")
                below = None if depth is None or introspection else depth + 1
            inner: SelectionSetNode | None = getattr(selection, "selection_set", None)
            if inner is not None:
                stack.append((inner, below))
    return _Local(deepest, aliases, tuple(spreads))


def _with_spreads(local: _Local, expanded: dict[str, Shape]) -> Shape:
    depth, aliases = local.depth, local.aliases
    for name, at in local.spreads:
        fragment = expanded.get(name)
        if fragment is not None:  # unknown fragments are another rule's to report
            if at is not None:
                depth = max(depth, at + fragment.depth)
            aliases += fragment.aliases
    return Shape(depth, aliases)


def _expand_fragments(fragments: dict[str, _Local]) -> dict[str, Shape]:
    """Each fragment's shape with its spreads followed, each computed once, in post-order
    without recursion. A spread that closes a cycle adds nothing: NoFragmentCyclesRule
    refuses the document anyway."""
    expanded: dict[str, Shape] = {}
    for root in fragments:
        if root in expanded:
            continue
        path: list[tuple[str, Iterator[tuple[str, int | None]]]] = [
            (root, iter(fragments[root].spreads))
        ]
        on_path = {root}
        while path:
            name, spreads = path[-1]
            child = next(
                (
                    s
                    for s, _ in spreads
                    if s in fragments and s not in expanded and s not in on_path
                ),
                None,
            )
            if child is not None:
                path.append((child, iter(fragments[child].spreads)))
                on_path.add(child)
                continue
            expanded[name] = _with_spreads(fragments[name], expanded)
            path.pop()
            on_path.discard(name)
    return expanded


class LiteralRangeRule(ValidationRule):
    """Refuses number literals that JSON cannot carry: a Float literal such as `1e400` would
    become an infinite float (sent upstream as `Infinity`), and an Int of more than 4,300
    digits makes graphql-core's coercion raise."""

    def enter_float_value(self, node: FloatValueNode, *_args: object) -> None:
        if not math.isfinite(float(node.value)):
            self.report_error(GraphQLError(f"{node.value[:40]} is out of range", node))

    def enter_int_value(self, node: IntValueNode, *_args: object) -> None:
        if len(node.value) > MAX_INT_DIGITS:
            self.report_error(
                GraphQLError(f"an integer literal has more than {MAX_INT_DIGITS} digits", node)
            )
