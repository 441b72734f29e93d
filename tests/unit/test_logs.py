"""JSON log records: one object per line, with the connection or request they belong to."""

from __future__ import annotations

import contextvars
import json
import logging

from hubbub.logs import CONNECTION_ID, REQUEST_ID, JsonFormatter


def record(message: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("hubbub.gateway", logging.WARNING, __file__, 1, message, (), None)
    rec.__dict__.update(extra)
    return rec


def test_a_record_is_one_json_object() -> None:
    line = JsonFormatter().format(record("command of user %s"))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "warning" and entry["logger"] == "hubbub.gateway"
    assert entry["message"] == "command of user %s"
    assert entry["time"].endswith("+00:00")
    assert "connection_id" not in entry and "request_id" not in entry


def test_the_connection_or_request_comes_from_the_context() -> None:
    def inside() -> dict[str, object]:
        CONNECTION_ID.set("conn-1")
        REQUEST_ID.set("req-1")
        return dict(json.loads(JsonFormatter().format(record("x"))))

    entry = contextvars.copy_context().run(inside)
    assert entry["connection_id"] == "conn-1" and entry["request_id"] == "req-1"
    assert CONNECTION_ID.get() is None  # set in that context only


def test_extra_fields_and_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = record("failed", connection_id="conn-2")
        rec.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(rec))
    assert entry["connection_id"] == "conn-2"
    assert "ValueError: boom" in str(entry["exception"])
