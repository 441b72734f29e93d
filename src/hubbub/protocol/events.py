"""Server-to-client frames, encoded once as JSON text.

``type`` always comes first, so a client (or a load generator) can route a
frame by its first bytes without parsing it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hubbub.protocol.commands import RequestId
from hubbub.service.models import Message

_encoder = msgspec.json.Encoder()


class MessageNew(msgspec.Struct, tag_field="type", tag="message.new"):
    message: Message


def message_new(message: Message) -> bytes:
    return _encoder.encode(MessageNew(message))


def ack(request_id: RequestId, **fields: Any) -> bytes:
    return _encoder.encode({"type": "ack", "id": request_id, **fields})


def error(request_id: RequestId, code: str, message: str) -> bytes:
    return _encoder.encode({"type": "error", "id": request_id, "code": code, "message": message})


def event(kind: str, **fields: Any) -> bytes:
    return _encoder.encode({"type": kind, **fields})


def http_error(code: str, message: str) -> bytes:
    """The body of every REST error response: ``{"error": {"code", "message"}}``."""
    return _encoder.encode({"error": {"code": code, "message": message}})
