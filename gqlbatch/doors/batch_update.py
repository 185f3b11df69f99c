"""`POST /batchUpdate` (and `[doors] operations_paths`): Slides-style named operations, run in
order, all or nothing (issue 27). The mapping from names to REST calls is
`core.named_operations`'; the run is an atomic batch of the engine, so the earlier calls are
compensated, newest first, when one fails.

Answers: `{"replies": [{"createUser": <answer>}, ...]}` by index (`writeControl` echoed), or
`{"error": {"code", "message", "status", "requestIndex"}}` with the failing call's status. A
request that cannot run (an unknown name, a missing argument, a write that cannot be undone)
is refused whole, before anything is sent, in the REST door's shape.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gqlbatch.core.errors import BatchRejected
from gqlbatch.core.named_operations import map_requests, replies
from gqlbatch.core.result import State
from gqlbatch.doors.http import CONTEXT, NO_STORE, read_json
from gqlbatch.doors.rest import answer_headers, http_status
from gqlbatch.execution.engine import run_batch

__all__ = ["OPERATIONS_DOOR", "batch_update"]

OPERATIONS_DOOR = "/batchUpdate"
_ALL_OR_NOTHING = {"atomic": True}


async def batch_update(request: web.Request) -> web.Response:
    """Run a batchUpdate's requests in order, all or nothing."""
    ctx = request[CONTEXT]
    document = read_json(await request.read(), ctx.settings.max_json_depth)
    mapped = map_requests(document, ctx.settings.operations, dict(request.match_info))
    if mapped.problems:
        raise BatchRejected(mapped.problems)
    outcome = await run_batch(mapped.items, _ALL_OR_NOTHING, ctx)
    headers = {**answer_headers(outcome), "Cache-Control": NO_STORE}
    failed = next(
        (i for i, r in enumerate(outcome.results) if r.state is not State.SUCCEEDED), None
    )
    if failed is None:
        answer: dict[str, Any] = {
            "replies": replies(mapped.names, [r.body for r in outcome.results])
        }
        if isinstance(document, dict) and "writeControl" in document:
            answer["writeControl"] = document["writeControl"]
        return web.json_response(answer, headers=headers)
    result = outcome.results[failed]
    status = http_status(result)
    error = {
        "code": result.error.code.value if result.error else "UPSTREAM_STATUS",
        "message": result.error.message if result.error else f"answered {status}",
        "status": status,
        "requestIndex": failed,
    }
    return web.json_response({"error": error}, status=status, headers=headers)
