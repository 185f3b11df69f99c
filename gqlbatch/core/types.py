"""Shared type aliases, and the decorator of the values a batch makes per item.

Imports nothing from gqlbatch; every other module may import it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar, dataclass_transform

__all__ = ["JSON", "REQUEST_ID_CHARS", "Headers", "RequestId", "frozen_for_type_checkers"]

JSON: TypeAlias = Any
"""A value that `json.dumps` accepts: dict, list, str, int, float, bool or None."""

RequestId: TypeAlias = str
"""A sub-request's id, unique within its batch."""

REQUEST_ID_CHARS = r"[^\s(){}\[\],\"']"
"""What a requestId is made of (a regular expression for one character): anything but
space, brackets, commas and quotes, so that `resultOf(ID)` always parses."""

Headers: TypeAlias = tuple[tuple[str, str], ...]
"""HTTP headers as ordered (name, value) pairs; names keep the case they were given."""

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def frozen_for_type_checkers(*, kw_only: bool = False) -> Callable[[type[_T]], type[_T]]:
    """A dataclass that type checkers treat as frozen, built without frozen's runtime guard.

    A batch builds several of these per item (a parsed request, its plan, its response, its
    result), and a frozen dataclass sets each field through `object.__setattr__`, a measurable
    share of a batch's instructions (BENCHMARKS.md). Frozen for the type checker only: mypy
    rejects any assignment to a field; what is lost is the runtime check, and hashing. A class
    that is a key (`UpstreamCall`) defines its own `__hash__`, which a dataclass keeps.
    """
    return dataclasses.dataclass(slots=True, kw_only=kw_only)
