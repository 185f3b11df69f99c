"""What the GraphQL door's resolvers read through `info.context`."""

from __future__ import annotations

from gqlbatch.execution.context import BatchContext

__all__ = ["Context"]

Context = BatchContext
"""The engine's per-request context, which the door's resolvers read."""
