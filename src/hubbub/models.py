"""Domain records, shared by every layer and encoded as-is on the wire."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

ConversationKind = Literal["direct", "group", "room"]
Role = Literal["owner", "admin", "member"]
MessageKind = Literal["text", "image", "file", "system"]


class Attachment(msgspec.Struct, kw_only=True):
    id: str
    name: str
    content_type: str
    size: int
    url: str


class Reaction(msgspec.Struct, kw_only=True):
    emoji: str
    count: int
    me: bool = False
    """Whether the reader reacted so (in history; always false in live frames)."""


class Message(msgspec.Struct, kw_only=True):
    id: str
    conversation_id: str
    seq: int
    sender_id: str
    sender_name: str | None = None
    kind: str = "text"
    body: str
    client_msg_id: str | None
    reply_to: str | None = None
    created_at: str
    edited_at: str | None = None
    deleted_at: str | None = None
    attachments: list[Attachment] = msgspec.field(default_factory=list)
    reactions: list[Reaction] = msgspec.field(default_factory=list)


class Member(msgspec.Struct, kw_only=True):
    user_id: str
    name: str | None
    role: Role
    joined_at: str
    read_seq: int = 0
    delivered_seq: int = 0


class Conversation(msgspec.Struct, kw_only=True):
    id: str
    kind: ConversationKind
    title: str | None
    created_by: str
    created_at: str
    last_seq: int
    last_activity_at: str
    members: list[Member]

    def member(self, user_id: str) -> Member | None:
        return next((m for m in self.members if m.user_id == user_id), None)


class ConversationSummary(Conversation, kw_only=True):
    """A conversation as the caller's conversation list shows it.

    ``members`` holds the first 20 members to join and the caller (a large
    group's full list is the conversation's own); ``member_count`` is all.
    """

    member_count: int
    last_message: Message | None
    unread_count: int
    read_seq: int


class RoomSummary(msgspec.Struct, kw_only=True):
    id: str
    title: str | None
    created_by: str
    created_at: str
    last_activity_at: str
    member_count: int
    joined: bool


class SendItem(msgspec.Struct, frozen=True):
    """One message to store: validated by the service, stored by the store."""

    conversation_id: str
    body: str
    client_msg_id: str
    kind: str = "text"
    reply_to: str | None = None
    attachments: tuple[str, ...] = ()


class StreamEvent(msgspec.Struct, kw_only=True):
    """One event of a conversation's seq stream.

    ``message`` is set for ``message.*`` events (the message as it is now);
    ``data`` holds the fields of the others (membership, renames).
    """

    conversation_id: str
    seq: int
    type: str
    message: Message | None = None
    data: dict[str, Any] | None = None


class Page(msgspec.Struct, kw_only=True):
    messages: list[Message]
    has_more: bool
    receipts: list[Receipt] = msgspec.field(default_factory=list)


class Replay(msgspec.Struct, kw_only=True):
    """What ``resume`` found for one conversation."""

    conversation_id: str
    status: Literal["ok", "too_far_behind", "unavailable"]
    last_seq: int
    events: list[StreamEvent]


class Version(msgspec.Struct, kw_only=True):
    body: str
    written_at: str


class Receipt(msgspec.Struct, kw_only=True):
    conversation_id: str
    user_id: str
    read_seq: int
    delivered_seq: int


class Upload(msgspec.Struct, kw_only=True):
    id: str
    owner_id: str
    name: str
    content_type: str
    size: int
    created_at: str


class SearchPage(msgspec.Struct, kw_only=True):
    results: list[Message]
    next_offset: int | None


NotifyLevel = Literal["all", "mentions", "none"]


class Device(msgspec.Struct, kw_only=True):
    """A device of the caller's that receives pushes (``POST /api/v1/push/devices``)."""

    id: str
    provider: Literal["expo", "webhook"]
    token: str
    platform: str
    app_id: str | None
    created_at: str
    updated_at: str


class Notifications(msgspec.Struct, kw_only=True):
    """What the caller is pushed of one conversation: ``level`` until ``until`` (then all)."""

    conversation_id: str
    level: NotifyLevel
    until: str | None


class DoNotDisturb(msgspec.Struct, kw_only=True):
    """No push at all reaches the caller until ``until``."""

    until: str | None
