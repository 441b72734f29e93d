"""Bounded, coalescing outbound queues.

Fan-out hands the same encoded frame bytes to each recipient's ``Writer``
(see ``delivery``). The first event of an event-loop pass may be sent at once
to every idle connection: at a few messages per second that is what keeps
latency low. Everything after it in the same pass is queued: the first append
marks the writer dirty, and one ``Flusher`` callback at the end of the pass
writes everything each dirty writer holds with a single ``transport.write``.
Under load a receiver thus gets many frames per system call, which is what
lets delivery outrun one write per frame.

A writer is *busy* while it holds frames or its transport holds bytes the
kernel has not taken (the transport is told to report any backlog at all:
``pause_writing`` at the first byte, ``resume_writing`` when empty). Only an
idle writer takes a direct send, so a connection's bytes stay in order.

A writer whose backlog (what the kernel would not take: the transport's buffer
after a flush) passes its limit is overflowing: the connection is closed as
too slow, and the client recovers with ``resume``. A slow client never stalls
the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("hubbub.gateway")

BURST_FACTOR = 8


class Flusher:
    __slots__ = ("_dirty", "_loop", "_scheduled", "direct")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Writer] = []
        self._scheduled = False
        # Whether a delivery may still be sent at once in this pass.
        self.direct = True

    def mark(self, writer: Writer) -> None:
        self._dirty.append(writer)
        self._schedule()

    def sent_direct(self) -> None:
        """A delivery went out at once: queue the rest of this pass."""
        self.direct = False
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        dirty, self._dirty = self._dirty, []
        self._scheduled = False
        self.direct = True
        for writer in dirty:
            try:
                writer.flush()
            except Exception:  # one broken connection must not stall the others
                log.exception("flushing a connection failed; dropping its queue")
                writer.discard()


class BacklogReporting(asyncio.Protocol):
    """The part of a connection's protocol that keeps its Writer idle-aware.

    The transport is told to report any backlog at all (a high-water mark of
    0), and its pause and resume calls are passed on to the writer. Without
    this a direct send could overtake bytes waiting in the transport. The
    gateway's connections and the fan-out tests share it.
    """

    def report_backlog(self, transport: asyncio.WriteTransport) -> None:
        transport.set_write_buffer_limits(high=0)

    def backlog_writer(self) -> Writer | None:
        raise NotImplementedError

    def pause_writing(self) -> None:
        writer = self.backlog_writer()
        if writer is not None:
            writer.backlog(True)

    def resume_writing(self) -> None:
        writer = self.backlog_writer()
        if writer is not None:
            writer.backlog(False)


class Writer:
    __slots__ = (
        "_backlog",
        "_buffer",
        "_flusher",
        "_limit",
        "_on_overflow",
        "_size",
        "busy",
        "closed",
        "fd",
        "transport",
    )

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        flusher: Flusher,
        limit: int,
        on_overflow: Callable[[], None],
    ) -> None:
        self.transport = transport
        self._flusher = flusher
        self._limit = limit
        self._on_overflow = on_overflow
        self._buffer: list[bytes] = []
        self._size = 0
        self.closed = False
        self._backlog = transport.get_write_buffer_size() > 0
        self.busy = self._backlog
        # Direct sends go to the socket itself: only a plain one qualifies.
        sock = transport.get_extra_info("socket")
        plain = sock is not None and transport.get_extra_info("sslcontext") is None
        self.fd: int = sock.fileno() if plain else -1

    def push(self, data: bytes) -> None:
        if self.closed:
            return
        buffer = self._buffer
        if not buffer:
            self._flusher.mark(self)
            self.busy = True
        buffer.append(data)
        self._size += len(data)
        # What one event-loop pass queues is flushed at its end; only a burst
        # far beyond the limit is refused before the kernel had its chance.
        if self._size > self._limit * BURST_FACTOR:
            self._overflow()

    def rest(self, frame: bytes, sent: int) -> None:
        """A direct send wrote ``sent`` bytes of ``frame``: the transport takes the rest."""
        if self.closed:
            return
        self.transport.write(frame[sent:] if sent else frame)
        if self.transport.get_write_buffer_size() > self._limit:
            self._overflow()

    def flush(self) -> None:
        buffer = self._buffer
        if self.closed or not buffer:
            return
        if self.transport.is_closing():
            # Closed under us (a reset seen by the event loop): the
            # connection's own close handling follows; nothing more to write.
            self.discard()
            return
        self.transport.write(buffer[0] if len(buffer) == 1 else b"".join(buffer))
        buffer.clear()
        self._size = 0
        self.busy = self._backlog
        if self.transport.get_write_buffer_size() > self._limit:
            self._overflow()

    def backlog(self, waiting: bool) -> None:
        """The transport has bytes the kernel did not take (or no longer has)."""
        self._backlog = waiting
        self.busy = waiting or self.closed or bool(self._buffer)

    def discard(self) -> None:
        """Drop what is queued and accept nothing more."""
        self.closed = True
        self.busy = True
        self._buffer.clear()
        self._size = 0

    def _overflow(self) -> None:
        self.discard()
        self._on_overflow()
