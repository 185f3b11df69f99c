"""Rendering templates within a meter (issue 24, finding 3): a rendering stops at the first
substituted value past its limit, however many more it holds, and a value written several
times is encoded once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gqlbatch.core.budget import BatchBudget, RequestBudget
from gqlbatch.core.call import to_call
from gqlbatch.core.errors import BatchTooLarge, CallTooLarge
from gqlbatch.core.placeholders import Scope, compile_json, parse_template
from gqlbatch.core.plan import build_plan
from gqlbatch.core.rendering import Meter, render_json, render_text
from gqlbatch.core.request import parse_batch
from gqlbatch.core.request_fields import Rules
from gqlbatch.core.wire import BodyEncoding, Method


class Result:
    def __init__(self, body: Any) -> None:
        self.body, self.status, self.headers = body, 200, ()
        self.body_encoding = BodyEncoding.JSON


class CountedResults(dict[str, Result]):
    """The results a scope reads, counting each read: one per placeholder evaluated."""

    reads = 0

    def __getitem__(self, key: str) -> Result:
        self.reads += 1
        return super().__getitem__(key)


class Over(Exception):
    pass


BIG = "x" * 100_000


@pytest.mark.parametrize(("where", "reads"), [("whole", 10), ("text", 11)])
def test_a_rendering_stops_at_the_first_value_past_its_meter(where: str, reads: int) -> None:
    results = CountedResults(big=Result(BIG))
    placeholder = "{resultOf(big)}" if where == "whole" else "a {resultOf(big)} b"
    errors: list[tuple[str, str]] = []
    body = compile_json({"copies": [placeholder] * 1_000}, "body", errors)
    with pytest.raises(Over):
        render_json(body, Scope(results), Meter(1_000_000, Over))
    # A whole copy is 100,002 characters as JSON (its quotes), one in text 100,000: the tenth
    # or eleventh passes 1,000,000, and the rest are never read.
    assert results.reads == reads


def test_a_text_rendering_stops_too() -> None:
    results = CountedResults(big=Result(BIG))
    template = parse_template("/{resultOf(big)}" * 1_000)
    with pytest.raises(Over):
        render_text(template, Scope(results), meter=Meter(250_000, Over))
    assert results.reads == 3


def test_values_written_again_are_encoded_once_and_stay_right() -> None:
    rows = [{"id": n, "tag": f"t{n}"} for n in range(3)]
    other = [{"id": 10 + n} for n in range(3)]
    scope = Scope({"rows": Result(rows), "other": Result(other)})
    # Each [*] builds a new list: a list freed by one placeholder must not lend its id, and
    # so its text, to the next one's.
    template = parse_template(
        "{resultOf(rows)[*].id}|{resultOf(other)[*].id}|{resultOf(rows)}|{resultOf(rows)}"
    )
    meter = Meter(10_000, Over)
    text = render_text(template, scope, meter=meter)
    compact = ",".join(json.dumps(row, separators=(",", ":")) for row in rows)  # a list: joined
    assert text == f"0,1,2|10,11,12|{compact}|{compact}"
    assert meter.left == 10_000 - len(text) + 3  # what the placeholders wrote, not the bars
    assert render_text(template, scope) == text  # no meter: the same text


def _planned(body: Any) -> Any:
    rules = Rules(
        upstreams=frozenset({"u"}),
        default_upstream="u",
        max_items=10,
        max_fanout=10,
        methods=frozenset(Method),
    )
    items = [{"requestId": "big", "path": "/big"}, {"method": "POST", "path": "/p", "body": body}]
    return build_plan(parse_batch(items, None, rules), max_fanout=10).items[1]


def _budget(call: int, request: int) -> BatchBudget:
    return BatchBudget(
        RequestBudget(
            items=10,
            calls=10,
            rendered_bytes=request,
            response_bytes=10**9,
            max_call_bytes=call,
        )
    )


@pytest.mark.parametrize(
    ("call", "left", "error"),
    [(500_000, 10**9, CallTooLarge), (10**9, 500_000, BatchTooLarge)],
    ids=["the call's limit", "the request's bytes left"],
)
def test_a_call_stops_at_whichever_limit_is_nearer(
    call: int, left: int, error: type[Exception]
) -> None:
    results = CountedResults(big=Result(BIG))
    item = _planned(["{resultOf(big)}"] * 1_000)
    with pytest.raises(error, match="nothing was sent"):
        to_call(item, Scope(results), {}, _budget(call, left).meter())
    assert results.reads == 5


def test_a_value_in_every_call_of_a_batch_is_measured_once() -> None:
    # The meters of one batch share what they learnt: a result embedded in each of its calls
    # is written out, to be measured, once (and then once more by each call, as its body).
    class Counted(dict[str, int]):
        written = 0

        def items(self) -> Any:  # what json.dumps reads of a dict's subclass
            Counted.written += 1
            return super().items()

    budget = _budget(10**9, 10**9)
    item = _planned({"copy": "{resultOf(big)}"})
    scope = Scope(CountedResults(big=Result(Counted(a=1))))
    for _ in range(5):
        to_call(item, scope, {}, budget.meter())
    assert Counted.written == 1 + 5
