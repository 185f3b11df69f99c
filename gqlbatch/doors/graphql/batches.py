"""One `batch` field's batch, run by the engine, whichever path answers the field: Strawberry's
resolver (`operations`) or the compiled path (`extensions.CompiledBatches`), which call down
to here; the engine's outcome goes back up to the door that writes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gqlbatch.core.request import with_defaults
from gqlbatch.core.result import BatchOutcome
from gqlbatch.doors.graphql.context import Context
from gqlbatch.doors.graphql.inputs import without_nulls
from gqlbatch.execution.engine import run_batch

__all__ = ["compiled_outcome", "field_outcome"]


async def field_outcome(
    ctx: Context, scope: str, items: list[Any], options: object, read_only: bool
) -> BatchOutcome:
    """Runs one `batch` field's batch, unless the compiled path already has (`finished`).

    Raises:
        BatchRejected: as `run_batch`.
    """
    finished = ctx.finished.get(scope) if ctx.finished is not None else None
    if finished is not None:
        return finished
    outcome = await run_batch(items, options, ctx, read_only=read_only, scope=scope)
    if ctx.seen is not None:
        ctx.seen(outcome)
    return outcome


async def compiled_outcome(
    ctx: Context, scope: str, args: Mapping[str, Any], read_only: bool
) -> BatchOutcome:
    """One `batch` field's batch, from graphql-core's coerced arguments (the compiled path):
    input objects are already the plain mappings the engine reads, less their nulls.

    Raises:
        BatchRejected: as `run_batch`.
    """
    items = [without_nulls(r) for r in args["requests"]]
    options = args.get("options")
    present = None if options is None else without_nulls(options)
    defaults = ctx.settings.door_options.get("graphql", {})
    return await field_outcome(ctx, scope, items, with_defaults(defaults, present), read_only)
