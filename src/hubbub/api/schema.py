"""Request and response bodies of the REST API."""

from __future__ import annotations

from typing import Literal

import msgspec

from hubbub.service.models import Conversation, ConversationSummary, Message


class CreateConversation(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    kind: Literal["direct", "group"]
    members: list[str]
    title: str | None = None


class PostMessage(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    body: str
    client_msg_id: str


class ConversationBody(msgspec.Struct):
    conversation: Conversation


class ConversationList(msgspec.Struct):
    conversations: list[ConversationSummary]


class MessageBody(msgspec.Struct):
    message: Message


class MessagePage(msgspec.Struct):
    messages: list[Message]
    has_more: bool


class Health(msgspec.Struct):
    status: Literal["ok", "unavailable"]
    database: str
    connections: int
    version: str


class ErrorDetail(msgspec.Struct):
    code: str
    message: str


class ErrorBody(msgspec.Struct):
    error: ErrorDetail
