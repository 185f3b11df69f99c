"""gqlbatch: one GraphQL request carries many REST sub-requests; one typed result comes back per
item. The public surface is what `__all__` lists.
"""

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
