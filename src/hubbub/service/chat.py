"""The chat service: the one path every send, read and resume takes.

Transports (WebSocket gateway, REST API) parse and authenticate, then call
here; the store persists; the broker carries committed events to whichever
process holds the recipients' connections.
"""

from __future__ import annotations

from collections import OrderedDict

from hubbub.auth import MAX_USER_ID, Identity
from hubbub.broker.base import Broker, Delivery
from hubbub.clock import Clock, now_ms
from hubbub.config import Limits
from hubbub.errors import Forbidden, HubbubError, Invalid, NotFound, TooLarge
from hubbub.protocol import events
from hubbub.service.models import (
    Conversation,
    ConversationSummary,
    Message,
    Page,
    Replay,
    SendItem,
)
from hubbub.store.base import Appended, Store

MAX_TITLE = 200
MAX_CLIENT_MSG_ID = 128
MEMBER_CACHE_SIZE = 10_000


def check_user_id(value: object, what: str = "member") -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_USER_ID:
        raise Invalid(f"{what} must be a user id of 1 to {MAX_USER_ID} characters")
    return value


class ChatService:
    def __init__(self, store: Store, broker: Broker, clock: Clock, limits: Limits) -> None:
        self.store = store
        self.broker = broker
        self.clock = clock
        self.limits = limits
        self._members: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._names: dict[str, str] = {}

    # Users -------------------------------------------------------------

    async def seen(self, identity: Identity) -> None:
        """Record the display name a token carries, when it is new."""
        name = identity.name
        if name and self._names.get(identity.user_id) != name:
            await self.store.set_user_name(identity.user_id, name, now_ms(self.clock))
            self._names[identity.user_id] = name

    # Conversations -----------------------------------------------------

    async def open_direct(self, user: str, other: str) -> tuple[Conversation, bool]:
        check_user_id(other)
        if other == user:
            raise Invalid("a direct conversation needs another user")
        conversation, created = await self.store.get_or_create_direct(
            user, other, now_ms(self.clock)
        )
        self._remember(conversation)
        return conversation, created

    async def create_group(self, user: str, title: str, members: list[str]) -> Conversation:
        title = title.strip()
        if not title or len(title) > MAX_TITLE:
            raise Invalid(f"title must be 1 to {MAX_TITLE} characters")
        for member in members:
            check_user_id(member)
        if len(set(members) | {user}) > self.limits.max_group_members:
            raise TooLarge(f"a group has at most {self.limits.max_group_members} members")
        conversation = await self.store.create_group(user, title, members, now_ms(self.clock))
        self._remember(conversation)
        return conversation

    async def get_conversation(self, user: str, conversation_id: str) -> Conversation:
        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None:
            raise NotFound("no such conversation")
        if all(m.user_id != user for m in conversation.members):
            raise Forbidden("you are not a member of this conversation")
        self._remember(conversation)
        return conversation

    async def conversations(self, user: str) -> list[ConversationSummary]:
        return await self.store.list_conversations(user)

    # Messages ----------------------------------------------------------

    def validate(self, item: SendItem) -> SendItem:
        if not item.body.strip():
            raise Invalid("body must not be empty")
        if len(item.body) > self.limits.max_body_chars:
            raise TooLarge(f"body exceeds {self.limits.max_body_chars} characters")
        if not item.client_msg_id or len(item.client_msg_id) > MAX_CLIENT_MSG_ID:
            raise Invalid(f"client_msg_id must be 1 to {MAX_CLIENT_MSG_ID} characters")
        return item

    async def send(self, user: str, items: list[SendItem]) -> list[Appended]:
        """Store messages in order; fan out the new ones after commit.

        Returns, per item, ``(message, created)`` or the error that refused it.
        A retried ``client_msg_id`` returns the stored message with
        ``created=False`` and delivers nothing.
        """
        results: list[Appended | None] = []
        valid: list[SendItem] = []
        for item in items:
            try:
                valid.append(self.validate(item))
                results.append(None)
            except HubbubError as exc:
                results.append(exc)
        if not valid:
            return [r for r in results if r is not None]
        # Know the recipients before committing, so that publishing right after
        # the commit needs no further wait and keeps commit order.
        recipients = {
            cid: await self._recipients(cid) for cid in {i.conversation_id for i in valid}
        }
        stored = iter(await self.store.append_messages(user, valid, now_ms(self.clock)))
        out: list[Appended] = []
        for result in results:
            if result is not None:
                out.append(result)
                continue
            appended = next(stored)
            if isinstance(appended, tuple) and appended[1]:
                message = appended[0]
                cid = message.conversation_id
                self._publish(message, self._members.get(cid) or recipients[cid])
            out.append(appended)
        return out

    async def send_one(self, user: str, item: SendItem) -> tuple[Message, bool]:
        (result,) = await self.send(user, [item])
        if isinstance(result, HubbubError):
            raise result
        return result

    async def history(
        self,
        user: str,
        conversation_id: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> Page:
        limit = self.limits.page_default if limit is None else limit
        if not 1 <= limit <= self.limits.page_max:
            raise Invalid(f"limit must be 1 to {self.limits.page_max}")
        if (before is not None and before < 0) or (after is not None and after < 0):
            raise Invalid("cursors must not be negative")
        return await self.store.list_messages(
            user, conversation_id, before=before, after=after, limit=limit
        )

    async def replay(self, user: str, cursors: dict[str, int]) -> list[Replay]:
        if len(cursors) > 1000:
            raise TooLarge("resume names at most 1000 conversations")
        if any(seq < 0 for seq in cursors.values()):
            raise Invalid("cursors must not be negative")
        return await self.store.replay(user, cursors, self.limits.resume_limit)

    # Internals ---------------------------------------------------------

    def _publish(self, message: Message, recipients: tuple[str, ...]) -> None:
        self.broker.publish(
            Delivery(
                conversation_id=message.conversation_id,
                seq=message.seq,
                recipients=recipients,
                payload=events.message_new(message),
            )
        )

    def _remember(self, conversation: Conversation) -> None:
        self._cache(conversation.id, tuple(m.user_id for m in conversation.members))

    def _cache(self, conversation_id: str, members: tuple[str, ...]) -> None:
        self._members[conversation_id] = members
        self._members.move_to_end(conversation_id)
        while len(self._members) > MEMBER_CACHE_SIZE:
            self._members.popitem(last=False)

    async def _recipients(self, conversation_id: str) -> tuple[str, ...]:
        cached = self._members.get(conversation_id)
        if cached is not None:
            self._members.move_to_end(conversation_id)
            return cached
        members = tuple(await self.store.member_ids(conversation_id))
        if members:
            self._cache(conversation_id, members)
        return members
