"""Presence (online while at least one connection is open) and typing.

State, not history: kept in memory with deadlines on the injected clock, and
expired by ``sweep()``, which the gateway calls every half second (tests call
it after moving a hand-driven clock).

- Presence: the first connection of a user makes them ``online``; when the
  last one closes they go ``offline`` after ``grace`` seconds, unless they
  reconnect first (no flapping on a reconnect). Events go to users who share
  a direct conversation or a group with them (rooms are too large to count),
  except users who have blocked them.
- Typing: ``start`` lasts ``typing_ttl`` seconds unless renewed, and is
  announced when typing begins and again at most every ``typing_ttl / 2``
  while renewed; ``stop`` is announced when the typist says so, when it
  expires, when the typist sends a message there, or when the connection it
  came from closes. Clients clear an indicator ``typing_ttl`` after the last
  ``start`` in any case, so a process that dies cannot leave one on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from hubbub.clock import Clock, iso_ms, now_ms
from hubbub.errors import Forbidden, RateLimited
from hubbub.presence.base import Presence
from hubbub.presence.memory import MemoryPresence
from hubbub.protocol import events
from hubbub.service.fanout import Fanout
from hubbub.store.base import Store
from hubbub.tasks import TaskSet

log = logging.getLogger("hubbub.presence")

GRACE = 5.0
TYPING_TTL = 6.0
TYPING_RATE = 10  # typing frames per user per second
# Presence announcements under way at once. Each reads the user's contacts, a
# list as long as their groups; when the members of a large group reconnect
# together (a restart), hundreds of those lists would otherwise be held at
# the same time, and the process keeps that peak as resident memory.
ANNOUNCE_CONCURRENCY = 8
# Presence is published at once when none went out in the last BATCH_WINDOW
# seconds; otherwise it waits for the next batch, published together one
# window after the previous one. When a large group connects at once, each
# member's arrival goes to every other member (members squared frames); in a
# batch, a recipient's frames leave in one write instead of one each, and the
# write is what the kernel charges for. A pass publishes at most BATCH_FRAMES
# recipient frames (one larger announcement goes alone), so one batch never
# holds up the event loop for long. A longer window coalesces more but lets a
# burst run further ahead of slow readers, and what they have not read waits
# in this process's memory.
BATCH_WINDOW = 0.02
BATCH_FRAMES = 20_000


class Batches:
    """Publishes presence at once when quiet, in batches during a burst."""

    def __init__(self, fanout: Fanout, window: float = BATCH_WINDOW) -> None:
        self._fanout = fanout
        self._window = window
        self._pending: deque[tuple[tuple[str, ...], bytes]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def publish(self, recipients: tuple[str, ...], payload: bytes) -> None:
        if self._timer is None:
            self._send(recipients, payload)
            if not self._closed:
                self._timer = asyncio.get_running_loop().call_later(self._window, self._next)
        else:
            self._pending.append((recipients, payload))

    def _next(self) -> None:
        pending = self._pending
        if not pending:
            self._timer = None
            return
        frames = 0
        while pending:
            recipients, payload = pending[0]
            if frames and frames + len(recipients) > BATCH_FRAMES:
                break  # the rest of a large batch follows in the next pass
            pending.popleft()
            self._send(recipients, payload)
            frames += len(recipients)
        delay = 0.0 if pending else self._window
        self._timer = asyncio.get_running_loop().call_later(delay, self._next)

    def flush(self, close: bool = False) -> None:
        """Publish everything waiting now; once closed, publish at once from then on."""
        self._closed = self._closed or close
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            self._send(*self._pending.popleft())

    def _send(self, recipients: tuple[str, ...], payload: bytes) -> None:
        # One event that cannot be published is lost alone (as when each
        # announcement published its own); the batches go on.
        try:
            self._fanout.publish_to(recipients, payload)
        except Exception:
            log.exception("publishing presence failed")


class PresenceService:
    def __init__(
        self,
        store: Store,
        fanout: Fanout,
        clock: Clock,
        grace: float = GRACE,
        typing_ttl: float = TYPING_TTL,
        cluster: Presence | None = None,
    ) -> None:
        self.store = store
        self.cluster: Presence = cluster or MemoryPresence()
        self.cluster.on_expired(self._expired)
        self.fanout = fanout
        self.clock = clock
        self.grace = grace
        self.typing_ttl = typing_ttl
        self._connections: dict[str, int] = {}
        self._leaving: dict[str, tuple[float, int]] = {}  # user -> (deadline, last seen ms)
        self._typing: dict[tuple[str, str], tuple[float, str]] = {}  # -> (deadline, conn id)
        self._announced: dict[tuple[str, str], float] = {}  # -> when start was last sent
        self._rate: dict[str, deque[float]] = {}
        self._tasks = TaskSet("presence announcement")
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
        for key, (_deadline, origin) in list(self._typing.items()):
            if origin == connection_id:
                self._stop_typing(*key)
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
            await self.store.set_last_seen(user, at_ms)
            contacts = await self.store.contacts(user)
            hidden = await self.fanout.blockers(user)
            if self._latest.get(user) is not token:
                return
            del self._latest[user]
            payload = events.event("presence", user_id=user, status=status, last_seen=iso_ms(at_ms))
            recipients = tuple(c for c in contacts if c not in hidden)
            if recipients:
                self._batches.publish(recipients, payload)

    async def lookup(self, viewer: str, users: list[str]) -> list[dict[str, object]]:
        """Presence of the users the viewer may see: contacts the viewer has not blocked."""
        visible = set(await self.store.contacts(viewer)) - set(await self.store.blocked_by(viewer))
        wanted = [u for u in dict.fromkeys(users) if u in visible]
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

    # Typing -----------------------------------------------------------------

    async def typing(self, user: str, cid: str, state: str, connection_id: str) -> None:
        self._check_rate(user)
        members = await self.fanout.members(cid)
        if user not in members:
            raise Forbidden("you are not a member of this conversation")
        key = (cid, user)
        if state == "stop":
            if key in self._typing:
                self._stop_typing(cid, user)
            return
        now = self.clock.monotonic()
        # A start is announced when typing begins and repeated at most every
        # ttl / 2 while it is renewed, so a client can clear an indicator
        # typing_ttl after the last start even if no stop ever comes (the
        # typist's process died).
        announce = now - self._announced.get(key, -self.typing_ttl) >= self.typing_ttl / 2
        self._typing[key] = (now + self.typing_ttl, connection_id)
        if key not in self._announced or announce:
            self._announced[key] = now
            await self._typing_event(cid, user, "start")

    async def typists(self, cid: str, viewer: str) -> list[str]:
        """Who is typing in a conversation (on this process), as ``viewer`` may see it."""
        return [
            u
            for (c, u) in list(self._typing)
            if c == cid and u != viewer and viewer not in await self.fanout.blockers(u)
        ]

    def stopped_by_message(self, user: str, cid: str) -> None:
        if (cid, user) in self._typing:
            self._stop_typing(cid, user)

    def _stop_typing(self, cid: str, user: str) -> None:
        self._typing.pop((cid, user), None)
        self._announced.pop((cid, user), None)
        self._tasks.spawn(self._typing_event(cid, user, "stop"))

    async def _typing_event(self, cid: str, user: str, state: str) -> None:
        hidden = await self.fanout.blockers(user)
        members = self.fanout.cached(cid) or await self.fanout.members(cid)
        payload = events.event("typing", conversation_id=cid, user_id=user, state=state)
        self.fanout.publish_to((m for m in members if m != user and m not in hidden), payload, cid)

    def _check_rate(self, user: str) -> None:
        now = self.clock.monotonic()
        recent = self._rate.setdefault(user, deque())
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        if len(recent) >= TYPING_RATE:
            raise RateLimited(f"at most {TYPING_RATE} typing frames per second")
        recent.append(now)

    # Expiry -----------------------------------------------------------------

    def sweep(self) -> None:
        """Expire typing and finish offline transitions whose grace has passed."""
        now = self.clock.monotonic()
        for key, (deadline, _origin) in list(self._typing.items()):
            if deadline <= now:
                self._stop_typing(*key)
        for user, (deadline, seen) in list(self._leaving.items()):
            if deadline <= now:
                del self._leaving[user]
                self._tasks.spawn(self._went_offline(user, seen))
        for user, recent in list(self._rate.items()):
            if not recent or recent[-1] <= now - 1.0:
                del self._rate[user]

    async def drain(self) -> None:
        """Wait for announcements under way and publish them (tests)."""
        await self._tasks.drain()
        self._batches.flush()

    def close(self) -> None:
        """Shutting down: publish what waits, and from now on without batches."""
        self._batches.flush(close=True)
