"""The store port: everything the service persists or reads.

Contract (checked by tests/contract/test_store.py against every implementation):

- ``append_messages`` assigns each new message its conversation's next ``seq``
  in the same transaction that stores it; per conversation seqs are gap-free
  and strictly increasing. Items are stored in the order given.
- A ``(sender, conversation, client_msg_id)`` seen before returns the stored
  message with ``created=False`` and stores nothing.
- Membership is checked inside the transaction that writes.
- ``get_or_create_direct`` never creates two direct conversations for a pair.
"""

from __future__ import annotations

from typing import Protocol

from hubbub.errors import HubbubError
from hubbub.service.models import (
    Conversation,
    ConversationSummary,
    Page,
    Replay,
    SendItem,
)
from hubbub.service.models import Message as Message

Appended = tuple[Message, bool] | HubbubError
"""Per item: ``(message, created)``, or the error that refused that item."""


class Store(Protocol):
    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the database does not answer."""

    async def set_user_name(self, user_id: str, name: str, now_ms: int) -> None: ...

    async def get_or_create_direct(
        self, user_a: str, user_b: str, now_ms: int
    ) -> tuple[Conversation, bool]: ...

    async def create_group(
        self, owner: str, title: str, members: list[str], now_ms: int
    ) -> Conversation: ...

    async def get_conversation(self, conversation_id: str) -> Conversation | None: ...

    async def member_ids(self, conversation_id: str) -> list[str]:
        """Members of a conversation (empty when it does not exist)."""

    async def append_messages(
        self, sender: str, items: list[SendItem], now_ms: int
    ) -> list[Appended]: ...

    async def list_messages(
        self,
        user: str,
        conversation_id: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
    ) -> Page:
        """A page of history in ascending seq; raises NotFound/Forbidden."""

    async def list_conversations(self, user: str) -> list[ConversationSummary]:
        """The user's conversations, newest activity first."""

    async def replay(self, user: str, cursors: dict[str, int], limit: int) -> list[Replay]:
        """Events after each cursor, in one consistent read."""
