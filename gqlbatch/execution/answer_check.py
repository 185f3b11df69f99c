"""Upstream answers checked against their OpenAPI documents (`[upstreams.NAME]
validate_responses`): "log" warns about an answer that breaks its documented schema; "fail"
makes its item fail with UPSTREAM_BAD_RESPONSE and the first JSON pointer, so that nothing
downstream reads a body its document says cannot be.

It wraps the batch's fetch, so each item's own answer is checked (a bulk call's rows too, once
split), before any dependent reads it. The check is charged to the request's budget
(`core.schema_checks`), and a large answer is checked off the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from gqlbatch.core.budget import RequestBudget
from gqlbatch.core.errors import UpstreamBadResponse
from gqlbatch.core.openapi import Contract
from gqlbatch.core.schema_checks import (
    ERRORS_SHOWN,
    TooSlowForTheLoop,
    count_values,
    on_the_loop,
)
from gqlbatch.core.wire import BodyEncoding, Fetch, Fetched, UpstreamCall
from gqlbatch.execution.offload import INLINE_VALUES, Offload

__all__ = ["checking_answers"]

log = logging.getLogger("gqlbatch.upstream")


def checking_answers(
    fetch: Fetch,
    contracts: Mapping[str, Contract],
    modes: Mapping[str, str],
    budget: RequestBudget,
    offload: Offload | None,
) -> Fetch:
    """*fetch*, with the answers of upstreams whose mode is "log" or "fail" checked, at the
    cost of *budget*; those too large to check on the loop are checked by *offload*."""

    async def checked(call: UpstreamCall) -> Fetched:
        fetched = await fetch(call)
        mode, contract, response = (
            modes.get(call.upstream),
            contracts.get(call.upstream),
            fetched.response,
        )
        if mode is None or contract is None or response.body_encoding is not BodyEncoding.JSON:
            return fetched

        def check() -> list[str]:
            return contract.answer_problems(
                call.method, call.path, response.status, response.body, budget
            )

        heavy = count_values(response.body, INLINE_VALUES + 1) > INLINE_VALUES
        problems = await offload(check) if heavy and offload is not None else None
        if problems is None:
            problems = await _checked_here(check, budget, offload)
        if not problems:
            return fetched
        said = (
            f"{call.method} {call.path} answered {response.status}, not as {contract.source} says"
        )
        more = ""
        if len(problems) > 1:
            others = "more" if len(problems) > ERRORS_SHOWN else f"{len(problems) - 1} more"
            more = f" (and {others})"
        if mode == "log":
            log.warning("%s: %s%s", said, problems[0], more)
            return fetched
        error = UpstreamBadResponse(f"{said}: {problems[0]}{more}")
        error.attempts = response.attempts
        raise error

    return checked


async def _checked_here(
    check: Callable[[], list[str]], budget: RequestBudget, offload: Offload | None
) -> list[str]:
    """*check*'s findings, made on the loop unless a pattern would hold it there."""
    if offload is None:
        return check()
    values, token = budget.checked_values, on_the_loop.set(True)
    try:
        return check()
    except TooSlowForTheLoop:
        budget.checked_values = values  # counted again where it is made again
    finally:
        on_the_loop.reset(token)
    return await offload(check)
