"""gqlbatch: one GraphQL request carries many REST sub-requests; one typed result comes back per
item. The public surface is what `__all__` lists.

The names are loaded on first use (PEP 562), so that `import gqlbatch.core.plan` or any other core
module loads neither aiohttp nor Strawberry; `tests/test_contracts.py` checks it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gqlbatch.core.config import Settings
    from gqlbatch.core.errors import BatchRejected, ConfigError, ErrorCode, ItemError, Problem
    from gqlbatch.core.result import BatchOutcome, BatchStats, ItemResult, State
    from gqlbatch.core.upstream_settings import UpstreamSettings
    from gqlbatch.doors.app import create_app
    from gqlbatch.doors.graphql.schema import build_schema
    from gqlbatch.doors.listener import running
    from gqlbatch.execution.engine import run_batch
    from gqlbatch.execution.planning import prepare

__all__ = [
    "BatchOutcome",
    "BatchRejected",
    "BatchStats",
    "ConfigError",
    "ErrorCode",
    "ItemError",
    "ItemResult",
    "Problem",
    "Settings",
    "State",
    "UpstreamSettings",
    "__version__",
    "build_schema",
    "create_app",
    "prepare",
    "run_batch",
    "running",
]

__version__ = "0.1.0"

_HOMES = {
    "BatchOutcome": "core.result",
    "BatchRejected": "core.errors",
    "BatchStats": "core.result",
    "ConfigError": "core.errors",
    "ErrorCode": "core.errors",
    "ItemError": "core.errors",
    "ItemResult": "core.result",
    "Problem": "core.errors",
    "Settings": "core.config",
    "State": "core.result",
    "UpstreamSettings": "core.upstream_settings",
    "build_schema": "doors.graphql.schema",
    "create_app": "doors.app",
    "prepare": "execution.planning",
    "run_batch": "execution.engine",
    "running": "doors.listener",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'gqlbatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gqlbatch.{home}"), name)
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
