"""The dependency graph of a batch: `build_plan` parses every placeholder, adds its implicit
edges, rejects unknown ids and cycles, and fixes a stable order.

Pure and synchronous. Implements DESIGN §4 "Validate first, all of it" and "Dependencies".
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter

from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem
from gqlbatch.core.placeholders import (
    Ref,
    Template,
    TemplateSyntaxError,
    compile_json,
    json_references,
    parse_template,
)
from gqlbatch.core.request import BatchOptions, Mode, Parsed, SubRequest
from gqlbatch.core.types import JSON, RequestId, frozen_for_type_checkers

__all__ = ["Plan", "PlannedItem", "build_plan", "known_calls", "static_calls", "widest_step"]


@frozen_for_type_checkers(kw_only=True)
class PlannedItem:
    """A sub-request with its templates parsed and its dependencies resolved."""

    request: SubRequest
    request_id: RequestId
    """The request's requestId, kept here: the executor reads it many times per item."""
    index: int
    """The request's position in the client's list."""
    path: Template
    query: tuple[tuple[str, Template], ...]
    headers: tuple[tuple[str, Template], ...]
    body: JSON
    depends_on: tuple[RequestId, ...]
    for_each: Ref | list[JSON] | None = None
    """The list this item fans out over: one placeholder, or a literal (compiled) JSON list."""
    compensation: PlannedItem | None = None
    """For atomic batches: the planned request that undoes this one."""


@dataclass(frozen=True, slots=True)
class Plan:
    """A valid batch, ready to execute.

    Attributes:
        items: in the client's order.
        order: item indexes in a dependency order that prefers the client's order; SEQUENTIAL
            mode runs them in exactly this order.
        options: how to run it.
    """

    items: tuple[PlannedItem, ...]
    order: tuple[int, ...]
    options: BatchOptions
    groups: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    """Each atomicity group's items, by index, in the order they run (the client's)."""


def build_plan(
    parsed: Parsed,
    *,
    max_fanout: int = 1000,
    checks: Callable[[Sequence[PlannedItem]], list[Problem]] | None = None,
) -> Plan:
    """Plan a parsed batch, or reject it with its problems and every graph problem at once.
    *checks* reads the planned items (their placeholders parsed once, here) for problems of
    its own, such as placeholders an upstream's answer cannot satisfy.

    Raises:
        BatchRejected: the batch has any problem; nothing may run.
    """
    problems = list(parsed.problems)
    known = frozenset(parsed.request_ids)
    groups = _groups(parsed.batch.items)
    items = [
        _with_compensation(_plan_item(item, known, problems, groups), known, problems)
        for item in parsed.batch.items
    ]
    if checks is not None:
        problems.extend(checks(items))
    items = _with_group_edges(items, groups)
    order, cycle = _order(items)
    problems.extend(cycle)
    problems.extend(_fanout_problems(items, max_fanout))
    if problems:
        raise BatchRejected(problems)
    by_id = {item.request_id: item.index for item in items}
    members = {g: tuple(by_id[rid] for rid in rids) for g, rids in groups.items()}
    return Plan(tuple(items), order, parsed.batch.options, members)


def _groups(items: Sequence[SubRequest]) -> dict[str, tuple[RequestId, ...]]:
    groups: dict[str, list[RequestId]] = {}
    for item in items:
        if item.atomicity_group is not None:
            groups.setdefault(item.atomicity_group, []).append(item.request_id)
    return {name: tuple(members) for name, members in groups.items()}


def _with_group_edges(
    items: list[PlannedItem], groups: Mapping[str, tuple[RequestId, ...]]
) -> list[PlannedItem]:
    """An atomicity group runs one item at a time, in the client's order, so that the first
    failure stops it: each member depends on the one before. An item outside the group that
    depends on a member runs after the whole group, which may still be undone."""
    if not groups:
        return items
    group_of = {rid: name for name, members in groups.items() for rid in members}
    planned = []
    for item in items:
        edges = dict.fromkeys(item.depends_on)
        own = item.request.atomicity_group
        if own is not None:
            members = groups[own]
            position = members.index(item.request_id)
            if position:
                edges.setdefault(members[position - 1])
        for dep in item.depends_on:
            group = group_of.get(dep)
            if group is not None and group != own:
                edges.setdefault(groups[group][-1])
        planned.append(dataclasses.replace(item, depends_on=tuple(edges)))
    return planned


def _plan_item(
    item: SubRequest,
    known: frozenset[RequestId],
    problems: list[Problem],
    groups: Mapping[str, tuple[RequestId, ...]] | None = None,
) -> PlannedItem:
    errors: list[tuple[str, str]] = []
    path = _template(item.path, "path", errors)
    refs = [("path", r) for r in path.refs]
    query: tuple[tuple[str, Template], ...] = ()
    if item.query:  # the parts most items lack are skipped, not walked empty
        query = tuple((k, _template(v, f"query.{k}", errors)) for k, v in item.query)
        refs += [(f"query.{k}", r) for k, t in query for r in t.refs]
    headers: tuple[tuple[str, Template], ...] = ()
    if item.headers:
        headers = tuple((k, _template(v, f"headers.{k}", errors)) for k, v in item.headers)
        refs += [(f"headers.{k}", r) for k, t in headers for r in t.refs]
    body = None
    if item.body is not None:
        body = compile_json(item.body, "body", errors)
        if body is not item.body:  # the same value back: it holds no placeholder
            refs += [("body", r) for r in json_references(body)]
    for_each = None if item.for_each is None else _for_each(item, errors)
    for field, message in errors:
        problems.append(_problem(item, ErrorCode.INVALID_REFERENCE, message, field))
    if isinstance(for_each, Ref):
        refs.append(("forEach", for_each))
    elif isinstance(for_each, list):
        refs += [("forEach", r) for r in json_references(for_each)]
    depends_on = _edges(item, refs, known, problems, groups or {})
    return PlannedItem(
        request=item,
        request_id=item.request_id,
        index=item.index,
        path=path,
        query=query,
        headers=headers,
        body=body,
        depends_on=depends_on,
        for_each=for_each,
    )


def _with_compensation(
    item: PlannedItem, known: frozenset[RequestId], problems: list[Problem]
) -> PlannedItem:
    # A compensation runs after the whole batch, so it may read any result, its own item's
    # included, and adds no edge to the graph. Its problems are reported on its item.
    compensate = item.request.compensate
    if compensate is None:
        return item
    found: list[Problem] = []
    planned = _plan_item(compensate, known, found)
    problems.extend(
        Problem(p.code, p.message, item.request_id, item.index, f"compensate.{p.field}")
        for p in found
    )
    return dataclasses.replace(item, compensation=planned)


def _edges(
    item: SubRequest,
    refs: list[tuple[str, Ref]],
    known: frozenset[RequestId],
    problems: list[Problem],
    groups: Mapping[str, tuple[RequestId, ...]],
) -> tuple[RequestId, ...]:
    """Explicit dependsOn plus every id a placeholder reads; each must be in the batch. A
    dependsOn that names an atomicity group (OData) depends on each of its items."""
    edges: dict[RequestId, None] = {}
    for dep in item.depends_on:
        members = groups.get(dep)
        if members is not None and dep == item.atomicity_group:
            message = f"dependsOn names '{dep}', this item's own atomicityGroup"
            problems.append(_problem(item, ErrorCode.INVALID_INPUT, message, "dependsOn"))
        elif members is not None:
            edges.update(dict.fromkeys(members))
        else:
            edges.setdefault(dep)
        if dep not in known and members is None:
            message = f"dependsOn '{dep}', which is not a requestId or atomicityGroup in this batch"
            problems.append(
                _problem(
                    item,
                    ErrorCode.UNKNOWN_DEPENDENCY,
                    f"{message} (known: {_list(known)})",
                    "dependsOn",
                )
            )
    for field, ref in refs:
        if ref.target is None and (item.for_each is None or field == "forEach"):
            message = f"{ref.text} is only available inside a forEach item's other fields"
        elif ref.target is None:
            continue
        elif ref.target not in known:
            message = (
                f"{ref.text} refers to '{ref.target}', which is not a requestId in this "
                f"batch (known: {_list(known)})"
            )
        else:
            edges.setdefault(ref.target)
            continue
        problems.append(_problem(item, ErrorCode.INVALID_REFERENCE, message, field))
    return tuple(edges)


def _for_each(item: SubRequest, errors: list[tuple[str, str]]) -> Ref | list[JSON] | None:
    if isinstance(item.for_each, list):
        return list(compile_json(item.for_each, "forEach", errors))
    if item.for_each is None:
        return None
    whole = _template(item.for_each, "forEach", errors).whole
    if whole is None:
        errors.append(
            (
                "forEach",
                "forEach must be exactly one placeholder, such as "
                f"'{{resultOf(posts)[*].userId}}', got {item.for_each!r}",
            )
        )
    return whole


def _fanout_problems(items: Sequence[PlannedItem], max_fanout: int) -> list[Problem]:
    calls = static_calls(items)
    if calls <= max_fanout:
        return []
    return [
        Problem(
            ErrorCode.BATCH_TOO_LARGE,
            f"the batch asks for {calls} upstream calls, more than max_fanout ({max_fanout})",
            field="requests",
        )
    ]


def static_calls(items: Sequence[PlannedItem]) -> int:
    """The upstream calls a batch asks for, as far as is known before it runs: one per plain
    item, one per literal forEach element, and one for a forEach over a placeholder, whose list
    is checked against max_fanout when it is known."""
    return sum(len(i.for_each) if isinstance(i.for_each, list) else 1 for i in items)


def known_calls(items: Sequence[PlannedItem]) -> int | None:
    """The upstream calls a batch will ask for, or None when a forEach over a placeholder
    makes that unknowable before it runs."""
    if any(isinstance(i.for_each, Ref) for i in items):
        return None
    return static_calls(items)


def widest_step(plan: Plan) -> int | None:
    """The most upstream calls *plan* may have in flight at once, before deduplication: the
    calls of its widest step (items whose dependencies are all in earlier steps), or of its
    largest item when it runs SEQUENTIAL; None when a forEach over a placeholder makes that
    unknowable before it runs."""
    if known_calls(plan.items) is None:
        return None
    calls = [len(i.for_each) if isinstance(i.for_each, list) else 1 for i in plan.items]
    if plan.options.mode is Mode.SEQUENTIAL:
        return max(calls, default=0)
    index = {item.request_id: item.index for item in plan.items}
    step: dict[int, int] = {}
    for i in plan.order:  # dependencies first
        deps = [step[index[d]] for d in plan.items[i].depends_on if index.get(d) in step]
        step[i] = 1 + max(deps, default=0)
    widths: dict[int, int] = {}
    for i, at in step.items():
        widths[at] = widths.get(at, 0) + calls[i]
    return max(widths.values(), default=0)


def _template(text: str, field: str, errors: list[tuple[str, str]]) -> Template:
    try:
        return parse_template(text)
    except TemplateSyntaxError as exc:
        errors.append((field, str(exc)))
        return Template((text,))


def _order(items: Sequence[PlannedItem]) -> tuple[tuple[int, ...], list[Problem]]:
    """A dependency order that takes the lowest ready index first (so SEQUENTIAL keeps the
    client's order wherever the dependencies allow), or the cycle that prevents one.

    Checked even when other problems were found, so that one rejection lists them all: the
    graph keeps the first item of a duplicated id and only the edges to ids that exist.
    """
    by_id: dict[RequestId, PlannedItem] = {}
    for item in items:
        by_id.setdefault(item.request_id, item)
    if not any(item.depends_on for item in items):
        # Independent items (a fan-out) need no sorting, and graphlib's cost per node is a
        # large part of planning such a batch.
        return tuple(item.index for item in by_id.values()), []
    sorter = TopologicalSorter(
        {rid: [d for d in item.depends_on if d in by_id] for rid, item in by_id.items()}
    )
    try:
        sorter.prepare()
    except CycleError as exc:
        # graphlib lists the cycle along predecessor edges, first node repeated at the end;
        # reversed, it reads in "depends on" order: a -> b -> a means a depends on b.
        cycle = list(reversed(exc.args[1]))
        message = f"dependencies form a cycle: {' -> '.join(cycle)}"
        return (), [
            _problem(by_id[cycle[0]].request, ErrorCode.DEPENDENCY_CYCLE, message, "dependsOn")
        ]
    at_index = {item.index: rid for rid, item in by_id.items()}
    ready: list[int] = []
    order: list[int] = []
    while sorter.is_active():
        for rid in sorter.get_ready():
            heapq.heappush(ready, by_id[rid].index)
        nxt = heapq.heappop(ready)
        order.append(nxt)
        sorter.done(at_index[nxt])
    return tuple(order), []


def _problem(item: SubRequest, code: ErrorCode, message: str, field: str) -> Problem:
    return Problem(code, message, item.request_id, item.index, field)


def _list(ids: frozenset[RequestId]) -> str:
    shown = sorted(ids)[:20]
    more = f", and {len(ids) - 20} more" if len(ids) > 20 else ""
    return ", ".join(f"'{i}'" for i in shown) + more
