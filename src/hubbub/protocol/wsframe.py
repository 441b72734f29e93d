"""WebSocket frame headers for server-to-client data (RFC 6455 section 5.2).

Server frames are never masked, so one encoded frame can be written to every
recipient as the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

OP_TEXT = 0x1


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame carrying ``payload`` (already UTF-8)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | OP_TEXT, n))
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x80 | OP_TEXT, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | OP_TEXT, 127, n)
    return header + payload


def unframe(data: bytes) -> Iterator[bytes]:
    """The payloads of the frames ``text_frame`` made, one after another in ``data``."""
    at, end = 0, len(data)
    while at < end:
        n = data[at + 1] & 0x7F
        if n < 126:
            start = at + 2
        elif n == 126:
            n = int.from_bytes(data[at + 2 : at + 4], "big")
            start = at + 4
        else:
            n = int.from_bytes(data[at + 2 : at + 10], "big")
            start = at + 10
        yield data[start : start + n]
        at = start + n
