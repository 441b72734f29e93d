"""Injected time, so expiry and heartbeats are testable without sleeping."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch (timestamps, token expiry)."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock (intervals, timeouts)."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds


def now_ms(clock: Clock) -> int:
    return int(clock.now() * 1000)


def iso_ms(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC, e.g. ``2026-01-02T03:04:05.678Z``.

    Every message, member and receipt of an answer carries a time or two, so
    this is on the hot path: the part down to the second is cached (a page's
    times mostly share their seconds), which makes it about 4 times cheaper
    than formatting a datetime.
    """
    return f"{_iso_seconds(ms // 1000)}{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=4096)
def _iso_seconds(seconds: int) -> str:
    t = time.gmtime(seconds)
    return f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}T{t[3]:02d}:{t[4]:02d}:{t[5]:02d}."


def parse_iso_ms(text: str) -> int:
    """``iso_ms`` backwards: ISO 8601 UTC with milliseconds to milliseconds since the epoch."""
    dt = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1000 + dt.microsecond // 1000
