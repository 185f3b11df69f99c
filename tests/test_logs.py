"""The log's two formats: JSON lines with the batch's fields as keys, and text."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from gqlbatch.ops.logs import configure_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _log_a_batch_and_an_error() -> None:
    logging.getLogger("gqlbatch.batch").info(
        "batch", extra={"fields": {"event": "batch", "request_id": "r1", "items": 3}}
    )
    try:
        raise ValueError("bug")
    except ValueError:
        logging.getLogger("gqlbatch.errors").exception("internal error %s", "id-1")


@pytest.mark.usefixtures("restored_logging")
def test_json_lines_carry_time_level_logger_and_the_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    _log_a_batch_and_an_error()
    batch, error = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert batch.keys() >= {"time", "level", "logger", "message"}
    assert (batch["level"], batch["logger"], batch["request_id"], batch["items"]) == (
        "INFO",
        "gqlbatch.batch",
        "r1",
        3,
    )
    assert batch["time"].endswith("+00:00")
    assert (error["level"], error["message"]) == ("ERROR", "internal error id-1")
    assert "ValueError: bug" in error["exception"]  # one line: the traceback is inside it


@pytest.mark.usefixtures("restored_logging")
def test_text_lines_are_for_a_person(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "text")
    logging.getLogger("gqlbatch.batch").info("batch", extra={"fields": {"items": 3}})
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(' INFO gqlbatch.batch batch {"items":3}')
