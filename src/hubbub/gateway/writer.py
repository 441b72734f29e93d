"""Bounded, coalescing outbound queues.

Fan-out appends the same encoded frame bytes to each recipient's ``Writer``.
Nothing is written at once: the first append marks the writer dirty, and one
``Flusher`` callback per event-loop pass writes everything each dirty writer
holds with a single ``transport.write``. Under load a receiver gets many
frames per system call, which is what lets delivery outrun one write per frame.

A writer whose backlog (what the kernel would not take: the transport's buffer
after a flush) passes its limit is overflowing: the connection is closed as
too slow, and the client recovers with ``resume``. A slow client never stalls
the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

BURST_FACTOR = 8


class Flusher:
    __slots__ = ("_dirty", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Writer] = []
        self._scheduled = False

    def mark(self, writer: Writer) -> None:
        self._dirty.append(writer)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        dirty, self._dirty = self._dirty, []
        self._scheduled = False
        for writer in dirty:
            writer.flush()


class Writer:
    __slots__ = ("_buffer", "_flusher", "_limit", "_on_overflow", "_size", "_transport", "closed")

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        flusher: Flusher,
        limit: int,
        on_overflow: Callable[[], None],
    ) -> None:
        self._transport = transport
        self._flusher = flusher
        self._limit = limit
        self._on_overflow = on_overflow
        self._buffer: list[bytes] = []
        self._size = 0
        self.closed = False

    def push(self, data: bytes) -> None:
        if self.closed:
            return
        buffer = self._buffer
        if not buffer:
            self._flusher.mark(self)
        buffer.append(data)
        self._size += len(data)
        # What one event-loop pass queues is flushed at its end; only a burst
        # far beyond the limit is refused before the kernel had its chance.
        if self._size > self._limit * BURST_FACTOR:
            self._overflow()

    def flush(self) -> None:
        buffer = self._buffer
        if self.closed or not buffer:
            return
        self._transport.write(buffer[0] if len(buffer) == 1 else b"".join(buffer))
        buffer.clear()
        self._size = 0
        if self._transport.get_write_buffer_size() > self._limit:
            self._overflow()

    def discard(self) -> None:
        """Drop what is queued and accept nothing more."""
        self.closed = True
        self._buffer.clear()
        self._size = 0

    def _overflow(self) -> None:
        self.discard()
        self._on_overflow()
