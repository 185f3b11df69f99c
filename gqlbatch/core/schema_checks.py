"""Checking JSON against an OpenAPI document's schemas with bounded work (issue 24).

A client's body or an upstream's answer could otherwise make a check as long as it likes: a
million array elements, or a document's `pattern` that backtracks (`^(a|aa)+$` took minutes
on a short string with the standard library's `re`). Here:

- a value's JSON values are counted before it is checked, against what its request may still
  have checked (`RequestBudget.checked_values`, `[limits] max_checked_values`);
- patterns run on the `regex` module, with a time bound (`RequestBudget.pattern_s`, shared by
  every pattern of one request), and without holding the GIL while they match; a check made
  on the event loop (`on_the_loop`) gives a pattern a few milliseconds only, and stops with
  `TooSlowForTheLoop` past them, to be made again off the loop;
- no more than `ERRORS_SHOWN` errors are listed, each message cut short.

Pure and synchronous: where a check runs (on the event loop, or off it) is the caller's call.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from itertools import islice
from typing import TYPE_CHECKING, Any

from gqlbatch.core.budget import RequestBudget

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

__all__ = [
    "ERRORS_SHOWN",
    "LOOP_PATTERN_S",
    "CheckTooCostly",
    "TooSlowForTheLoop",
    "bounded_validator",
    "count_values",
    "on_the_loop",
    "schema_errors",
    "short",
]

ERRORS_SHOWN = 10
"""Errors listed per checked value; a body with a million wrong elements is not a million
problems in the answer."""
_MESSAGE_CHARS = 300


class CheckTooCostly(Exception):
    """A check would cost more than its request may still spend; the text says which bound."""


class TooSlowForTheLoop(Exception):
    """A check made on the event loop met a pattern that takes longer than the loop may wait
    (`LOOP_PATTERN_S`): the check is to be made again off the loop, within the request's own
    time for patterns."""


LOOP_PATTERN_S = 0.01
"""The longest one pattern may match on the event loop."""

on_the_loop: ContextVar[bool] = ContextVar("gqlbatch_check_on_the_loop", default=False)
"""Set while a check runs on the event loop (`planning.planned`, `answer_check`)."""


def count_values(value: object, stop: int) -> int:
    """The JSON values in *value* (each scalar, list and object is one), counting no further
    than *stop*: the cost of a check, known at the cost of at most *stop* steps."""
    count = 0
    stack: list[Iterator[object]] = [iter((value,))]
    while stack:
        for inner in stack[-1]:
            count += 1
            if count >= stop:
                return count
            if isinstance(inner, dict):
                stack.append(iter(inner.values()))
                break
            if isinstance(inner, list):
                stack.append(iter(inner))
                break
        else:
            stack.pop()
    return count


def schema_errors(
    validator: Any,
    instance: object,
    budget: RequestBudget,
    keep: Callable[[ValidationError], bool] = lambda _: True,
) -> list[ValidationError]:
    """The first errors (up to `ERRORS_SHOWN` + 1, so a caller can say there were more) that
    *validator* finds in *instance*, of those *keep* keeps; charged to *budget*.

    Raises:
        CheckTooCostly: *instance* has more values than *budget* may still check, or its
            patterns ran out of the request's time for them.
    """
    left = budget.checked_values
    size = count_values(instance, left + 1)
    if not budget.take_checked(size):
        raise CheckTooCostly(
            f"it holds more than the {left} JSON values its request may still have checked "
            "(max_checked_values)"
        )
    token = _budget.set(budget)
    try:
        return list(islice(filter(keep, validator.iter_errors(instance)), ERRORS_SHOWN + 1))
    finally:
        _budget.reset(token)


def short(message: str) -> str:
    """A validation message cut to a length an answer can carry: jsonschema's messages quote
    the whole instance (`[1, 2, ...] is not of type 'string'`)."""
    if len(message) <= _MESSAGE_CHARS:
        return message
    return message[: _MESSAGE_CHARS - 3] + "..."


@functools.cache
def bounded_validator(kind: type) -> Any:
    """*kind* (a jsonschema validator class), with `pattern` and `patternProperties` matched
    within the request's time (`jsonschema.validators.extend`, its documented way to
    replace a keyword)."""
    from jsonschema.validators import extend

    keywords = {"pattern": _pattern, "patternProperties": _pattern_properties}
    return extend(kind, keywords)  # type: ignore[no-untyped-call]  # types-jsonschema: untyped


_budget: ContextVar[RequestBudget | None] = ContextVar("gqlbatch_check_budget", default=None)
"""The budget of the check running in this thread or task: the keywords' only way to it."""
_NO_BUDGET_S = 0.5
"""The time a pattern gets when checked outside `schema_errors` (a test, say)."""


def _search(pattern: str, text: str) -> bool:
    """Whether *pattern* matches somewhere in *text*, within the request's time for patterns.

    Raises:
        CheckTooCostly: the time ran out.
        ValueError: *pattern* is not a regular expression.
    """
    import regex

    budget = _budget.get()
    left = _NO_BUDGET_S if budget is None else budget.pattern_s
    loop = on_the_loop.get()
    allowed = min(left, LOOP_PATTERN_S) if loop else left
    started = time.perf_counter()
    try:
        # concurrent=True lets go of the GIL while it matches: a check running in a thread
        # leaves the event loop's thread free meanwhile.
        found = regex.search(pattern, text, timeout=max(allowed, 0.001), concurrent=True)
        return found is not None
    except regex.error as exc:
        raise ValueError(
            f"the pattern {short(pattern)!r} is not a regular expression: {exc}"
        ) from exc
    except TimeoutError:
        if loop and allowed < left:
            raise TooSlowForTheLoop from None
        raise CheckTooCostly(
            f"the pattern {short(pattern)!r} did not finish matching within the {left:.2f} s "
            "left to its request's patterns"
        ) from None
    finally:
        if budget is not None:
            budget.pattern_s = max(budget.pattern_s - (time.perf_counter() - started), 0.0)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "string"):
        return
    try:
        found = _search(pattern, instance)
    except ValueError as exc:
        yield ValidationError(str(exc))
        return
    if not found:
        yield ValidationError(f"{short(repr(instance))} does not match {short(pattern)!r}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    from jsonschema.exceptions import ValidationError

    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            try:
                found = _search(pattern, key)
            except ValueError as exc:
                yield ValidationError(str(exc))
                return
            if found:
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)
