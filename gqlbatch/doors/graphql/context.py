"""What the GraphQL door's resolvers read through `info.context`: the engine's context for the
request (`BatchContext`), and what only this door keeps beside it."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gqlbatch.core.result import BatchOutcome
from gqlbatch.core.types import frozen_for_type_checkers
from gqlbatch.execution.context import BatchContext
from gqlbatch.execution.jobs import Jobs

__all__ = ["Context"]


@frozen_for_type_checkers()
class Context(BatchContext):
    """A GraphQL request's context: the engine's, and the door's own state."""

    jobs: Jobs | None = None
    """Where this server's async batches are submitted, read and cancelled."""
    seen: Callable[[BatchOutcome], None] | None = None
    """Told each of the request's batches once it has run, for the HTTP caching headers of a
    read-only query over GET (`Query.batch`)."""
    finished: Mapping[str, BatchOutcome] | None = None
    """Batches of this operation that have already run, by response key: the compiled path
    hands them over when graphql-core is to write their answers instead, so that no batch
    runs twice."""
