"""Typing indicators: state, not history, kept in memory with deadlines.

``start`` lasts ``ttl`` seconds unless renewed, and is announced when typing
begins and again at most every ``ttl / 2`` while renewed; ``stop`` is
announced when the typist says so, when it expires, when the typist sends a
message there, or when the connection it came from closes. Clients clear an
indicator ``ttl`` after the last ``start`` in any case, so a process that
dies cannot leave one on.
"""

from __future__ import annotations

from collections import deque

from hubbub.clock import Clock
from hubbub.errors import Forbidden, RateLimited
from hubbub.protocol import events
from hubbub.service.fanout import Fanout
from hubbub.tasks import TaskSet

TYPING_TTL = 6.0
TYPING_RATE = 10  # typing frames per user per second


class Typing:
    def __init__(self, fanout: Fanout, clock: Clock, tasks: TaskSet, ttl: float) -> None:
        self.fanout = fanout
        self.clock = clock
        self.ttl = ttl
        self._tasks = tasks
        self._typing: dict[tuple[str, str], tuple[float, str]] = {}  # -> (deadline, conn id)
        self._announced: dict[tuple[str, str], float] = {}  # -> when start was last sent
        self._rate: dict[str, deque[float]] = {}

    async def typing(self, user: str, cid: str, state: str, connection_id: str) -> None:
        self._check_rate(user)
        members = await self.fanout.members(cid)
        if user not in members:
            raise Forbidden("you are not a member of this conversation")
        key = (cid, user)
        if state == "stop":
            if key in self._typing:
                self._stop(cid, user)
            return
        now = self.clock.monotonic()
        # A start is announced when typing begins and repeated at most every
        # ttl / 2 while it is renewed, so a client can clear an indicator ttl
        # after the last start even if no stop ever comes (the typist's
        # process died).
        announce = now - self._announced.get(key, -self.ttl) >= self.ttl / 2
        self._typing[key] = (now + self.ttl, connection_id)
        if key not in self._announced or announce:
            self._announced[key] = now
            await self._event(cid, user, "start")

    async def typists(self, cid: str, viewer: str) -> list[str]:
        """Who is typing in a conversation (on this process), as ``viewer`` may see it."""
        return [
            u
            for (c, u) in list(self._typing)
            if c == cid and u != viewer and viewer not in await self.fanout.blockers(u)
        ]

    def stopped_by_message(self, user: str, cid: str) -> None:
        if (cid, user) in self._typing:
            self._stop(cid, user)

    def closed(self, connection_id: str) -> None:
        """A connection closed: whatever it was typing stops."""
        for key, (_deadline, origin) in list(self._typing.items()):
            if origin == connection_id:
                self._stop(*key)

    def sweep(self, now: float) -> None:
        """Stop what has expired and forget rates older than a second."""
        for key, (deadline, _origin) in list(self._typing.items()):
            if deadline <= now:
                self._stop(*key)
        for user, recent in list(self._rate.items()):
            if not recent or recent[-1] <= now - 1.0:
                del self._rate[user]

    def _stop(self, cid: str, user: str) -> None:
        self._typing.pop((cid, user), None)
        self._announced.pop((cid, user), None)
        self._tasks.spawn(self._event(cid, user, "stop"))

    async def _event(self, cid: str, user: str, state: str) -> None:
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
