"""The asyncio protocol for one WebSocket connection.

uvicorn parses the HTTP request; when it is a WebSocket upgrade, uvicorn hands
the socket to this protocol (its ``ws`` protocol class) instead of an ASGI app.
Frame parsing and the handshake are done by the ``websockets`` sans-I/O
``ServerProtocol``; outbound data frames are encoded once by the hub and
written through this connection's coalescing ``Writer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs

from websockets.datastructures import Headers, MultipleValuesError
from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event
from websockets.server import ServerProtocol

from hubbub.auth import Identity
from hubbub.errors import (
    Forbidden,
    HubbubError,
    Invalid,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from hubbub.gateway.session import Session
from hubbub.gateway.writer import BacklogReporting, Writer
from hubbub.limits.quota import TooManyConnections, retry_after
from hubbub.protocol import events

if TYPE_CHECKING:
    from hubbub.gateway.server import Gateway

log = logging.getLogger("hubbub.gateway")

WS_PATH = "/ws"
CLOSE_GRACE = 5.0

# Close codes (docs/protocol.md).
GOING_AWAY = 1001
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012
UNAUTHORIZED = 4401
HEARTBEAT_TIMEOUT = 4408
TOO_SLOW = 4409

# Handshake refusals by error (the rest are 500s).
REFUSALS: dict[type[HubbubError], int] = {
    Unauthorized: 401,
    Forbidden: 403,
    Unavailable: 503,
    RateLimited: 429,
    TooManyConnections: 429,
}
# Origin, Host, ?token=, Authorization, and the client's address for the limits.
Credentials = tuple[str | None, str | None, str | None, str | None, str | None]


class Connection(BacklogReporting):
    gateway: ClassVar[Gateway]

    def __init__(
        self, config: Any = None, server_state: Any = None, app_state: Any = None, _loop: Any = None
    ) -> None:
        limits = self.gateway.limits
        # The hard ceiling: beyond it websockets closes with 1009. Between
        # max_frame_bytes and it, the frame is refused with a too_large error
        # and the connection stays open.
        # websockets bounds the whole message (all its fragments) by max_size.
        self._ws = ServerProtocol(max_size=max(limits.max_frame_bytes * 4, 1 << 20), logger=log)
        self._server_connections: set[Any] = (
            server_state.connections if server_state is not None else set()
        )
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.writer: Writer | None = None  # the session's, while there is one
        self._fragments: list[bytes] = []
        self._binary = False
        self._closing = False
        self._eof_written = False
        self._abort_timer: asyncio.TimerHandle | None = None
        # While the handshake waits for the token's key set: what came after it.
        self._waiting: list[bytes] | None = None
        self._later: Sequence[Event] = ()

    # asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._server_connections.add(self)
        self.transport = transport  # type: ignore[assignment]
        self.report_backlog(self.transport)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self._server_connections.discard(self)
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        if self.session is not None:
            self.session.writer.discard()
            self.session.on_close()
            self.gateway.detach(self.session)
            self.session = None

    def data_received(self, data: bytes) -> None:
        if self._waiting is not None:  # the handshake is not answered yet
            self._waiting.append(data)
            return
        ws = self._ws
        ws.receive_data(data)
        self._events(ws.events_received())
        self._write_protocol_output()

    def _events(self, received: Sequence[Event]) -> None:
        for n, event in enumerate(received):
            if self._waiting is not None:
                self._later = received[n:]
                return
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame) and self.session is not None:
                self._frame(event)

    def backlog_writer(self) -> Writer | None:
        return None if self.session is None else self.writer

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._write_protocol_output()
        return None

    # uvicorn's server calls this on graceful shutdown.
    def shutdown(self) -> None:
        if self.session is not None:
            self.close(SERVICE_RESTART, "server restarting")
        elif self.transport is not None:
            self.transport.close()

    # Outbound -------------------------------------------------------------

    def _write_protocol_output(self) -> None:
        """Pongs, close frames and the handshake response, in order with data."""
        assert self.transport is not None
        for chunk in self._ws.data_to_send():
            if self._eof_written:
                continue
            if chunk:
                if self.session is not None and not self.session.writer.closed:
                    self.session.writer.push(chunk)
                else:
                    self.transport.write(chunk)
            else:  # end of stream: the closing handshake is done on our side
                self._stop_session(flush=True)
                self._end_stream()

    def _stop_session(self, flush: bool) -> None:
        """A closing connection receives nothing more and counts no longer."""
        self._closing = True
        session = self.session
        if session is not None:
            self.gateway.detach(session)
            if flush:
                session.writer.flush()
            session.writer.discard()

    def _end_stream(self) -> None:
        """Half-close and keep reading until the peer closes too.

        Closing outright while the peer is still sending (a refused oversized
        frame) makes the kernel answer with a reset, which can overtake the
        close frame; a half-close lets the peer read it first.
        """
        assert self.transport is not None
        self._eof_written = True
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._abort_later()

    def _abort_later(self) -> None:
        """Abort the transport if the peer has not closed it within the grace."""
        assert self.transport is not None
        if self._abort_timer is None:
            self._abort_timer = asyncio.get_running_loop().call_later(
                CLOSE_GRACE, self.transport.abort
            )

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; abort if the peer does not finish it."""
        if self._closing or self.transport is None:
            return
        if self.session is not None:
            self.session.metrics.closed(code)
        self._stop_session(flush=code != TOO_SLOW)
        with contextlib.suppress(InvalidState):  # the peer started closing first
            self._ws.send_close(code, reason)
        for chunk in self._ws.data_to_send():
            if chunk:
                self.transport.write(chunk)
        self._abort_later()

    def ping(self) -> None:
        if self._closing:
            return
        self._ws.send_ping(b"hb")
        self._write_protocol_output()

    def overflow(self) -> None:
        asyncio.get_running_loop().call_soon(self.close, TOO_SLOW, "too slow: resume to recover")

    def fail(self) -> None:
        asyncio.get_running_loop().call_soon(
            self.close, INTERNAL_ERROR, "internal error: reconnect and resume"
        )

    # Handshake --------------------------------------------------------------

    def _reject(self, status: int, error: HubbubError) -> None:
        body = events.http_error(error.code, error.message)
        headers = Headers(
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
                *retry_after(error).items(),
            ]
        )
        self._ws.send_response(Response(status, HTTPStatus(status).phrase, headers, body))

    def _peer(self) -> str | None:
        """The socket peer's address (the client's, unless a proxy stands between)."""
        peer = None if self.transport is None else self.transport.get_extra_info("peername")
        return str(peer[0]) if isinstance(peer, tuple) and peer else None

    def _handshake(self, request: Request) -> None:
        gateway = self.gateway
        path, _, query = request.path.partition("?")
        if path != WS_PATH:
            self._reject(404, NotFound(f"no WebSocket endpoint at {path}; use {WS_PATH}"))
            return
        headers = request.headers
        try:
            credentials: Credentials = (
                headers.get("Origin"),
                headers.get("Host"),
                parse_qs(query).get("token", [None])[0],
                headers.get("Authorization"),
                gateway.address(self._peer(), headers.get_all),
            )
            identity = gateway.admit_now(*credentials)
        except Exception as exc:
            self._refuse(exc)
            return
        if identity is None:  # the token's key set is being fetched: answer once it is
            assert self.transport is not None
            self._waiting = []
            self.transport.pause_reading()
            gateway.spawn(self._admit_later(request, credentials))
            return
        self._accept(request, identity)

    def _refuse(self, exc: Exception) -> None:
        if isinstance(exc, MultipleValuesError):
            self._reject(400, Invalid(f"the header {exc} appears more than once"))
        elif isinstance(exc, HubbubError) and type(exc) in REFUSALS:
            self._reject(REFUSALS[type(exc)], exc)
        else:
            log.error("WebSocket handshake failed", exc_info=exc)
            self._reject(500, HubbubError("internal error"))

    async def _admit_later(self, request: Request, credentials: Credentials) -> None:
        identity: Identity | None = None
        try:
            identity = await self.gateway.admit(*credentials)
        except Exception as exc:
            refusal = exc
        assert self.transport is not None
        if self.transport.is_closing():  # the client did not wait
            return
        try:
            if identity is None:
                self._refuse(refusal)
            else:
                self._accept(request, identity)
        except Exception:
            log.exception("WebSocket handshake failed")
            self.transport.abort()
            return
        waiting, self._waiting = self._waiting or [], None
        later, self._later = self._later, ()
        self.transport.resume_reading()
        self._events(later)
        if waiting:
            self._ws.receive_data(b"".join(waiting))
            self._events(self._ws.events_received())
        self._write_protocol_output()

    def _accept(self, request: Request, identity: Identity) -> None:
        gateway = self.gateway
        response = self._ws.accept(request)
        self._ws.send_response(response)
        if response.status_code != 101:
            return
        assert self.transport is not None
        # The 101 response must precede any frame on the wire.
        for chunk in self._ws.data_to_send():
            self.transport.write(chunk)
        # The protocol's parser holds the request for the connection's life;
        # its headers are done with (about 2.5 KB per connection).
        request.headers.clear()
        writer = Writer(
            self.transport, gateway.flusher, gateway.limits.outbound_buffer_bytes, self.overflow
        )
        self.writer = writer
        self.session = gateway.open_session(identity, writer, self, uuid.uuid4().hex)

    def pause_reading(self, pause: bool) -> None:
        if self.transport is not None and not self._closing:
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    # Frames ---------------------------------------------------------------

    def _frame(self, frame: Frame) -> None:
        session = self.session
        assert session is not None
        # Any frame, a pong or not, shows the peer is alive.
        session.last_activity = self.gateway.clock.monotonic()
        session.ping_sent_at = None
        opcode = frame.opcode
        if self._ws.eof_sent:  # failed (1007): what came after is not processed
            return
        if opcode is Opcode.TEXT or opcode is Opcode.CONT or opcode is Opcode.BINARY:
            self._data(frame)

    def _data(self, frame: Frame) -> None:
        session = self.session
        assert session is not None
        if frame.opcode is not Opcode.CONT:
            self._fragments = []
            self._binary = frame.opcode is Opcode.BINARY
        # Kept whole (under the hard ceiling), so that a message refused as too
        # large by parse() is still answered with its id.
        self._fragments.append(bytes(frame.data))
        if not frame.fin:
            return
        fragments, self._fragments = self._fragments, []
        if self._binary:
            session.send(
                events.error(None, "invalid", "binary frames are not supported; send JSON text")
            )
        else:  # parse() refuses what is over max_frame_bytes, naming its id
            text = fragments[0] if len(fragments) == 1 else b"".join(fragments)
            if not text.isascii() and not _is_utf8(text):
                # RFC 6455, 8.1: text that is not UTF-8 fails the connection.
                self._ws.fail(INVALID_DATA, "a text frame is not valid UTF-8")
                return
            session.on_text(text)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True
