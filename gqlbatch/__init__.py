"""gqlbatch: one GraphQL request carries many REST sub-requests; one typed result comes back per
item. The public surface is what `__all__` lists.

The names are loaded on first use (PEP 562), so that `import gqlbatch.plan` or any other core
module loads neither aiohttp nor Strawberry; `tests/test_contracts.py` checks it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gqlbatch.app import create_app
    from gqlbatch.config import Settings, UpstreamSettings
    from gqlbatch.engine import prepare, run_batch
    from gqlbatch.errors import BatchRejected, ConfigError, ErrorCode, ItemError, Problem
    from gqlbatch.listener import running
    from gqlbatch.result import BatchOutcome, BatchStats, ItemResult, State
    from gqlbatch.schema import build_schema

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
    "BatchOutcome": "result",
    "BatchRejected": "errors",
    "BatchStats": "result",
    "ConfigError": "errors",
    "ErrorCode": "errors",
    "ItemError": "errors",
    "ItemResult": "result",
    "Problem": "errors",
    "Settings": "config",
    "State": "result",
    "UpstreamSettings": "config",
    "build_schema": "schema",
    "create_app": "app",
    "prepare": "engine",
    "run_batch": "engine",
    "running": "listener",
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
