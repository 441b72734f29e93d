"""The local connection registry and the fan-out hot path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from hubbub.broker.base import Delivery
from hubbub.protocol.wsframe import text_frame

if TYPE_CHECKING:
    from hubbub.gateway.session import Session


class Hub:
    """Which sessions of this process belong to which user."""

    def __init__(self) -> None:
        self._by_user: dict[str, list[Session]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

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
        """Frame the event once; queue the same bytes for every local recipient."""
        frame = text_frame(delivery.payload)
        by_user = self._by_user
        for user_id in delivery.recipients:
            sessions = by_user.get(user_id)
            if sessions is None:
                continue
            for session in sessions:
                if session.held is None:
                    session.writer.push(frame)
                else:
                    session.hold(delivery.conversation_id, delivery.seq, frame)
