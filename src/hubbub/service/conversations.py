"""Conversations: direct, groups and rooms; membership, roles, hiding, blocks."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from hubbub.auth import RESERVED_USERS
from hubbub.clock import Clock, now_ms, parse_iso_ms
from hubbub.config import Limits
from hubbub.errors import Forbidden, Invalid, NotFound, TooLarge
from hubbub.models import Conversation, ConversationSummary, RoomSummary, StreamEvent
from hubbub.protocol import events
from hubbub.protocol.bounds import has_nul, nul_message
from hubbub.service.fanout import Fanout, members_before
from hubbub.store.base import Store

MAX_TITLE = 200
CURSOR = re.compile(r"([0-9]{1,15}):(c_[0-9a-f]{1,64})")
LIST_PAGE = 50
"""Conversations per page of the list, unless a client asks for another size."""
MAX_LIST_PAGE = 200
MAX_USER_ID = 128
ROLES = ("owner", "admin", "member")


def check_user_id(value: object, what: str = "member") -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_USER_ID:
        raise Invalid(f"{what} must be a user id of 1 to {MAX_USER_ID} characters")
    if has_nul(value):
        raise Invalid(nul_message(what))
    if value in RESERVED_USERS:
        raise Invalid(f"user id {value!r} is reserved")
    return value


def parse_cursor(cursor: str) -> tuple[int, str]:
    """A list cursor's ``(last_activity_at in ms, id)``; Invalid if it is not one."""
    found = CURSOR.fullmatch(cursor)
    if found is None:
        raise Invalid("cursor is not one this server gave out")
    return int(found[1]), found[2]


def check_title(title: str) -> str:
    title = title.strip()
    if not title or len(title) > MAX_TITLE:
        raise Invalid(f"title must be 1 to {MAX_TITLE} characters")
    return title


class ConversationService:
    def __init__(self, store: Store, fanout: Fanout, clock: Clock, limits: Limits) -> None:
        self.store = store
        self.fanout = fanout
        self.clock = clock
        self.limits = limits

    # Creating -----------------------------------------------------------

    async def open_direct(self, user: str, other: str) -> tuple[Conversation, bool]:
        check_user_id(other)
        if other == user:
            raise Invalid("a direct conversation needs another user")
        conversation, created = await self.store.get_or_create_direct(user, other, self._now())
        self._announce(conversation, created)
        return conversation, created

    async def create(self, user: str, kind: str, title: str, members: list[str]) -> Conversation:
        """A group (``members`` join at once) or a room (anyone may join later)."""
        title = check_title(title)
        for member in members:
            check_user_id(member)
        if len(set(members) | {user}) > self.limits.max_group_members:
            raise TooLarge(f"a {kind} has at most {self.limits.max_group_members} members")
        conversation = await self.store.create_group(user, title, members, self._now(), kind)
        self._announce(conversation, True)
        return conversation

    def _announce(self, conversation: Conversation, created: bool) -> None:
        members = self.fanout.remember(conversation.id, (m.user_id for m in conversation.members))
        if created:
            self.fanout.publish_to(
                members,
                events.event("conversation.created", conversation=conversation),
                conversation.id,
                joining=True,
            )

    # Reading ------------------------------------------------------------

    async def get(self, user: str, conversation_id: str) -> Conversation:
        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None:
            raise NotFound("no such conversation")
        if conversation.member(user) is None:
            raise Forbidden("you are not a member of this conversation")
        return conversation

    async def list_for(self, user: str) -> list[ConversationSummary]:
        """All the user's visible conversations (in-process callers; REST pages them)."""
        return await self.store.list_conversations(user)

    async def list_page(
        self, user: str, limit: int = LIST_PAGE, cursor: str | None = None
    ) -> tuple[list[ConversationSummary], str | None]:
        """A page of the user's conversations, newest activity first, and the next cursor.

        The cursor is opaque to clients: the position of the page's last
        conversation. ``None`` when nothing follows.
        """
        if not 1 <= limit <= MAX_LIST_PAGE:
            raise Invalid(f"limit must be 1 to {MAX_LIST_PAGE}")
        after = None if cursor is None else parse_cursor(cursor)
        found = await self.store.list_conversations(user, limit + 1, after)
        page = found[:limit]
        last = page[-1] if len(found) > limit else None
        return page, None if last is None else f"{parse_iso_ms(last.last_activity_at)}:{last.id}"

    async def rooms(self, user: str, limit: int, offset: int) -> list[RoomSummary]:
        if not 1 <= limit <= 100 or offset < 0:
            raise Invalid("limit must be 1 to 100 and offset not negative")
        return await self.store.list_rooms(user, limit, offset)

    # Changing -----------------------------------------------------------

    async def rename(self, user: str, cid: str, title: str) -> Conversation:
        title = check_title(title)
        return await self._change(cid, lambda: self.store.rename(user, cid, title, self._now()))

    async def add_members(self, user: str, cid: str, new: list[str]) -> Conversation:
        for member in new:
            check_user_id(member)
        limit = self.limits.max_group_members
        return await self._change(
            cid, lambda: self.store.add_members(user, cid, new, limit, self._now())
        )

    async def remove_member(self, user: str, cid: str, target: str) -> Conversation | None:
        """Remove ``target`` (or leave, when it is ``user``)."""
        conversation = await self._change(
            cid, lambda: self.store.remove_member(user, cid, target, self._now())
        )
        return None if target == user else conversation

    async def set_role(self, user: str, cid: str, target: str, role: str) -> Conversation:
        if role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}")
        return await self._change(
            cid, lambda: self.store.set_role(user, cid, target, role, self._now())
        )

    async def join_room(self, user: str, cid: str) -> Conversation:
        limit = self.limits.max_group_members
        return await self._change(cid, lambda: self.store.join_room(user, cid, limit, self._now()))

    async def _change(
        self, cid: str, change: Callable[[], Awaitable[list[StreamEvent]]]
    ) -> Conversation:
        """Store a membership change, then publish it to the members at each event.

        In one process the members are read before the change (from the cache
        every change passes through), so a leaver is told too. With several
        processes another one may change membership meanwhile, so they are read
        after the commit and walked back over this change's events.
        """
        if not self.fanout.shared:
            before = await self.fanout.members(cid)
            return await self._apply(cid, before, await change())
        stored = await change()
        return await self._apply(
            cid, members_before(stored, await self.fanout.members(cid)), stored
        )

    async def _apply(
        self, cid: str, before: tuple[str, ...], stored: list[StreamEvent]
    ) -> Conversation:
        """Publish committed membership events in order, then the updated conversation.

        ``before`` are the members before the first event; each event
        goes to the members at its point of the stream (see Fanout).
        """
        members = before
        for event in stored:
            self.fanout.publish_stream(event, members)
            data = event.data or {}
            if event.type == "member.joined":
                members = (*members, data["user_id"])
            elif event.type == "member.left":
                members = tuple(m for m in members if m != data["user_id"])
        conversation = await self.store.get_conversation(cid)
        assert conversation is not None
        if stored:
            joined = [e.data["user_id"] for e in stored if e.type == "member.joined" and e.data]
            if joined:
                self.fanout.publish_to(
                    joined,
                    events.event("conversation.created", conversation=conversation),
                    cid,
                    joining=True,
                )
            self.fanout.publish_to(
                (m.user_id for m in conversation.members),
                events.event("conversation.updated", conversation=conversation),
                cid,
            )
        return conversation

    async def set_hidden(self, user: str, cid: str, hidden: bool) -> None:
        await self.store.set_hidden(user, cid, hidden)

    # Blocks -------------------------------------------------------------

    async def block(self, user: str, other: str) -> bool:
        check_user_id(other, "user")
        if other == user:
            raise Invalid("you cannot block yourself")
        changed = await self.store.block(user, other, self._now())
        self.fanout.forget_blockers(other)
        return changed

    async def unblock(self, user: str, other: str) -> bool:
        changed = await self.store.unblock(user, check_user_id(other, "user"))
        self.fanout.forget_blockers(other)
        return changed

    async def blocked(self, user: str) -> list[str]:
        return await self.store.blocked_by(user)

    def _now(self) -> int:
        return now_ms(self.clock)
