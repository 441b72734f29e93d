"""WebSocket frame headers for server-to-client data (RFC 6455 section 5.2).

Server frames are never masked, so one encoded frame can be written to every
recipient as the same bytes.
"""

from __future__ import annotations

import struct

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
