"""Presence: online while at least one connection is open.

State, not history: kept in memory with deadlines on the injected clock, and
expired by ``sweep()``, which the gateway calls every half second (tests call
it after moving a hand-driven clock). Typing indicators (``typing.py``) are
swept with it.

The first connection of a user makes them ``online``; when the last one
closes they go ``offline`` after ``grace`` seconds, unless they reconnect
first (no flapping on a reconnect). Events go to users who share a direct
conversation or a group of at most ``fanout_max`` members with them (rooms
and larger groups would make it members squared), except users who have
blocked them; and to every connection, on any process, that subscribed to
the user (``watch``, at most ``watch_max`` users each).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from hubbub.clock import Clock, iso_ms, now_ms
from hubbub.errors import NotFound
from hubbub.presence.base import Presence
from hubbub.presence.memory import MemoryPresence
from hubbub.protocol import events
from hubbub.service.fanout import Fanout
from hubbub.service.presence_batches import BATCH_WINDOW, Batches
from hubbub.service.typing import TYPING_TTL, Typing
from hubbub.service.watches import Watcher, Watches
from hubbub.store.base import Store
from hubbub.tasks import TaskSet

log = logging.getLogger("hubbub.presence")

GRACE = 5.0
# Presence announcements under way at once. Each reads the user's contacts, a
# list as long as their groups; when the members of a large group reconnect
# together (a restart), hundreds of those lists would otherwise be held at
# the same time, and the process keeps that peak as resident memory.
ANNOUNCE_CONCURRENCY = 8
FANOUT_MAX = 100  # members of the largest group whose members hear each other's presence
WATCH_MAX = 500  # users one connection may subscribe to
COUNT_TTL = 1.0  # seconds an online count per conversation is reused
COUNT_CACHE = 1024  # conversations whose online count is kept


class PresenceService:
    def __init__(
        self,
        store: Store,
        fanout: Fanout,
        clock: Clock,
        grace: float = GRACE,
        typing_ttl: float = TYPING_TTL,
        cluster: Presence | None = None,
        fanout_max: int = FANOUT_MAX,
        watch_max: int = WATCH_MAX,
    ) -> None:
        self.store = store
        self.cluster: Presence = cluster or MemoryPresence()
        self.cluster.on_expired(self._expired)
        self.cluster.on_status(self._changed)
        self.fanout_max = fanout_max
        self.watches = Watches(watch_max)
        self._unwritten: dict[str, int] = {}  # user -> last seen (ms) not yet stored
        self._telling: dict[str, tuple[str, int]] = {}  # watched user -> newest change to tell
        self._tell_running = False
        self._counts: OrderedDict[str, tuple[float, frozenset[str], int]] = OrderedDict()
        self.fanout = fanout
        self.clock = clock
        self.grace = grace
        self.typing_ttl = typing_ttl
        self._connections: dict[str, int] = {}
        self._leaving: dict[str, tuple[float, int]] = {}  # user -> (deadline, last seen ms)
        self._tasks = TaskSet("presence announcement")
        self.indicators = Typing(fanout, clock, self._tasks, typing_ttl)
        self._announcing = asyncio.Semaphore(ANNOUNCE_CONCURRENCY)
        self._latest: dict[str, object] = {}  # user -> their newest announcement here
        self._batches = Batches(fanout)

    # Presence ---------------------------------------------------------------

    def connected(self, user: str) -> None:
        count = self._connections.get(user, 0) + 1
        self._connections[user] = count
        if count == 1 and self._leaving.pop(user, None) is None:
            self._tasks.spawn(self._came_online(user, now_ms(self.clock)))

    async def _came_online(self, user: str, at_ms: int) -> None:
        if await self.cluster.came_online(user):  # not already online elsewhere
            await self._announce(user, "online", at_ms)

    async def _went_offline(self, user: str, at_ms: int) -> None:
        if await self.cluster.went_offline(user):  # not still online elsewhere
            await self._announce(user, "offline", at_ms)

    def _expired(self, users: list[str]) -> None:
        at_ms = now_ms(self.clock)
        for user in users:
            self._tasks.spawn(self._announce(user, "offline", at_ms))

    def disconnected(self, user: str, connection_id: str) -> None:
        self.watches.drop(connection_id)
        self.indicators.closed(connection_id)
        count = self._connections.get(user, 0) - 1
        if count > 0:
            self._connections[user] = count
            return
        self._connections.pop(user, None)
        self._leaving[user] = (self.clock.monotonic() + self.grace, now_ms(self.clock))

    async def _announce(self, user: str, status: str, at_ms: int) -> None:
        # Announcements wait their turn and read the store, so when a user
        # comes and goes quickly under load, a later one could be published
        # before an earlier one. Only the newest this process decided on for
        # a user is published; one superseded while it waited is dropped.
        token = object()
        self._latest[user] = token
        async with self._announcing:
            if self._latest.get(user) is not token:
                return  # superseded while waiting: the newer one does the work
            self._seen(user, at_ms)
            contacts = await self.store.contacts(user, self.fanout_max)
            hidden = await self.fanout.blockers(user) if contacts else frozenset()
            if self._latest.get(user) is not token:
                return
            del self._latest[user]
            recipients = (
                tuple(c for c in contacts if c not in hidden) if hidden else tuple(contacts)
            )
            if recipients:
                self._batches.publish(recipients, events.presence(user, status, iso_ms(at_ms)))
            self.cluster.publish(user, status, at_ms)  # to the subscribers, on every process

    def _seen(self, user: str, at_ms: int) -> None:
        """Record when a user was last seen, with the others recorded meanwhile.

        When a large group connects at once, one transaction per member
        would queue thousands of commits behind one another (one writer).
        """
        writing = bool(self._unwritten)
        self._unwritten[user] = at_ms
        if not writing:
            self._tasks.spawn(self._write_seen())

    async def _write_seen(self) -> None:
        while self._unwritten:
            seen = sorted(self._unwritten.items())  # one order: no deadlock between processes
            try:
                await self.store.set_last_seen_many(seen)
            except Exception as exc:  # lost alone, as one announcement's write would be
                log.warning("last seen of %d users not recorded: %s", len(seen), exc)
            finally:
                for user, at_ms in seen:
                    if self._unwritten.get(user) == at_ms:
                        del self._unwritten[user]

    async def lookup(self, viewer: str, users: list[str]) -> list[dict[str, object]]:
        """Presence of the users the viewer may see: contacts the viewer has not blocked."""
        wanted = await self._visible(viewer, users)
        return await self._states(wanted)

    async def _visible(self, viewer: str, users: list[str]) -> list[str]:
        """Those of ``users`` (once each, in order) the viewer may see the presence of."""
        asked = [u for u in dict.fromkeys(users) if u != viewer]
        shared = set(await self.store.shared_with(viewer, asked)) if asked else set()
        if shared:
            shared.difference_update(await self.store.blocked_by(viewer))
        return [u for u in asked if u in shared]

    async def _states(self, wanted: list[str]) -> list[dict[str, object]]:
        seen = await self.store.last_seen(wanted) if wanted else {}
        online = await self.cluster.online(wanted)
        return [
            {
                "user_id": u,
                "status": "online" if u in online else "offline",
                "last_seen": None if seen.get(u) is None else iso_ms(seen[u]),  # type: ignore[arg-type]
            }
            for u in wanted
        ]

    # Subscriptions ----------------------------------------------------------

    async def watch(
        self, watcher: Watcher, subscribe: list[str], unsubscribe: list[str]
    ) -> dict[str, object]:
        """The ``presence`` command: change what a connection watches; the ack's fields.

        Unsubscribing comes first; then the users to subscribe to that the
        watcher may see (sharing a direct conversation or a group, not
        blocked by the watcher) are watched and their current state answered.
        The others are ``refused`` (and no longer watched if they were).
        Over the bound, nothing changes (``too_many_subscriptions``).
        """
        cid = watcher.connection_id
        wanted = list(dict.fromkeys(subscribe))
        self.watches.check(cid, wanted, unsubscribe)
        visible = await self._visible(watcher.user_id, wanted) if wanted else []
        shown = set(visible)
        refused = [u for u in wanted if u not in shown]
        if watcher.attached:  # a connection closed meanwhile watches nothing
            self.watches.remove(cid, [*unsubscribe, *refused])
            self.watches.add(watcher, visible)
        return {
            "presence": await self._states(visible),
            "refused": refused,
            "watching": len(self.watches.of(cid)),
        }

    def _changed(self, user: str, status: str, at_ms: int) -> None:
        """A status published by some process: tell the connections here that watch ``user``."""
        if not self.watches.watched(user):
            return
        self._telling[user] = (status, at_ms)  # a newer change replaces one not yet told
        if not self._tell_running:
            self._tell_running = True
            self._tasks.spawn(self._tell())

    async def _tell(self) -> None:
        """Tell the watchers; during a burst, in rounds ``BATCH_WINDOW`` apart.

        The first change goes at once. The changes that come while a round is
        told wait for the next one, so a watcher's frames of a round leave in
        one write (when a large group connects together, a watcher of fifty
        members would otherwise be written to fifty times).
        """
        try:
            while self._telling:
                changes, self._telling = self._telling, {}
                users = list(changes)
                if self.fanout.shared:  # read from the database: side by side
                    hidden = await asyncio.gather(*(self.fanout.blockers(u) for u in users))
                else:  # cached: mostly answered at once, without a task each
                    hidden = [await self.fanout.blockers(u) for u in users]
                for user, blocked in zip(users, hidden, strict=True):
                    watchers = self.watches.watchers(user)
                    if not watchers:
                        continue
                    status, at_ms = changes[user]
                    payload = events.presence(user, status, iso_ms(at_ms))
                    for viewer, sink in watchers:
                        if viewer not in blocked:
                            sink(payload)
                await asyncio.sleep(BATCH_WINDOW)
        finally:
            self._tell_running = False

    async def online_count(self, viewer: str, cid: str) -> dict[str, object]:
        """How many members of a conversation are online (reused for ``COUNT_TTL`` seconds)."""
        now = self.clock.monotonic()
        cached = self._counts.get(cid)
        if cached is None or cached[0] <= now:
            members = frozenset(await self.fanout.members(cid))
            online = len(await self.cluster.online(list(members))) if viewer in members else 0
            cached = (now + COUNT_TTL, members, online)
            if viewer in members:
                self._counts[cid] = cached
                self._counts.move_to_end(cid)
                while len(self._counts) > COUNT_CACHE:
                    self._counts.popitem(last=False)
        _, members, online = cached
        if viewer not in members:
            raise NotFound("no such conversation")
        return {"conversation_id": cid, "members": len(members), "online": online}

    # Typing (typing.py) ---------------------------------------------------

    async def typing(self, user: str, cid: str, state: str, connection_id: str) -> None:
        await self.indicators.typing(user, cid, state, connection_id)

    async def typists(self, cid: str, viewer: str) -> list[str]:
        return await self.indicators.typists(cid, viewer)

    def stopped_by_message(self, user: str, cid: str) -> None:
        self.indicators.stopped_by_message(user, cid)

    # Expiry -----------------------------------------------------------------

    def sweep(self) -> None:
        """Expire typing and finish offline transitions whose grace has passed."""
        now = self.clock.monotonic()
        self.indicators.sweep(now)
        for user, (deadline, seen) in list(self._leaving.items()):
            if deadline <= now:
                del self._leaving[user]
                self._tasks.spawn(self._went_offline(user, seen))

    async def drain(self) -> None:
        """Wait for announcements under way and publish them (tests)."""
        await self._tasks.drain()
        self._batches.flush()

    def close(self) -> None:
        """Shutting down: publish what waits, and from now on without batches."""
        self._batches.flush(close=True)
