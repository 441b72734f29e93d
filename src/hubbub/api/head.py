"""uvicorn's HTTP protocol (httptools), with a bound on the request head.

httptools buffers a request line and its headers however long they are, and
uvicorn sets no limit of its own for it (its ``h11_max_incomplete_event_size``
applies to the h11 parser only). Here the parser is fed at most
``MAX_HEAD_BYTES`` of a head; a head that is not complete by then is answered
431 (``too_large``) and the connection closed. WebSocket handshakes are HTTP
requests too, so the bound covers them as well. A request httptools cannot
parse is answered 400 (``invalid``) in JSON, like every other refusal.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hubbub.protocol.events import http_error

MAX_HEAD_BYTES = 16 * 1024
"""Request line and headers, in bytes, with their line ends."""
CLOSE_GRACE = 5.0
"""Seconds a refused client has to read the answer and close."""


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; heads over ``MAX_HEAD_BYTES`` are answered 431."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # the bytes coming are a request's head
        self._head_bytes = 0
        self._refused = False
        self._abort: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._refused:  # read and dropped until the client closes
            return
        if not self._in_head:
            super().data_received(data)
            return
        room = MAX_HEAD_BYTES - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        head, rest = data[:room], data[room:]
        self._head_bytes += len(head)
        if head:
            super().data_received(head)
        if self.transport.is_closing():  # refused by the parser
            return
        protocol = self.transport.get_protocol()
        if protocol is not self:  # upgraded to a WebSocket by the head
            protocol.data_received(rest)  # type: ignore[attr-defined]
        elif self._in_head:
            self._refuse_head()
        else:
            self.data_received(rest)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def connection_lost(self, exc: Exception | None) -> None:
        if self._abort is not None:
            self._abort.cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A request httptools cannot parse: 400, as JSON like every other refusal."""
        body = http_error("invalid", "malformed HTTP request")
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()

    def _refuse_head(self) -> None:
        """Answer 431, then half-close: the client may still be sending its head.

        Closing outright with unread bytes makes the kernel answer with a
        reset, which can reach the client before the answer does.
        """
        self._refused = True
        body = http_error(
            "too_large", f"the request line and headers exceed {MAX_HEAD_BYTES} bytes"
        )
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._abort = self.loop.call_later(CLOSE_GRACE, self.transport.abort)
        else:
            self.transport.close()
