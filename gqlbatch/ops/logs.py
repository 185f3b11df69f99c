"""How the process writes its log: one JSON object per line, or text for a person.

`json` (the default for `serve`) writes `{"time", "level", "logger", "message", ...}` per
line. A record's structured fields, passed as `extra={"fields": {...}}` (the batch line's
`event`, `request_id`, `outcome`...), are top-level keys of its line, so a log shipper reads
them without parsing the message. `text` (the default for `demo`) writes
`time level logger message`, then the fields as one JSON object.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["LOG_FORMATS", "configure_logging"]

LOG_FORMATS = ("json", "text")


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _compact(line)


class _TextLines(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        fields = getattr(record, "fields", None)
        return text if fields is None else f"{text} {_compact(fields)}"


def configure_logging(level: str, log_format: str) -> None:
    """Send the process's log to stderr at *level*, as `json` or `text` lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(_JsonLines() if log_format == "json" else _TextLines())
    logging.basicConfig(level=level, handlers=[handler], force=True)
