"""How deep and how aliased a GraphQL document is, in time linear in the document.

Strawberry's QueryDepthLimiter and MaxAliasesLimiter expand every fragment spread where it
stands, so fragments that each spread the next one ten times, seven levels deep, made them walk
ten million paths: a 650-byte query held the event loop for 46 s. Here each fragment is measured
once, and a spread adds its fragment's memoized measure (its depth below the spread, its aliases
times one), so the work is one pass over the document whatever it expands to. The counts are
the same as Strawberry's: a field with a selection set adds one level, introspection fields
(`__schema`, `__typename`, ...) add none, and aliases count as the operation would expand them.

Imports graphql-core only; `extensions.py` runs `document_problems` before any validation rule,
so that a document that fails it costs no more than this linear walk.
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
    InlineFragmentNode,
    IntValueNode,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
)

from gqlbatch.core.errors import ErrorCode

__all__ = [
    "MAX_FIELDS",
    "MAX_INT_DIGITS",
    "MAX_REPEATS",
    "MAX_SPREADS",
    "LiteralRangeRule",
    "Shape",
    "document_problems",
    "document_shapes",
]

MAX_INT_DIGITS = 4000
"""Below CPython's own 4,300-digit limit on int() from text."""
MAX_REPEATS = 16
"""Fields of one response name in one selection set (see `document_problems`)."""
MAX_SPREADS = 32
"""Fragment spreads in one selection set (see `document_problems`)."""
MAX_FIELDS = 2_000
"""Fields a document selects, counted as its fragments expand: what validation and
execution really walk, whatever the document's own size (see `document_problems`)."""


@dataclass(frozen=True, slots=True)
class Shape:
    """An operation's depth (fields with selections on its deepest path), its aliases and
    its fields, counted as its fragments expand."""

    depth: int
    aliases: int
    fields: int = 0


@dataclass(frozen=True, slots=True)
class _Local:
    """What one definition holds without following spreads: its own depth and aliases, and
    each spread with the depth it stands at."""

    depth: int
    aliases: int
    fields: int
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


def document_problems(
    document: DocumentNode, *, max_depth: int, max_aliases: int
) -> list[GraphQLError]:
    """What makes *document* too big to validate and run: an operation past *max_depth*, the
    document past *max_aliases* or MAX_FIELDS (all operations together, as fragments
    expand), or a selection set that repeats one response name more than MAX_REPEATS times or
    spreads more than MAX_SPREADS fragments.

    The last two bound graphql-core's OverlappingFieldsCanBeMergedRule, which compares the
    fields of one response name, and the fragments of one selection set, pairwise: 800 `batch`
    fields under one parent took it 0.9 s, 4,000 `body(select:)` variants 2 s. Real documents
    never need either (the same field twice under one parent merges into one; aliases tell
    them apart), so they are refused before any other rule runs.
    """
    problems: list[GraphQLError] = []
    shapes = document_shapes(document)
    for name, shape in shapes.items():
        if shape.depth > max_depth:
            label = name or "anonymous"
            problems.append(
                _too_complex(f"'{label}' exceeds maximum operation depth of {max_depth}")
            )
    total = sum(shape.aliases for shape in shapes.values())
    if total > max_aliases:
        problems.append(_too_complex(f"{total} aliases found. Allowed: {max_aliases}"))
    fields = sum(shape.fields for shape in shapes.values())
    if fields > MAX_FIELDS:
        problems.append(
            _too_complex(
                f"the document selects {fields} fields as its fragments expand; at most "
                f"{MAX_FIELDS}"
            )
        )
    problems.extend(_repeats(document))
    return problems


def _repeats(document: DocumentNode) -> list[GraphQLError]:
    problems: list[GraphQLError] = []
    stack = [
        d.selection_set
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode | FragmentDefinitionNode)
    ]
    while stack and not problems:
        selection_set = stack.pop()
        keys: dict[str, int] = {}
        spreads = 0
        # Fields of inline fragments are collected with their parent's, as the rule does.
        flat = [selection_set]
        while flat:
            for selection in flat.pop().selections:
                if isinstance(selection, FieldNode):
                    key = (selection.alias or selection.name).value
                    keys[key] = keys.get(key, 0) + 1
                    if selection.selection_set is not None:
                        stack.append(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    spreads += 1
                elif isinstance(selection, InlineFragmentNode):
                    flat.append(selection.selection_set)
        key, count = max(keys.items(), key=lambda kv: kv[1], default=("", 0))
        if count > MAX_REPEATS:
            problems.append(
                _too_complex(
                    f"'{key}' is selected {count} times in one selection set; at most "
                    f"{MAX_REPEATS} (alias the ones that differ)"
                )
            )
        if spreads > MAX_SPREADS:
            problems.append(
                _too_complex(
                    f"{spreads} fragment spreads in one selection set; at most {MAX_SPREADS}"
                )
            )
    return problems


def _local(selection_set: SelectionSetNode) -> _Local:
    # An explicit stack: the parser bounds nesting, but not the stack this walk would need.
    # Below an introspection field depth is not counted (None) but aliases still are.
    deepest = aliases = fields = 0
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
                fields += 1
                aliases += selection.alias is not None
                introspection = selection.name.value.startswith("__")
                below = None if depth is None or introspection else depth + 1
            inner: SelectionSetNode | None = getattr(selection, "selection_set", None)
            if inner is not None:
                stack.append((inner, below))
    return _Local(deepest, aliases, fields, tuple(spreads))


def _with_spreads(local: _Local, expanded: dict[str, Shape]) -> Shape:
    depth, aliases, fields = local.depth, local.aliases, local.fields
    for name, at in local.spreads:
        fragment = expanded.get(name)
        if fragment is not None:  # unknown fragments are another rule's to report
            if at is not None:
                depth = max(depth, at + fragment.depth)
            aliases += fragment.aliases
            fields += fragment.fields
    return Shape(depth, aliases, fields)


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
            self.report_error(_too_complex(f"{node.value[:40]} is out of range", node))

    def enter_int_value(self, node: IntValueNode, *_args: object) -> None:
        if len(node.value) > MAX_INT_DIGITS:
            self.report_error(
                _too_complex(f"an integer literal has more than {MAX_INT_DIGITS} digits", node)
            )


def _too_complex(message: str, node: Node | None = None) -> GraphQLError:
    # The code is set here, where the limit is known, rather than read back from the text.
    return GraphQLError(message, node, extensions={"code": ErrorCode.QUERY_TOO_COMPLEX.value})
