"""What one session has handed its client, per conversation: each event once, in order.

A session's client may receive a conversation's stream events from three
sources: live (through the broker and the sequencer), a ``resume`` replay, and
a gap fill read from the database. The live stream of a process can run
behind the database (broker lag, the sequencer holding events for a gap, a
catch-up after a broker outage), so the same event can reach a session twice,
and late. This bookkeeping makes sure it reaches the client once.

Per conversation the session keeps the span ``low..high`` of seqs the client
has: what was handed to it, and what it said it had (a ``resume`` cursor).
What it was told to page up to (``too_far_behind``) moves ``high`` too, so no
live event up to there follows. The span never has a hole: a live event that
would jump past ``high + 1`` is a gap, which the session fills from the
database before it hands on anything after it.

- A live event at or below ``high`` is dropped; ``high + 1`` goes on; one
  further on is a gap (``GAP``). The first live event of a conversation the
  session knows nothing of starts the span.
- A replay hands on the events outside the span (a client may ask again for
  what lies below ``low``, never for what it was already handed) and widens it.

``high`` is a plain dict that the fan-out reads and writes in place (a
session's ``high`` attribute is this dict, or None while the session holds
live events; ``_delivery.c``): it admits ``high + 1``, drops what is at or
below it, and leaves everything else (a conversation not yet in ``high``, a
gap, a holding session) to the session.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

SEND, DROP, GAP = 0, 1, 2


class HasSeq(Protocol):
    @property
    def seq(self) -> int: ...


class Event(HasSeq, Protocol):
    @property
    def type(self) -> str: ...
    @property
    def data(self) -> dict[str, Any] | None: ...


E = TypeVar("E", bound=HasSeq)
V = TypeVar("V", bound=Event)


def visible(events: Iterable[V], user: str) -> list[V]:
    """The events of a stretch of the stream that ``user`` was a member for.

    ``events`` are consecutive stream events read from the database. A member
    removed and added again sees its ``member.left``, nothing until its next
    ``member.joined``, and that join. Whether the user was a member at the
    start of the stretch follows from the first of its own membership events
    in it: a join means it was not (with none, it was).
    """
    events = list(events)
    own = [e for e in events if e.type in _MEMBERSHIP and _about(e, user)]
    member = own[0].type == "member.left" if own else True
    shown = []
    for event in events:
        if event.type in _MEMBERSHIP and _about(event, user):
            member = event.type == "member.joined"
            shown.append(event)
        elif member:
            shown.append(event)
    return shown


_MEMBERSHIP = ("member.joined", "member.left")


def _about(event: Event, user: str) -> bool:
    data = event.data
    return data is not None and data.get("user_id") == user


class Handed:
    __slots__ = ("high", "low")

    def __init__(self) -> None:
        self.high: dict[str, int] = {}
        self.low: dict[str, int] = {}

    def live(self, conversation_id: str, seq: int) -> int:
        """``SEND`` (and note it), ``DROP`` (already handed) or ``GAP``."""
        high = self.high.get(conversation_id)
        if high is None:
            self.high[conversation_id] = self.low[conversation_id] = seq
            return SEND
        if seq <= high:
            return DROP
        if seq > high + 1:
            return GAP
        self.high[conversation_id] = seq
        return SEND

    def replay(
        self, conversation_id: str, cursor: int, last_seq: int, events: Iterable[E]
    ) -> list[E]:
        """The replayed events the client does not have; the span then covers the replay.

        ``events`` are every event after ``cursor`` in seq order, up to
        ``last_seq`` or a little past it.
        """
        high = self.high.get(conversation_id)
        low = self.low.get(conversation_id, 0)
        top = max(cursor, last_seq)
        new = []
        for event in events:
            top = max(top, event.seq)
            if high is None or event.seq > high or event.seq < low:
                new.append(event)
        if high is None or cursor > high:
            # Nothing handed overlaps what the client says it has (or all of
            # it lies below the cursor): the span starts after the cursor.
            self.low[conversation_id] = cursor + 1
        else:
            self.low[conversation_id] = min(low, cursor + 1)
        self.high[conversation_id] = top if high is None else max(high, top)
        return new

    def skip_to(self, conversation_id: str, seq: int) -> None:
        """Nothing before ``seq`` is for the client (it was not a member then)."""
        if self.high.get(conversation_id, seq - 1) < seq - 1:
            self.high[conversation_id] = seq - 1

    def paging(self, conversation_id: str, last_seq: int) -> None:
        """The client was told to page up to ``last_seq`` (``too_far_behind``).

        Live events up to there are dropped; a replay the client asks for
        later may still bring them (that is paging through the stream).
        """
        high = self.high.get(conversation_id)
        if high is None or last_seq > high:
            self.high[conversation_id] = last_seq
            self.low[conversation_id] = last_seq + 1
