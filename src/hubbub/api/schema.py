"""Request and response bodies of the REST API."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from hubbub.models import (
    Conversation,
    ConversationSummary,
    Message,
    Receipt,
    RoomSummary,
    Upload,
    Version,
)
from hubbub.protocol.bounds import Count

# Limits stated in the schema (and enforced by decoding; docs/rest.md). A
# body's length and the number of attachments are checked by the service
# instead, which answers 413 (``too_large``) rather than 422.
UserId = Annotated[str, Meta(min_length=1, max_length=128)]
Title = Annotated[str, Meta(min_length=1, max_length=200)]
ClientMsgId = Annotated[str, Meta(min_length=1, max_length=128)]
Attachments = Annotated[
    list[str],
    Meta(extra_json_schema={"maxItems": 10, "description": "Upload ids; more than 10: 413"}),
]


class CreateConversation(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    kind: Literal["direct", "group", "room"]
    members: list[UserId] = []
    title: Title | None = None


class PostMessage(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    body: str = ""
    client_msg_id: ClientMsgId
    reply_to: str | None = None
    kind: Literal["text", "image", "file", "system"] = "text"
    attachments: Attachments = []


class ConversationBody(msgspec.Struct):
    conversation: Conversation


class ConversationList(msgspec.Struct):
    conversations: list[ConversationSummary]
    next_cursor: str | None = None
    """Pass as ``cursor`` for the next page; null on the last one."""


class MessageBody(msgspec.Struct):
    message: Message


class MessagePage(msgspec.Struct):
    messages: list[Message]
    has_more: bool
    receipts: list[Receipt]
    """Members' read/delivered pointers (empty above 256 members)."""


class Health(msgspec.Struct):
    status: Literal["ok", "degraded", "unavailable"]
    database: str
    broker: str
    connections: int
    version: str


class ErrorDetail(msgspec.Struct):
    code: str
    message: str


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class EditBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    body: str


class MarkBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    seq: Count


class RenameBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    title: Title


class MembersBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    members: list[UserId]


class RoleBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    role: Literal["owner", "admin", "member"]


class VersionList(msgspec.Struct):
    versions: list[Version]


class ReceiptBody(msgspec.Struct):
    moved: bool
    receipt: Receipt | None


class Unread(msgspec.Struct):
    total: int
    conversations: dict[str, int]


class PresenceEntry(msgspec.Struct):
    user_id: str
    status: Literal["online", "offline"]
    last_seen: str | None


class PresenceList(msgspec.Struct):
    presence: list[PresenceEntry]


class OnlineCount(msgspec.Struct):
    conversation_id: str
    members: int
    online: int


class RoomList(msgspec.Struct):
    rooms: list[RoomSummary]


class BlockList(msgspec.Struct):
    blocked: list[str]


class Done(msgspec.Struct):
    ok: bool


class ReactionBody(msgspec.Struct):
    changed: bool
    count: int


class UploadBody(msgspec.Struct):
    upload: Upload
    url: str
