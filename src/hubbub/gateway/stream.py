"""The HTTP fallback transport's session end: Server-Sent Events down, POST up.

A client that cannot hold a WebSocket opens ``GET /sse`` and reads the same
JSON frames as ``/ws`` would send, one SSE message each (``data: {...}``); it
posts its commands to ``POST /sse/{connection_id}``, one frame per line. The
HTTP routes are in ``api/fallback.py``; this module is what the session sees:

- ``StreamWriter`` stands where a WebSocket ``Writer`` stands. The fan-out
  hands it the WebSocket-framed bytes every recipient gets; it takes the JSON
  back out of the frame and queues it as an SSE message. It is always
  ``busy``, so the fan-out never sends to it directly. What waits longer than
  the client reads is bounded like a WebSocket's backlog: past
  ``outbound_buffer_bytes`` the session ends as too slow (4409).
- ``Stream`` stands where a WebSocket ``Connection`` stands: it ends the
  session with a final ``event: close`` carrying the WebSocket close code,
  and answers the heartbeat. A client cannot answer a ping on an SSE stream,
  so a stream is alive while it keeps taking what is written to it: a ping
  finds it alive when nothing written before it is still waiting.

Between events, a comment line goes out every ``KEEPALIVE`` seconds, so that
proxies which cut idle responses (60 s is common) keep the stream open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec

from hubbub.gateway.connection import CLOSE_GRACE, INTERNAL_ERROR, TOO_SLOW
from hubbub.protocol import events
from hubbub.protocol.commands import request_id
from hubbub.protocol.wsframe import unframe

if TYPE_CHECKING:
    from hubbub.gateway.server import Gateway
    from hubbub.gateway.session import Session

KEEPALIVE = 15.0  # seconds of silence before a comment line goes out
KEEPALIVE_LINE = b": keepalive\n\n"
Send = Callable[[bytes], Awaitable[None]]


def sse_message(payload: bytes, event: str | None = None) -> bytes:
    """One SSE message; ``payload`` is one line of JSON (no raw newlines)."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + payload + b"\n\n"


_last: tuple[bytes, list[bytes]] = (b"", [])


def sse_messages(data: bytes) -> list[bytes]:
    """The frames in ``data`` as SSE messages.

    The fan-out hands every recipient the same bytes object; the messages of
    the last one are kept, so they are made once per event, not per recipient.
    """
    global _last
    if _last[0] is not data:
        _last = (data, [sse_message(payload) for payload in unframe(data)])
    return _last[1]


class StreamWriter:
    """The outbound queue of an HTTP stream, drained by its response."""

    # Read by the fan-out (delivery.py): never a direct send.
    busy = True
    fd = -1
    transport = None

    def __init__(
        self, limit: int, on_overflow: Callable[[], None], on_sent: Callable[[], None]
    ) -> None:
        self._limit = limit
        self._on_overflow = on_overflow
        self._on_sent = on_sent
        self._chunks: list[bytes] = []
        self._size = 0
        self._ready = asyncio.Event()
        self.closed = False
        self.ended = False  # the final chunk is queued; the response ends after it
        self.sending = False  # the response is writing a chunk the client has not taken

    def push(self, data: bytes) -> None:
        if self.closed:
            return
        for chunk in sse_messages(data):
            self._chunks.append(chunk)
            self._size += len(chunk)
        self._ready.set()
        if self._size > self._limit:
            self._overflow()

    def flush(self) -> None:
        """Nothing to do: the response writes as soon as something is queued."""

    def discard(self) -> None:
        """Drop what is queued and accept nothing more (the close follows)."""
        self.closed = True
        self._chunks.clear()
        self._size = 0

    def end(self, last: bytes, keep: bool) -> None:
        """Queue ``last`` after what waits (or instead of it); the response ends after it."""
        if self.ended:
            return
        if not keep:
            self._chunks.clear()
        self._chunks.append(last)
        self.closed = self.ended = True
        self._ready.set()

    def gone(self) -> None:
        """The client went: the response ends now."""
        self.discard()
        self.ended = True
        self._ready.set()

    @property
    def idle(self) -> bool:
        return not self._chunks and not self.sending

    def _overflow(self) -> None:
        self.discard()
        self._on_overflow()

    async def drain(self, send: Send) -> None:
        """Write what is queued as it comes, with keep-alive comments, until the end."""
        while True:
            if not self._chunks:
                if self.ended:
                    return
                self._ready.clear()
                try:
                    await asyncio.wait_for(self._ready.wait(), KEEPALIVE)
                except TimeoutError:
                    self._chunks.append(KEEPALIVE_LINE)
                continue
            chunks, self._chunks = self._chunks, []
            self._size = 0
            self.sending = True
            try:
                await send(b"".join(chunks))
            finally:
                self.sending = False
            self._on_sent()


class Stream:
    """The connection end of one HTTP-stream session (see the module's text)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.writer = StreamWriter(gateway.limits.outbound_buffer_bytes, self.overflow, self._taken)
        self.session: Session | None = None
        self.paused = False
        self._ping_waiting = False
        self._task: asyncio.Task[object] | None = None
        self._give_up: asyncio.TimerHandle | None = None
        self._abandoned = False

    def close(self, code: int, reason: str) -> None:
        """End the session now; its response ends once the close event is written.

        A client that takes nothing more never lets that write finish: after
        ``CLOSE_GRACE`` the response is abandoned.
        """
        session = self.session
        if session is None or self.writer.ended:
            return
        session.metrics.closed(code)
        last = sse_message(msgspec.json.encode({"code": code, "reason": reason}), "close")
        self.writer.end(last, keep=code != TOO_SLOW)
        self._forget()
        self._give_up = asyncio.get_running_loop().call_later(CLOSE_GRACE, self._abandon)

    def _forget(self) -> None:
        """The session counts no longer and takes no more commands (once)."""
        session = self.session
        if session is None:
            return
        self.session = None
        session.on_close()
        self.gateway.detach(session)
        self.gateway.streams.pop(session.connection_id, None)

    def _abandon(self) -> None:
        if self._task is not None and not self._task.done():
            self._abandoned = True
            self._task.cancel()

    def ping(self) -> None:
        """Alive if something is taken after this ping (at once, if nothing waits)."""
        session = self.session
        if session is None:
            return
        if self.writer.idle:
            self._alive(session)
        else:
            self._ping_waiting = True

    def _taken(self) -> None:
        """A write finished: the client is reading."""
        session = self.session
        if self._ping_waiting and session is not None:
            self._alive(session)

    def _alive(self, session: Session) -> None:
        self._ping_waiting = False
        session.ping_sent_at = None
        session.last_activity = self.gateway.clock.monotonic()

    def overflow(self) -> None:
        asyncio.get_running_loop().call_soon(self.close, TOO_SLOW, "too slow: resume to recover")

    def fail(self) -> None:
        asyncio.get_running_loop().call_soon(
            self.close, INTERNAL_ERROR, "internal error: reconnect and resume"
        )

    def pause_reading(self, pause: bool) -> None:
        """Too many commands wait: the rest of a post is refused until they are handled."""
        self.paused = pause

    def commands(self, body: bytes) -> bool:
        """The frames of one POST, one per line, in order; False if the session is gone.

        While too many commands wait (``pending_commands``, where a WebSocket
        would stop reading), each further frame is answered ``rate_limited``.
        """
        session = self.session
        if session is None or session.closed:
            return False
        session.last_activity = self.gateway.clock.monotonic()
        session.ping_sent_at = None
        refusal = "too many commands waiting; slow down"
        for line in body.splitlines():
            if not line.strip():
                continue
            if self.paused:
                session.metrics.refusal("rate_limited")
                session.send(events.error(request_id(line), "rate_limited", refusal))
            else:
                session.on_text(line)
        return True

    async def run(self, send: Send) -> bool:
        """Serve the session until it ends or the client goes; then forget it.

        True if the response may be ended properly; False if it was abandoned
        (a client that took nothing for ``CLOSE_GRACE`` after the close).
        """
        self._task = asyncio.current_task()
        try:
            await self.writer.drain(send)
        except asyncio.CancelledError:
            if not self._abandoned:
                raise
            return False
        finally:
            self.finish()
        return True

    def finish(self) -> None:
        """After the response (or instead of it): nothing of the session is left."""
        self.writer.gone()
        self._forget()
        if self._give_up is not None:
            self._give_up.cancel()
            self._give_up = None
