"""Routing by interest: which channel carries an event, which channels a process needs.

With ``HUBBUB_ROUTING=interest`` a conversation's events go on one of
``shards`` conversation channels (``<prefix>:c:<n>``, ``n`` a hash of the
conversation id), and a process subscribes to the channels of the
conversations its connected users are members of. Events addressed to users
rather than to a conversation's members (presence), and events that make a
user a member (``member.joined``, ``conversation.created``) also go on
user channels (``<prefix>:u:<n>``, a hash of the user id), which a process
subscribes to for each user connected to it: a process learns of a join of one
of its users even when it did not follow that conversation yet.

Everything here is bookkeeping, without I/O: what to publish where
(``routes``), and the reference counts that decide what to subscribe to
(``Interest``). A channel no longer needed stays subscribed for ``linger``
seconds, so that a user reconnecting or a member leaving and coming back does
not cost an UNSUBSCRIBE and a SUBSCRIBE.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable

from hubbub.broker.base import Delivery

BROADCAST = "broadcast"
INTEREST = "interest"
MODES = (BROADCAST, INTEREST)
SHARDS = 1024
LINGER = 30.0

Route = tuple[str, tuple[str, ...]]
"""A channel, and the recipients of the event that go with it there."""


def shard(key: str, shards: int) -> int:
    return zlib.crc32(key.encode()) % shards


class Channels:
    """The names of the routing channels under a prefix (``hubbub:events``)."""

    def __init__(self, prefix: str, shards: int = SHARDS) -> None:
        if shards < 1:
            raise ValueError("shards must be positive")
        self.prefix = prefix
        self.shards = shards

    def conversation(self, conversation_id: str) -> str:
        return f"{self.prefix}:c:{shard(conversation_id, self.shards)}"

    def user(self, user_id: str) -> str:
        return f"{self.prefix}:u:{shard(user_id, self.shards)}"

    def routes(self, delivery: Delivery) -> list[Route]:
        """Where to publish ``delivery``; more than one route for a join (see ``once``).

        An event of a conversation goes on its channel, with every recipient;
        a join also on the channels of the users it makes members, again with
        every recipient (a process takes the first copy, see ``RedisBroker``).
        An event of no conversation goes on its recipients' user channels,
        each copy with the recipients of that channel only.
        """
        cid = delivery.conversation_id
        if cid:
            routes = [(self.conversation(cid), delivery.recipients)]
            for channel in dict.fromkeys(self.user(u) for u in delivery.joined):
                routes.append((channel, delivery.recipients))
            return routes
        by_channel: dict[str, list[str]] = {}
        for user in delivery.recipients:
            by_channel.setdefault(self.user(user), []).append(user)
        return [(channel, tuple(users)) for channel, users in by_channel.items()]


class Interest:
    """Reference counts of watched conversations and users, and the channels they need."""

    def __init__(
        self,
        channels: Channels,
        linger: float = LINGER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channels = channels
        self.linger = linger
        self._clock = clock
        self.conversations: dict[str, int] = {}
        self.users: dict[str, int] = {}
        self._refs: dict[str, int] = {}  # channel -> watched conversations and users on it
        self._idle: dict[str, float] = {}  # channel no longer needed -> since when
        self.changes = 0
        """Incremented whenever the set of wanted channels may have grown or shrunk."""

    def watch(self, conversation_id: str) -> None:
        self._watch(self.conversations, conversation_id, self.channels.conversation)

    def unwatch(self, conversation_id: str) -> None:
        self._unwatch(self.conversations, conversation_id, self.channels.conversation)

    def watch_user(self, user_id: str) -> None:
        self._watch(self.users, user_id, self.channels.user)

    def unwatch_user(self, user_id: str) -> None:
        self._unwatch(self.users, user_id, self.channels.user)

    def _watch(self, counts: dict[str, int], key: str, name: Callable[[str], str]) -> None:
        count = counts.get(key, 0)
        counts[key] = count + 1
        if count:
            return
        channel = name(key)
        refs = self._refs.get(channel, 0)
        self._refs[channel] = refs + 1
        if not refs:
            self._idle.pop(channel, None)
            self.changes += 1

    def _unwatch(self, counts: dict[str, int], key: str, name: Callable[[str], str]) -> None:
        count = counts.get(key, 0)
        if count > 1:
            counts[key] = count - 1
            return
        if not count:
            return  # not watched: nothing to undo
        del counts[key]
        channel = name(key)
        refs = self._refs[channel] - 1
        if refs:
            self._refs[channel] = refs
            return
        del self._refs[channel]
        self._idle[channel] = self._clock()
        self.changes += 1

    def wanted(self) -> set[str]:
        """The channels to be subscribed now: needed, or idle for less than ``linger``."""
        now = self._clock()
        for channel in [c for c, since in self._idle.items() if now - since >= self.linger]:
            del self._idle[channel]
        return set(self._refs) | set(self._idle)

    def needed_channels(self) -> set[str]:
        """The channels that watched conversations and users need now (not the lingering)."""
        return set(self._refs)

    def needed(self, channel: str) -> bool:
        """Whether a watched conversation or user uses ``channel`` (lingering ones do not)."""
        return channel in self._refs

    def lingering(self) -> bool:
        return bool(self._idle)

    def wants(self, delivery: Delivery) -> bool:
        """Whether a received event concerns anything watched here."""
        cid = delivery.conversation_id
        if cid:
            if cid in self.conversations:
                return True
            users = self.users
            return any(u in users for u in delivery.joined)
        users = self.users
        return any(u in users for u in delivery.recipients)
