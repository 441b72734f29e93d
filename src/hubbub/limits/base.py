"""The limits port: token buckets and connection counts.

``memory.py`` keeps them in this process; ``redis.py`` in Redis, shared by
every process of a cluster. Both answer the same questions:

- ``take(key, n, rate)``: up to ``n`` tokens from the bucket ``key``. A
  bucket starts full (``rate.burst`` tokens) and refills at
  ``rate.per_second``. The answer says how many were granted (all or the
  first ones) and, when not all, how long until the next token.
- ``enter(user, most)``: reserve a place among the user's connections when it
  has fewer than ``most`` (places taken and reserved both count). A
  reservation that no session takes lapses after ``PENDING_TTL`` seconds.
- ``opened(user, connection_id)`` / ``closed(...)``: a session took a
  reserved place, or gave its place back.

The memory implementation answers at once (``take_now``, ``enter_now``): the
gateway admits a WebSocket without suspending. The Redis one answers None
there and the caller awaits ``take`` and ``enter``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

PENDING_TTL = 10.0
"""Seconds a reserved connection place lasts without a session taking it."""


@dataclass(frozen=True, slots=True)
class Rate:
    """A token bucket's refill rate and size; a rate of 0 is no limit."""

    per_second: float
    burst: int

    @property
    def unlimited(self) -> bool:
        return self.per_second <= 0 or self.burst <= 0


@dataclass(frozen=True, slots=True)
class Taken:
    """What ``take`` granted: the first ``granted`` of the ``n`` asked for."""

    granted: int
    retry_after_ms: int = 0
    """When not all were granted: milliseconds until the next token."""


def refill(tokens: float, elapsed: float, rate: Rate) -> float:
    return min(float(rate.burst), tokens + max(0.0, elapsed) * rate.per_second)


def grant(tokens: float, n: int, rate: Rate) -> tuple[float, Taken]:
    """Take up to ``n`` whole tokens: the tokens left, and the answer."""
    granted = min(n, math.floor(tokens + 1e-9))
    left = tokens - granted
    if granted >= n:
        return left, Taken(granted)
    wait = max(1, math.ceil((1.0 - left) / rate.per_second * 1000))
    return left, Taken(granted, wait)


class Limiter(Protocol):
    immediate: bool
    """True when ``take_now`` and ``enter_now`` always answer (no round trip)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def take_now(self, key: str, n: int, rate: Rate) -> Taken | None:
        """``take`` without waiting, or None when it needs a round trip."""

    async def take(self, key: str, n: int, rate: Rate) -> Taken: ...

    def enter_now(self, user: str, most: int) -> bool | None:
        """``enter`` without waiting, or None when it needs a round trip."""

    async def enter(self, user: str, most: int) -> bool:
        """Reserve a place among the user's connections; False when it has ``most``."""

    def opened(self, user: str, connection_id: str) -> None:
        """A session of the user opened, in a place ``enter`` reserved."""

    def closed(self, user: str, connection_id: str) -> None:
        """A session of the user closed: its place is free."""

    async def connections(self, user: str) -> int:
        """The user's places, taken or reserved (on every process sharing the port)."""
