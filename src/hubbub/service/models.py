"""Domain records, shared by every layer and encoded as-is on the wire."""

from __future__ import annotations

from typing import Literal

import msgspec

ConversationKind = Literal["direct", "group"]
Role = Literal["owner", "admin", "member"]


class Message(msgspec.Struct, kw_only=True):
    id: str
    conversation_id: str
    seq: int
    sender_id: str
    kind: str = "text"
    body: str
    client_msg_id: str | None
    created_at: str


class Member(msgspec.Struct, kw_only=True):
    user_id: str
    name: str | None
    role: Role
    joined_at: str


class Conversation(msgspec.Struct, kw_only=True):
    id: str
    kind: ConversationKind
    title: str | None
    created_by: str
    created_at: str
    last_seq: int
    last_activity_at: str
    members: list[Member]


class ConversationSummary(Conversation, kw_only=True):
    """A conversation as the caller's conversation list shows it."""

    last_message: Message | None
    unread_count: int
    read_seq: int


class SendItem(msgspec.Struct, frozen=True):
    """One message to store: validated by the service, stored by the store."""

    conversation_id: str
    body: str
    client_msg_id: str
    kind: str = "text"


class Page(msgspec.Struct, kw_only=True):
    messages: list[Message]
    has_more: bool


class Replay(msgspec.Struct, kw_only=True):
    """What ``resume`` found for one conversation."""

    conversation_id: str
    status: Literal["ok", "too_far_behind", "unavailable"]
    last_seq: int
    events: list[Message]
