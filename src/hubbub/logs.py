"""Log set-up: text lines (the default) or one JSON object per line.

``HUBBUB_LOG_FORMAT=json`` writes each record as ``{"time", "level",
"logger", "message"}``, with ``connection_id`` when the record comes from a
session's commands and ``request_id`` when it comes from a REST request
(context variables set per session task and per request), and ``exception``
with the traceback when there is one. A call's ``extra=`` fields of those
names take precedence.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Final

CONNECTION_ID: Final[ContextVar[str | None]] = ContextVar("connection_id", default=None)
REQUEST_ID: Final[ContextVar[str | None]] = ContextVar("request_id", default=None)
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in (("connection_id", CONNECTION_ID), ("request_id", REQUEST_ID)):
            value = getattr(record, name, None) or var.get()
            if value:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str, form: str = "text") -> None:
    """Log to standard error at ``level``, as ``text`` or ``json``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
