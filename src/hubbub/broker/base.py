"""The broker port.

A broker carries an already-encoded event to every process that may have a
recipient connected. It is never the only copy of anything: the store has
every event, and clients recover gaps from it with their cursors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for the members of one conversation."""

    conversation_id: str
    seq: int
    """The event's position in the conversation (0 for events outside the stream)."""
    recipients: tuple[str, ...]
    payload: bytes
    """The event as a JSON text frame body, encoded once for every recipient."""
    joined: tuple[str, ...] = ()
    """Recipients this event makes members (``member.joined``, ``conversation.created``).

    Their processes may not follow the conversation yet: the event reaches them
    by a way of its own (``routing.py``), and they start following it."""
    left: tuple[str, ...] = ()
    """Recipients this event removes (``member.left``): told, then no longer followed."""


Handler = Callable[[Delivery], None]

Relayed = tuple[str, str, bytes]
"""Commands for a session of another process: (connection id, user id, frames)."""
RelayHandler = Callable[[Relayed], bool]
"""Hands relayed commands to their session; False if there is no such session."""


class Broker(Protocol):
    healthy: bool
    """False while the broker cannot reach the other processes."""
    origin: str
    """This process's name among the others (``p_...``)."""
    routed: bool
    """True when other processes send this one only the events it watches."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def subscribe(self, handler: Handler) -> None:
        """Call ``handler`` for every delivery published by any process."""

    def publish(self, delivery: Delivery) -> None:
        """Deliver to local subscribers at once; relay to other processes, best effort."""

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the broker is back after an outage (events may be lost)."""

    async def relay(self, node: str, message: Relayed) -> bool:
        """Hand ``message`` to the process named ``node`` alone, and wait for its answer.

        Returns what that process's relay handler returned (whether the
        session took the commands); False if no such process listens. Raises
        ``Unavailable`` if the others cannot be reached or do not answer in time.
        """

    def on_relay(self, handler: RelayHandler) -> None:
        """Answer every message relayed to this process with ``handler``."""

    # Interest: which events this process receives from the others.

    def watch(self, conversation_id: str) -> None:
        """Receive the events of ``conversation_id`` (counted: one call per interested party)."""

    def unwatch(self, conversation_id: str) -> None:
        """One interested party fewer; at none, stop receiving them (after a linger)."""

    def watch_user(self, user_id: str) -> None:
        """Receive the events addressed to ``user_id`` alone: joins, presence (counted)."""

    def unwatch_user(self, user_id: str) -> None:
        """One interested party fewer for ``user_id``'s own events."""

    async def watched(self, conversation_id: str) -> bool:
        """Wait until the events of ``conversation_id`` are received (False: not in time)."""

    async def settled(self) -> bool:
        """Wait until everything watched now is received (False: not in time, or unreachable)."""
