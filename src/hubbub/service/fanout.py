"""Who receives an event, and handing it to the broker after commit.

In one process (``shared=False``) every membership change passes through
here, so it keeps a bounded cache of each conversation's members and of the
blocks that hide a user's typing and presence. Membership events update the
cache in the same step that publishes them, so the recipients of each event
are the members at that point of the stream: a removed member gets their own
``member.left`` and nothing after it; a new member gets their
``member.joined`` and what follows.

With several processes (``shared=True``) another process may change
membership at any time, so nothing is cached: recipients are read from the
database after the event's commit. A member removed before a message was
committed is therefore never among its recipients, on any process.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from hubbub.broker.base import Broker, Delivery
from hubbub.models import StreamEvent
from hubbub.protocol import events
from hubbub.store.base import Store

CACHE_SIZE = 10_000


class Fanout:
    def __init__(self, store: Store, broker: Broker, shared: bool = False) -> None:
        self.store = store
        self.broker = broker
        self.shared = shared
        self._members: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._blockers: OrderedDict[str, frozenset[str]] = OrderedDict()
        # Reads run beside the writes (store.read), so a read that began
        # before a membership change or a block may answer after it: its
        # answer is cached only if no change came in the meantime.
        self._member_changes = 0
        self._block_changes = 0

    # Members ----------------------------------------------------------------

    def remember(self, conversation_id: str, members: Iterable[str]) -> tuple[str, ...]:
        """The members of a conversation as of a change this process made."""
        self._member_changes += 1
        return self._keep(conversation_id, tuple(members))

    def _keep(self, conversation_id: str, value: tuple[str, ...]) -> tuple[str, ...]:
        if self.shared:
            return value
        self._members[conversation_id] = value
        self._members.move_to_end(conversation_id)
        while len(self._members) > CACHE_SIZE:
            self._members.popitem(last=False)
        return value

    def cached(self, conversation_id: str) -> tuple[str, ...] | None:
        return self._members.get(conversation_id)

    async def members(self, conversation_id: str) -> tuple[str, ...]:
        cached = self._members.get(conversation_id)
        if cached is not None:
            self._members.move_to_end(conversation_id)
            return cached
        changes = self._member_changes
        found = tuple(await self.store.member_ids(conversation_id))
        if changes != self._member_changes:  # read before a change: the cache knows better
            return self._members.get(conversation_id) or found
        return self._keep(conversation_id, found) if found else ()

    # Blocks -----------------------------------------------------------------

    async def blockers(self, user: str) -> frozenset[str]:
        """Users who have blocked ``user`` (they do not see its typing or presence)."""
        cached = self._blockers.get(user)
        if cached is None:
            changes = self._block_changes
            cached = frozenset(await self.store.blockers_of(user))
            if self.shared or changes != self._block_changes:
                return cached  # a block came meanwhile: not kept, read again next time
            self._blockers[user] = cached
            while len(self._blockers) > CACHE_SIZE:
                self._blockers.popitem(last=False)
        return cached

    def forget_blockers(self, user: str) -> None:
        self._block_changes += 1
        self._blockers.pop(user, None)

    # Publishing -------------------------------------------------------------

    def publish_stream(self, event: StreamEvent, fallback: tuple[str, ...] = ()) -> None:
        """Publish a committed stream event to the members it concerns."""
        cid = event.conversation_id
        members = self._members.get(cid) or fallback
        data = event.data or {}
        joined: tuple[str, ...] = ()
        left: tuple[str, ...] = ()
        if event.type == "member.joined":
            joined = (data["user_id"],)
            members = self.remember(cid, (*members, data["user_id"]))
        recipients = members
        if event.type == "member.left":
            left = (data["user_id"],)
            self.remember(cid, (m for m in members if m != data["user_id"]))
        payload = events.stream(event)
        self.broker.publish(Delivery(cid, event.seq, recipients, payload, joined, left))

    def publish_to(
        self,
        users: Iterable[str],
        payload: bytes,
        conversation_id: str = "",
        *,
        joining: bool = False,
    ) -> None:
        """Publish an event outside any stream (receipts, typing, presence, list updates).

        ``joining``: the event makes its recipients members (``conversation.created``).
        """
        recipients = tuple(users)
        if recipients:
            joined = recipients if joining else ()
            self.broker.publish(Delivery(conversation_id, 0, recipients, payload, joined))


def members_before(changes: Iterable[StreamEvent], after: Iterable[str]) -> tuple[str, ...]:
    """The members before ``changes``, from the members ``after`` them."""
    members = list(after)
    for event in reversed(list(changes)):
        user = str((event.data or {}).get("user_id"))
        if event.type == "member.joined" and user in members:
            members.remove(user)
        elif event.type == "member.left" and user not in members:
            members.append(user)
    return tuple(members)
