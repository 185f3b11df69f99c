"""Shared type aliases, and nothing else.

Imports nothing from gqlbatch; every other module may import it.
"""

from __future__ import annotations

from typing import Any, TypeAlias

__all__ = ["JSON", "Headers", "RequestId"]

JSON: TypeAlias = Any
"""A value that `json.dumps` accepts: dict, list, str, int, float, bool or None."""

RequestId: TypeAlias = str
"""A sub-request's id, unique within its batch."""

Headers: TypeAlias = tuple[tuple[str, str], ...]
"""HTTP headers as ordered (name, value) pairs; names keep the case they were given."""
