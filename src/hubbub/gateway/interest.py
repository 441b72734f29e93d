"""What this process watches on the broker: the conversations of its connected users.

With routing by interest (``broker/routing.py``) a process receives only the
events of what it watches. ``Interest`` keeps that to the users with a session
here and the conversations they are members of:

- a user's first session watches the user (joins and presence addressed to
  them) and, once read from the database, each of their conversations; their
  last session unwatches them all (the broker lingers before unsubscribing).
  The users who connect while a read is under way are read together next,
  up to ``LOAD_BATCH`` in one query: when thousands connect at once (a
  restart), a task and a query each would pile up behind the pool;
- ``ready(user)`` is done once the broker receives all of that: the user's
  own channel before their conversations are read (a join published after
  the read is heard), their conversations' channels after. The gateway sends
  ``hello`` only then, so that every event committed after ``hello`` reaches
  the session live and everything before is in the database for ``resume``;
  a read that fails is tried again after ``RETRY_PAUSE``;
- an event that makes a connected user a member (``Delivery.joined``) watches
  its conversation; once the broker receives that conversation's events, what
  was committed since the join and before the subscription took effect is read
  from the database (the sequencer's ``catch_up_one``); ``Delivery.left``
  unwatches it;
- after a broker outage (``refresh``) every connected user's conversations are
  read again: joins published while Redis was away reached nobody. A new one's
  events since the join are replayed for that user from the database, then it
  is watched and caught up; one left meanwhile is unwatched.

Without routing (one process, or ``HUBBUB_ROUTING=broadcast``) nothing here
runs: every event reaches every process.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from hubbub.broker.base import Broker, Delivery
from hubbub.gateway.handed import visible
from hubbub.gateway.sequencer import Sequencer
from hubbub.models import Replay
from hubbub.protocol import events
from hubbub.tasks import log_failure

log = logging.getLogger("hubbub.gateway")
LOAD_BATCH = 500
"""Connected users whose conversations one read brings."""
RETRY_PAUSE = 1.0
"""Seconds before the conversations of users are read again after a failed read."""

ConversationsOf = Callable[[list[str]], Awaitable[dict[str, list[str]]]]
Replayer = Callable[[str, dict[str, int]], Awaitable[list[Replay]]]


class Interest:
    def __init__(
        self,
        broker: Broker,
        sequencer: Sequencer,
        conversations_of: ConversationsOf,
        replay: Replayer,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self.broker = broker
        self.sequencer = sequencer
        self._conversations_of = conversations_of
        self._replay = replay
        self._spawn = spawn
        self._sessions: dict[str, int] = {}
        self._of: dict[str, set[str]] = {}  # connected user -> conversations watched for them
        self._unread: dict[str, None] = {}  # users not read yet (each waits in _waiting)
        self._waiting: dict[str, asyncio.Future[None]] = {}  # users not ready -> done when ready
        self._reading = False

    def conversations(self, user: str) -> frozenset[str]:
        return frozenset(self._of.get(user, ()))

    def ready(self, user: str) -> asyncio.Future[None] | None:
        """Done once the broker receives the events of ``user``'s conversations (None: it does).

        Cancelled if the user's last session closes first.
        """
        return self._waiting.get(user)

    def opened(self, user: str) -> None:
        count = self._sessions.get(user, 0)
        self._sessions[user] = count + 1
        if count:
            return
        self._of[user] = set()
        self.broker.watch_user(user)
        self._unread[user] = None
        self._waiting[user] = asyncio.get_running_loop().create_future()
        if not self._reading:
            self._reading = True
            self._spawn(self._load())

    def closed(self, user: str) -> None:
        count = self._sessions.get(user, 0)
        if count > 1:
            self._sessions[user] = count - 1
            return
        if not count:
            return
        del self._sessions[user]
        self._unread.pop(user, None)
        waiting = self._waiting.pop(user, None)
        if waiting is not None:
            waiting.cancel()
        self.broker.unwatch_user(user)
        for cid in self._of.pop(user, ()):
            self.broker.unwatch(cid)

    async def _load(self) -> None:
        """Read the conversations of the users not read yet, a batch at a time."""
        try:
            while self._unread:
                users = list(itertools.islice(self._unread, LOAD_BATCH))
                for user in users:
                    del self._unread[user]
                # Each one's own future: one who left and came back meanwhile
                # is in the queue again, for a read after their return.
                waiting = [(user, self._waiting[user]) for user in users]
                await self.broker.settled()  # their own channels: joins from now on are heard
                try:
                    found = await self._conversations_of(users)
                except Exception as exc:
                    log_failure(log, f"could not read the conversations of {len(users)} users", exc)
                    for user, future in waiting:
                        if self._awaits(user, future):
                            self._unread[user] = None
                    await asyncio.sleep(RETRY_PAUSE)
                    continue
                for user in users:  # one gone meanwhile watches nothing (see _add)
                    for cid in found.get(user, ()):
                        self._add(user, cid)
                await self.broker.settled()
                for user, future in waiting:
                    if self._awaits(user, future):
                        del self._waiting[user]
                        future.set_result(None)
        finally:
            self._reading = False

    def _awaits(self, user: str, future: asyncio.Future[None]) -> bool:
        """Whether ``user`` still waits on ``future`` (not gone, nor back with another)."""
        return self._waiting.get(user) is future

    def _add(self, user: str, cid: str) -> bool:
        watched = self._of.get(user)
        if watched is None or cid in watched:
            return False  # gone meanwhile, or already watched
        watched.add(cid)
        self.broker.watch(cid)
        return True

    def _remove(self, user: str, cid: str) -> None:
        watched = self._of.get(user)
        if watched is not None and cid in watched:
            watched.discard(cid)
            self.broker.unwatch(cid)

    def __call__(self, delivery: Delivery) -> None:
        """A broker handler: watch and unwatch as connected users join and leave."""
        cid = delivery.conversation_id
        if not cid:
            return
        joined = False
        for user in delivery.joined:
            joined = self._add(user, cid) or joined
        for user in delivery.left:
            self._remove(user, cid)
        if joined:
            if not delivery.seq:
                # A join outside the stream (a new conversation): its stream
                # starts at 1, and a first live event past it is a gap.
                self.sequencer.expect(cid, 0)
            self._spawn(self._joined(cid))

    async def _joined(self, cid: str) -> None:
        if await self.broker.watched(cid):
            await self.sequencer.catch_up_one(cid)

    async def refresh(self) -> None:
        """After a broker outage: watch what connected users joined meanwhile, and bring it."""
        connected = list(self._sessions)
        for start in range(0, len(connected), LOAD_BATCH):
            users = connected[start : start + LOAD_BATCH]
            try:
                of = await self._conversations_of(users)
            except Exception as exc:
                log_failure(log, f"could not read the conversations of {len(users)} users", exc)
                continue
            for user in users:
                if user not in self._of:
                    continue  # gone meanwhile
                found = set(of.get(user, ()))
                for cid in self.conversations(user) - found:
                    self._remove(user, cid)
                for cid in sorted(found - self.conversations(user)):
                    self._spawn(self._joined_meanwhile(user, cid))

    async def _joined_meanwhile(self, user: str, cid: str) -> None:
        if not self.sequencer.tracks(cid):
            # Nothing of it was seen here: replay it for its new member from
            # the database (from the join on; a long past is paged by the
            # client), before watching it, so that no live event of it comes
            # first and starts it later.
            try:
                (found,) = await self._replay(user, {cid: 0})
            except Exception as exc:
                log_failure(log, f"could not replay {cid} for {user}", exc)
                found = None
            shown = [] if found is None or found.status != "ok" else visible(found.events, user)
            if shown and not self.sequencer.tracks(cid):
                self.sequencer.expect(cid, shown[0].seq - 1)
                for event in shown:
                    self.sequencer(Delivery(cid, event.seq, (user,), events.stream(event)))
        if self._add(user, cid) and await self.broker.watched(cid):
            await self.sequencer.catch_up_one(cid)  # committed since the replay's read
