"""Client-to-server WebSocket frames, parsed into typed commands.

Every frame is a JSON object with a ``type``; a request may carry an ``id``
(string or integer) that the reply echoes. See docs/protocol.md.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import msgspec

from hubbub.errors import Invalid, TooLarge, UnknownType
from hubbub.protocol.bounds import (
    DEPTH_MESSAGE,
    MAX_INT,
    Count,
    json_has_nul,
    may_be_deep,
    nul_message,
    too_deep,
)

RequestId = str | int | None


class Command(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    id: RequestId = None


class SendMessage(Command, kw_only=True):
    conversation_id: str
    body: str = ""  # required for text; optional caption for image and file
    client_msg_id: str
    reply_to: str | None = None
    kind: Literal["text", "image", "file"] = "text"
    attachments: list[str] = msgspec.field(default_factory=list)


class EditMessage(Command, kw_only=True):
    message_id: str
    body: str


class DeleteMessage(Command, kw_only=True):
    message_id: str


class Mark(Command, kw_only=True):
    """``read`` or ``delivered``: move a pointer forward to ``seq``."""

    conversation_id: str
    seq: Count


class Read(Mark, kw_only=True):
    pass


class Delivered(Mark, kw_only=True):
    pass


class React(Command, kw_only=True):
    """``reaction.add`` or ``reaction.remove``."""

    message_id: str
    emoji: str


class AddReaction(React, kw_only=True):
    pass


class RemoveReaction(React, kw_only=True):
    pass


class Typing(Command, kw_only=True):
    conversation_id: str
    state: Literal["start", "stop"]


UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Presence(Command, kw_only=True):
    """``presence``: subscribe to (and unsubscribe from) users' online status.

    How many users one connection may watch is bounded (the server's
    ``presence_watch_max``); see docs/protocol.md.
    """

    subscribe: list[UserId] = msgspec.field(default_factory=list)
    unsubscribe: list[UserId] = msgspec.field(default_factory=list)


class Resume(Command, kw_only=True):
    cursors: dict[str, Count]


class Ping(Command, kw_only=True):
    pass


class RefreshToken(Command, kw_only=True):
    """``token.refresh``: a new token of the same user, to extend the connection."""

    token: str


COMMANDS: dict[str, type[Command]] = {
    "message.send": SendMessage,
    "message.edit": EditMessage,
    "message.delete": DeleteMessage,
    "read": Read,
    "delivered": Delivered,
    "typing": Typing,
    "presence": Presence,
    "reaction.add": AddReaction,
    "reaction.remove": RemoveReaction,
    "resume": Resume,
    "ping": Ping,
    "token.refresh": RefreshToken,
}

MAX_ID_CHARS = 128
_decoder = msgspec.json.Decoder()


class ProtocolError(Exception):
    """A frame that cannot become a command; ``id`` is echoed when it was readable."""

    def __init__(self, error: Invalid, request_id: RequestId = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.request_id = request_id


class _IdOnly(msgspec.Struct, forbid_unknown_fields=False):
    id: Any = None


_id_only = msgspec.json.Decoder(_IdOnly)


def _request_id(obj: dict[str, Any]) -> RequestId:
    rid = obj.get("id")
    if rid is None or (
        isinstance(rid, int) and not isinstance(rid, bool) and -MAX_INT <= rid <= MAX_INT
    ):
        return rid
    if isinstance(rid, str) and len(rid) <= MAX_ID_CHARS:
        return rid
    return None


def request_id(data: bytes) -> RequestId:
    """The ``id`` of a frame that is not parsed further (None if it has none)."""
    try:
        return _request_id({"id": _id_only.decode(data).id})
    except (msgspec.DecodeError, RecursionError):
        return _lenient_id(data)


def _lenient_id(data: bytes | str) -> RequestId:
    """The ``id`` of a frame msgspec refuses but JSON allows (a lone surrogate
    escape such as ``\\ud800``, a number beyond a double), so its refusal names it."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return None
    rid = _request_id(obj) if isinstance(obj, dict) else None
    if isinstance(rid, str) and not rid.isascii():
        try:
            rid.encode()
        except UnicodeEncodeError:  # a lone surrogate: not to be echoed
            return None
    return rid


def parse(data: bytes | str, max_bytes: int) -> Command:
    """Turn one text frame into a command, or raise ProtocolError."""
    if len(data) > max_bytes:
        # The reply still names the request, so the client stops waiting for
        # it (the frame is under the connection's hard ceiling to get here).
        rid = request_id(data.encode() if isinstance(data, str) else data)
        raise ProtocolError(TooLarge(f"frame exceeds {max_bytes} bytes"), rid)
    try:
        obj = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ProtocolError(Invalid(f"malformed JSON: {exc}"), _lenient_id(data)) from None
    except RecursionError:
        raise ProtocolError(Invalid(DEPTH_MESSAGE)) from None
    if not isinstance(obj, dict):
        raise ProtocolError(Invalid("a frame must be a JSON object"))
    rid = _request_id(obj)
    if "id" in obj and obj["id"] is not None and rid is None:
        raise ProtocolError(
            Invalid(
                f"'id' must be an integer of at most {MAX_INT} in magnitude"
                f" or a string of at most {MAX_ID_CHARS} characters"
            )
        )
    if may_be_deep(data) and too_deep(obj):
        raise ProtocolError(Invalid(DEPTH_MESSAGE), rid)
    if json_has_nul(data):
        raise ProtocolError(Invalid(nul_message("text in a frame")), rid)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(Invalid("missing 'type'"), rid)
    command_type = COMMANDS.get(kind)
    if command_type is None:
        raise ProtocolError(UnknownType(f"unknown type {kind!r}"), rid)
    del obj["type"]
    try:
        return msgspec.convert(obj, command_type)
    except msgspec.ValidationError as exc:
        raise ProtocolError(Invalid(str(exc)), rid) from None
