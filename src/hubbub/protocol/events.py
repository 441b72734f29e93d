"""Server-to-client frames, encoded once as JSON text.

``type`` always comes first, so a client (or a load generator) can route a
frame by its first bytes without parsing it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hubbub.errors import HubbubError
from hubbub.models import StreamEvent
from hubbub.protocol.commands import RequestId

_encoder = msgspec.json.Encoder()


def stream(event: StreamEvent) -> bytes:
    """An event of a conversation's stream: ``type``, ``conversation_id``, ``seq``, fields."""
    frame: dict[str, Any] = {
        "type": event.type,
        "conversation_id": event.conversation_id,
        "seq": event.seq,
    }
    if event.message is not None:
        frame["message"] = event.message
    if event.data:
        frame.update(event.data)
    return _encoder.encode(frame)


def ack(request_id: RequestId, **fields: Any) -> bytes:
    return _encoder.encode({"type": "ack", "id": request_id, **fields})


def error(request_id: RequestId, code: str, message: str) -> bytes:
    return _encoder.encode({"type": "error", "id": request_id, "code": code, "message": message})


def refusal(request_id: RequestId, error: HubbubError) -> bytes:
    """The ``error`` frame of a refusal, with ``retry_after_ms`` when it says when to retry."""
    retry = getattr(error, "retry_after_ms", None)
    if retry is None:
        return _encoder.encode(
            {"type": "error", "id": request_id, "code": error.code, "message": error.message}
        )
    return _encoder.encode(
        {
            "type": "error",
            "id": request_id,
            "code": error.code,
            "message": error.message,
            "retry_after_ms": retry,
        }
    )


def presence(user_id: str, status: str, last_seen: str) -> bytes:
    """A user went ``online`` or ``offline`` (``last_seen``: when, ISO 8601)."""
    return _encoder.encode(
        {"type": "presence", "user_id": user_id, "status": status, "last_seen": last_seen}
    )


def event(type_: str, /, **fields: Any) -> bytes:
    return _encoder.encode({"type": type_, **fields})


def http_error(code: str, message: str) -> bytes:
    """The body of every REST error response: ``{"error": {"code", "message"}}``."""
    return _encoder.encode({"error": {"code": code, "message": message}})
