"""One encoded frame to every local session of a delivery's recipients.

``deliver(by_user, recipients, frame, direct, failed, conversation_id, seq)``
walks the recipients' sessions (``by_user`` maps a user id to a list of
sessions) and returns the sessions that must decide for themselves: those
holding live events (see ``Session.hold``) and, for a stream event (``seq``
above 0), those whose ``high`` (see ``handed.py``) does not know the
conversation or is below ``seq - 1`` (a gap); the caller hands the frame to
those. For a stream event one attribute tells both: a session's ``high`` is
None while it holds. A stream event at or below a session's ``high`` is a
duplicate and is not sent; one at ``high + 1`` moves ``high``. A session whose
writer raised is appended to ``failed`` with the exception, and the walk goes
on: the caller closes that connection (its client resumes) and the others are
not short of the frame. Every other session gets the frame:

- with ``direct`` true and an idle writer (``busy`` false, a socket ``fd``,
  a transport that is not closing), it is sent at once with one ``send()``;
  whatever the kernel does not take goes to ``Writer.rest``, which queues it
  in the transport;
- otherwise it is queued with ``Writer.push`` and written, coalesced with
  whatever else that writer receives in this event-loop pass, by the flusher.

Either way the connection's bytes stay in the order they were handed over: a
writer is idle only when nothing of its own and nothing of its transport is
waiting to be written.

The compiled ``_delivery`` module does this without the interpreter's cost
per recipient (the kernel's ``send()`` is then most of it). Without it (no C
compiler at install time, or ``HUBBUB_PURE_PYTHON=1``) ``deliver_py`` queues
every frame, which is the same traffic written in one pass instead of at once.

``handed()`` counts the frames either one handed to writers in this process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from hubbub.gateway.session import Session

Failed = list[tuple["Session", BaseException]]
_handed = [0]  # deliver_py's count


class Deliver(Protocol):
    def __call__(
        self,
        by_user: dict[str, list[Session]],
        recipients: Sequence[str],
        frame: bytes,
        direct: bool,
        failed: Failed,
        conversation_id: str = "",
        seq: int = 0,
        /,
    ) -> list[Session]: ...


def deliver_py(
    by_user: dict[str, list[Session]],
    recipients: Sequence[str],
    frame: bytes,
    direct: bool,
    failed: Failed,
    conversation_id: str = "",
    seq: int = 0,
) -> list[Session]:
    """The reference implementation: every frame is queued, none sent at once."""
    held: list[Session] = []
    pushed = 0
    for user_id in tuple(recipients):
        sessions = by_user.get(user_id)
        if sessions is None:
            continue
        for session in list(sessions):
            try:
                if seq:
                    seqs = session.high
                    last = None if seqs is None else seqs.get(conversation_id)
                    if seqs is None or last is None or seq > last + 1:
                        held.append(session)  # holding, a new conversation, or a gap
                    elif seq == last + 1:
                        seqs[conversation_id] = seq
                        session.writer.push(frame)
                        pushed += 1
                elif session.held is not None:
                    held.append(session)
                else:
                    session.writer.push(frame)
                    pushed += 1
            except Exception as exc:
                failed.append((session, exc))
    _handed[0] += pushed
    return held


def handed_py() -> int:
    return _handed[0]


def _compiled() -> tuple[Deliver, Callable[[], int]] | None:
    if os.environ.get("HUBBUB_PURE_PYTHON"):
        return None
    try:
        from hubbub.gateway import _delivery
    except ImportError:
        return None
    # An extension built before it counted: the same fan-out, its frames uncounted.
    return _delivery.deliver, getattr(_delivery, "handed", _uncounted)


def _uncounted() -> int:
    return 0


_found = _compiled()
deliver_c = None if _found is None else _found[0]
deliver: Deliver = deliver_c or deliver_py
handed: Callable[[], int] = handed_py if _found is None else _found[1]
COMPILED = deliver_c is not None
