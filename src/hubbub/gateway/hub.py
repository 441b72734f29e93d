"""The local connection registry and the fan-out hot path."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from hubbub.broker.base import Delivery
from hubbub.gateway.delivery import deliver, handed
from hubbub.protocol.wsframe import text_frame

if TYPE_CHECKING:
    from hubbub.gateway.delivery import Failed
    from hubbub.gateway.session import Session
    from hubbub.gateway.writer import Flusher

log = logging.getLogger("hubbub.gateway")


class Hub:
    """Which sessions of this process belong to which user."""

    def __init__(self) -> None:
        self._by_user: dict[str, list[Session]] = {}
        self._count = 0
        self.flusher: Flusher | None = None
        self.handed = 0
        """Frames handed to sessions: sent, queued, or left to the session to order."""

    def __len__(self) -> int:
        return self._count

    @property
    def users(self) -> int:
        """Users with a session here."""
        return len(self._by_user)

    def by_user(self) -> Iterator[tuple[str, int]]:
        """Each user with a session here, and how many."""
        for user_id, sessions in self._by_user.items():
            yield user_id, len(sessions)

    def add(self, session: Session) -> None:
        self._by_user.setdefault(session.user_id, []).append(session)
        self._count += 1

    def remove(self, session: Session) -> None:
        sessions = self._by_user.get(session.user_id)
        if sessions and session in sessions:
            sessions.remove(session)
            self._count -= 1
            if not sessions:
                del self._by_user[session.user_id]

    def sessions(self) -> Iterator[Session]:
        for sessions in list(self._by_user.values()):
            yield from list(sessions)

    def deliver(self, delivery: Delivery) -> None:
        """Frame the event once; hand the same bytes to every local recipient.

        The first delivery of an event-loop pass is sent at once to idle
        connections; later ones in the same pass are queued and coalesced.
        """
        frame = text_frame(delivery.payload)
        flusher = self.flusher
        direct = flusher is not None and flusher.direct
        failed: Failed = []
        cid, seq = delivery.conversation_id, delivery.seq
        before = handed()
        held = deliver(self._by_user, delivery.recipients, frame, direct, failed, cid, seq)
        self.handed += handed() - before + len(held)
        if direct:
            assert flusher is not None
            flusher.sent_direct()
        for session, exc in failed:
            # Its connection's state is unknown: close it, and the client's
            # resume brings what it missed.
            log.error("delivery to a connection of %s failed", session.user_id, exc_info=exc)
            session.writer.discard()
            session.connection.fail()
        if not held:
            return
        if seq:  # held, the conversation's first, or past a gap: the session decides
            for session in held:
                session.offer(cid, seq, frame)
        elif cid:
            for session in held:
                session.hold(cid, seq, frame)
        else:
            # An event of no conversation (presence) has no place in a
            # replay, so holding it orders nothing; and when a large group
            # reconnects at once, each new connection would hold every other
            # member's presence.
            for session in held:
                session.push(frame)
