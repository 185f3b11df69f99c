"""The log's two formats: JSON lines with the batch's fields as keys, and text."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

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


@pytest.mark.usefixtures("restored_logging")
async def test_every_line_of_a_request_names_it(
    capsys: pytest.CaptureFixture[str],
    gateway: Any,
    service: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not only the batch line, which names its request itself: the internal error logged
    # while the request is served names it too, and a line outside any request does not.
    import gqlbatch.doors.rest as rest_module

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(rest_module, "responses_json", broken)
    service.route("GET", "/a", json={})
    configure_logging("INFO", "json")
    logging.getLogger("tests.outside").info("outside any request")
    resp = await gateway.post("/batch", json=[{"path": "/a"}], headers={"X-Request-Id": "req-42"})
    assert resp.status == 500
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    outside = next(line for line in lines if line["logger"] == "tests.outside")
    assert "request_id" not in outside
    error = next(line for line in lines if line["logger"] == "gqlbatch.errors")
    assert error["request_id"] == "req-42" and "RuntimeError: bug" in error["exception"]
