"""How the process writes its log: one JSON object per line, or text for a person.

`json` (the default for `serve`) writes `{"time", "level", "logger", "message", ...}` per
line. A record's structured fields, passed as `extra={"fields": {...}}` (the batch line's
`event`, `request_id`, `outcome`...), are top-level keys of its line, so a log shipper reads
them without parsing the message. `text` (the default for `demo`) writes
`time level logger message`, then the fields as one JSON object. Every line written while a
request is served carries its `request_id` (its `X-Request-Id`, or one gqlbatch made up).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from gqlbatch.core.request_scope import current_request_id

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
        }
        if (request_id := getattr(record, "request_id", None)) is not None:
            line["request_id"] = request_id
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _compact(line)


class _TextLines(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            text += f" request_id={request_id}"
        fields = getattr(record, "fields", None)
        return text if fields is None else f"{text} {_compact(fields)}"


class _RequestScope(logging.Filter):
    """Stamps each record with the request its code was serving, when there is one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        return True


def configure_logging(level: str, log_format: str) -> None:
    """Send the process's log to stderr at *level*, as `json` or `text` lines."""
    handler = logging.StreamHandler()
    handler.addFilter(_RequestScope())
    handler.setFormatter(_JsonLines() if log_format == "json" else _TextLines())
    logging.basicConfig(level=level, handlers=[handler], force=True)
