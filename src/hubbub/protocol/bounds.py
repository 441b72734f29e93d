"""Bounds on what clients send, shared by every transport.

- Integers (seqs, cursors, offsets, page sizes, request ids) are at most
  ``MAX_INT`` in magnitude: the largest integer a JSON client (JavaScript)
  holds exactly, well inside both databases' 64-bit integers.
- No text may contain U+0000 (NUL): PostgreSQL cannot store it, so neither
  database is given it.
- JSON is nested at most ``MAX_DEPTH`` levels (a frame needs three).

docs/protocol.md and docs/rest.md state them; a value outside them is ``invalid``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

MAX_INT = 2**53 - 1
MAX_DEPTH = 32

Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
"""A seq, a cursor, an offset: 0 to ``MAX_INT``."""

# A JSON ``\u0000`` escape: preceded by an even number of backslashes (each
# pair an escaped backslash), so ``\\u0000`` (the six characters) is not one.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def json_has_nul(data: bytes | str) -> bool:
    """Whether a JSON text has a string (or key) holding U+0000."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return b"\\u0000" in raw and _NUL_ESCAPE.search(raw) is not None


def has_nul(text: str) -> bool:
    return "\x00" in text


def nul_message(what: str) -> str:
    return f"{what} must not contain the NUL character (U+0000)"


DEPTH_MESSAGE = f"JSON nested deeper than {MAX_DEPTH} levels"


def may_be_deep(data: bytes | str) -> bool:
    """Cheap test: fewer brackets than ``MAX_DEPTH`` cannot nest deeper."""
    if isinstance(data, str):
        return data.count("[") + data.count("{") > MAX_DEPTH
    return data.count(b"[") + data.count(b"{") > MAX_DEPTH


def too_deep(value: Any) -> bool:
    """Whether decoded JSON nests more than ``MAX_DEPTH`` arrays and objects."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth >= MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False
